"""The audit events of phone calls (realtime_bridge/calls.py). The values are hashed into the
audit chain (audit/kinds.py): never change one. Registered when imported (the app's ready())."""

from __future__ import annotations

from django.db import models

from audit import kinds


class CallAuditKind(models.TextChoices):
    CALL_ACCEPTED = "call_accepted", "Phone call accepted"
    CALL_REJECTED = "call_rejected", "Phone call rejected"
    CALL_TRANSFERRED = "call_transferred", "Phone call transferred"
    CALL_HUNG_UP = "call_hung_up", "Phone call hung up"


kinds.register(CallAuditKind)
