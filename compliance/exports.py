"""Export jobs: an evidence bundle of a search, queued by a reviewer and built by the worker
(compliance/bundle.py writes the file). Who may read an export: compliance/views.py."""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

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
