"""The names of audit events. The audit trail does not know the domain: each app defines the kinds
it writes (a TextChoices) and registers them here, so that AuditEvent.kind shows a label for
every kind without this app importing the ones above it. The stored value is what the chain
hashes: a kind's value never changes once rows carry it."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db import models

_labels: dict[str, str] = {}


def register(kinds: type[models.TextChoices]) -> None:
    """Make the kinds of `kinds` known, with their labels. Idempotent; raises ImproperlyConfigured
    when a value is already registered with another label (two apps claiming one kind)."""
    for value, label in kinds.choices:
        known = _labels.setdefault(value, str(label))
        if known != str(label):
            raise ImproperlyConfigured(f"audit kind {value!r} is registered twice: {known!r} and {label!r}")


def choices() -> list[tuple[str, str]]:
    """Every registered kind, in registration order (AuditEvent.kind's choices, read when used)."""
    return list(_labels.items())


def label(kind: str) -> str:
    """The label of `kind`, or the kind itself when no app registered it."""
    return _labels.get(kind, kind)
