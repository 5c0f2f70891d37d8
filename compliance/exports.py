"""Export jobs: an evidence bundle of a search, queued by a reviewer and built by the worker
(compliance/bundle.py writes the file), and shared by its creator with other reviewers. Who may
open an export: Export.visible_to()."""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from approvals.services import user_label
from audit import writer
from compliance import bundle
from compliance.models import AuditKind, Export

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def request_export(*, by: User, query: dict[str, Any]) -> Export:
    """Queue an evidence bundle of a search. Side effects: audit EXPORTED; after commit, the task."""
    with transaction.atomic():
        export = Export.objects.create(requested_by=by, query=query)
        writer.record(
            kind=AuditKind.EXPORTED,
            actor=by,
            actor_label=user_label(by),
            payload={"export_id": export.pk, "query": query},
            created_at=export.created_at,
        )
        transaction.on_commit(partial(build_export_task.delay, export.pk), robust=True)
    return export


class ShareError(Exception):
    pass


def reviewers() -> QuerySet[User]:
    """The people an export can be shared with: active holders of compliance.view_review."""
    permission = Permission.objects.filter(content_type__app_label="compliance", codename="view_review")
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__permissions__in=permission) | Q(user_permissions__in=permission))
        .distinct()
        .order_by("first_name", "last_name", "username")
    )


class ShareForm(forms.Form):
    """Who, besides its creator, may open an export: reviewers only."""

    people = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=_("Shared with"),
    )

    def __init__(self, *args: Any, export: Export, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"people": list(export.shared_with.values_list("pk", flat=True))})
        super().__init__(*args, **kwargs)
        field = self.fields["people"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        field.queryset = reviewers().exclude(pk=export.requested_by_id)
        field.label_from_instance = user_label  # type: ignore[method-assign,assignment]


def share(export: Export, *, by: User, people: list[User]) -> bool:
    """Make `export` visible to exactly `people` besides its creator. Only its creator may;
    everyone in `people` must be a reviewer (reviewers()), else ShareError and nothing changes.
    False when the list was already that. Side effect: audit EXPORT_SHARED."""
    if export.requested_by_id != by.pk:
        raise ShareError("Only the person who made an export can share it.")
    wanted = {person.pk for person in people} - {by.pk}
    if wanted - set(reviewers().filter(pk__in=wanted).values_list("pk", flat=True)):
        raise ShareError("An export can only be shared with compliance reviewers.")
    with transaction.atomic():
        # Locked: two shares at once each see what the other did, and each writes its own row.
        locked = Export.objects.select_for_update().get(pk=export.pk)
        current = set(locked.shared_with.values_list("pk", flat=True))
        added, removed = sorted(wanted - current), sorted(current - wanted)
        if not added and not removed:
            return False
        locked.shared_with.remove(*removed)
        locked.shared_with.add(*added)
        writer.record(
            kind=AuditKind.EXPORT_SHARED,
            actor=by,
            actor_label=user_label(by),
            payload={"export_id": export.pk, "shared_with": sorted(wanted), "added": added, "removed": removed},
        )
    return True


def build_export(pk: int) -> Export | None:
    """Write the bundle of an export (compliance/bundle.py). Claimed with a conditional UPDATE, so
    a redelivered task does nothing. Returns None when another run had it."""
    won = Export.objects.filter(pk=pk, status=Export.Status.PENDING).update(status=Export.Status.RUNNING)
    if not won:
        return None
    export = Export.objects.get(pk=pk)
    try:
        name = bundle.write(export)
    except Exception as exc:
        logger.exception("export %s failed", pk)
        Export.objects.filter(pk=pk).update(
            status=Export.Status.FAILED, error=str(exc)[:500], finished_at=timezone.now()
        )
        raise
    digest = hashlib.sha256()
    with bundle.export_path(name).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    Export.objects.filter(pk=pk).update(
        status=Export.Status.DONE, file_name=name, sha256=digest.hexdigest(), finished_at=timezone.now()
    )
    export.refresh_from_db()
    return export


# The Celery adapter (ids in, one call), here rather than in compliance/tasks.py because
# request_export queues it: compliance.tasks re-exports it, under its registered name.
@shared_task(name="compliance.tasks.build_export", acks_late=True, ignore_result=True)
def build_export_task(pk: int) -> None:
    build_export(pk)
