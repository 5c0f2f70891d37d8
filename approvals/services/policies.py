"""Policies: publishing the rules as a new version, and importing a whole YAML document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from approvals import policy
from approvals.models import AuditKind, PolicyVersion
from approvals.services._common import actor_label
from audit import writer

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def publish_policy(*, by: User | None, source: str, rules: list[policy.Rule] | None = None) -> PolicyVersion | None:
    """Make the rules the new policy version: with `rules` (an import) they first replace every
    rule row; without, the rows as the admin left them are taken. Checked as a whole (names,
    conditions, escalation chains): raises policy.PolicyError and changes nothing when they do
    not hold. Returns the new version, or None when nothing changed. Side effect: audit
    POLICY_CHANGED with what changed."""
    with transaction.atomic():
        latest = PolicyVersion.objects.select_for_update().order_by("-number").first()
        if rules is not None:
            policy.write_rows(rules)
        new_doc = policy.document(policy.rules_from_rows())
        policy.parse_document(new_doc)  # raises PolicyError: the atomic block rolls back
        old_doc = latest.document if latest is not None else policy.document([])
        changes = policy.diff(old_doc, new_doc)
        if latest is not None and not changes:
            return None
        label = actor_label(by)
        version = PolicyVersion.objects.create(
            number=(latest.number if latest is not None else 0) + 1,
            created_by=by,
            created_by_label=label,
            source=source[:200],
            changes=changes,
            document=new_doc,
        )
        writer.record(
            kind=AuditKind.POLICY_CHANGED,
            actor=by,
            actor_label=label,
            payload={"version": version.number, "source": version.source, "changes": changes},
        )
    return version


def import_policies(text: str, *, by: User | None, source: str) -> PolicyVersion | None:
    """Replace the whole policy set with a YAML document (the format of export_policies).
    All or nothing: raises policy.PolicyError listing every problem, and then changes nothing."""
    rules = policy.parse_document(policy.load_yaml(text))
    return publish_policy(by=by, source=source, rules=rules)
