"""The audit trail's data: the events (a hash chain, audit/chain.py), the chain's head and the
signed checkpoints. Rows are written by audit/writer.py and audit/sealing.py only.

The tables keep the names they were created with in approvals and compliance (migrations
moved the models, not the data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit import chain, kinds

# The columns a row's chain form is built from (chain_dict), as an instance's attributes or a
# .values() row.
CHAIN_FIELDS = (
    "id",
    "seq",
    "kind",
    "created_at",
    "request_id",
    "session_id",
    "actor_id",
    "actor_label",
    "payload",
    "payload_purged_at",
    "payload_hash",
    "content_hash",
    "prev_hash",
    "row_hash",
)


def chain_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    """One row as the chain hashes it and a bundle exports it (audit/chain.py), from the values
    of CHAIN_FIELDS."""
    return {
        "seq": values["seq"],
        "id": values["id"],
        "kind": values["kind"],
        "at": chain.format_time(values["created_at"]),
        "request": values["request_id"],
        "session": values["session_id"],
        "actor": values["actor_id"],
        "actor_label": values["actor_label"],
        "payload": None if values["payload_purged_at"] else values["payload"],
        "payload_sha256": values["payload_hash"],
        "content_sha256": values["content_hash"],
        "prev_sha256": values["prev_hash"],
        "row_sha256": values["row_hash"],
    }


class AuditEvent(models.Model):
    """One event of a request's (or the system's) life, written in the same transaction as the
    change it records, by audit.writer.record() only. Rows form a hash chain (audit/chain.py); the
    database refuses UPDATE and DELETE (triggers on PostgreSQL and SQLite, audit migration 0002),
    except the retention purge that empties `payload` and keeps every hash (audit/purging.py).

    `kind` is one of the kinds the apps register (audit/kinds.py)."""

    kind = models.CharField(max_length=32, choices=kinds.choices)
    # By name: the audit trail sits below the apps whose requests and sessions it records.
    request = models.ForeignKey(
        "approvals.ApprovalRequest", null=True, blank=True, on_delete=models.PROTECT, related_name="audit"
    )
    session = models.ForeignKey(
        "approvals.RealtimeSession", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The chain (audit/chain.py): position, and the SHA-256 of the payload, of the row's
    # canonical content, of the previous row, and of this row.
    seq = models.PositiveBigIntegerField(unique=True)
    payload_hash = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    row_hash = models.CharField(max_length=64)
    payload_purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "approvals_auditevent"
        ordering = ["seq"]
        indexes = [models.Index(fields=["request", "created_at"]), models.Index(fields=["kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.seq}"

    def to_chain_dict(self) -> dict[str, Any]:
        """The row as the chain hashes it and a bundle exports it (chain_dict)."""
        return chain_dict({name: getattr(self, name) for name in CHAIN_FIELDS})


class AuditChainHead(models.Model):
    """The one row (pk=1) naming the chain's last link. Every audit writer locks it for the rest of
    its transaction (audit.writer.record), so the chain has one tail and never forks."""

    seq = models.PositiveBigIntegerField(default=0)
    row_hash = models.CharField(max_length=64)

    class Meta:
        db_table = "approvals_auditchainhead"

    def __str__(self) -> str:
        return f"audit chain head #{self.seq}"


class Checkpoint(models.Model):
    """The chain's head at one moment, signed with the audit key (audit/chain.py, audit/sealing.py).
    Append-only: the database refuses UPDATE and DELETE (triggers, audit migration 0002)."""

    seq = models.PositiveBigIntegerField(unique=True)
    row_hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField()
    public_key = models.CharField(max_length=64, help_text="Raw Ed25519 public key, hex.")
    signature = models.CharField(max_length=128, help_text="Ed25519 signature, hex.")

    class Meta:
        db_table = "compliance_checkpoint"
        ordering = ["seq"]
        get_latest_by = "seq"

    def __str__(self) -> str:
        return f"checkpoint at #{self.seq}"

    def to_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "row_sha256": self.row_hash,
            "sealed_at": chain.format_time(self.sealed_at),
            "public_key": self.public_key,
            "signature": self.signature,
        }
