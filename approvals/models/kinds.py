"""The audit events approvals writes: of requests, sessions, the registry and the policies. The
values are hashed into the audit chain (audit/kinds.py): never change one."""

from __future__ import annotations

from django.db import models

from audit import kinds


class AuditKind(models.TextChoices):
    REQUESTED = "requested", "Requested"
    # The policy rule (and version) that decided or routed a request (approvals/policy.py).
    POLICY_ROUTED = "policy_routed", "Routed by policy"
    # One approver's approval counted toward a quorum that is not reached yet.
    VOTED = "voted", "Approval counted toward the quorum"
    # The deadline of an asking stage passed and the request moved to the next group.
    ESCALATED = "escalated", "Escalated to the next group"
    NOTIFIED = "notified", "Shown on the staff dashboards"
    OPENED = "opened", "Opened by a staff member"
    DECIDED = "decided", "Decided"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    SENT = "sent", "Decision sent upstream"
    MCP_CALL = "mcp_call", "Tool call result"
    SESSION_OPENED = "session_opened", "Session opened"
    SESSION_CLOSED = "session_closed", "Session closed"
    # A staff member with approvals.stop_session ended a live session (services.stop_session):
    # the row names who and why; the close and the cancellations follow it.
    SESSION_STOPPED = "session_stopped", "Session stopped by staff"
    TOKEN_ISSUED = "token_issued", "Client token issued"
    TOKEN_REVOKED = "token_revoked", "Client token revoked"
    SERVER_SAVED = "server_saved", "MCP server registered or changed"
    SERVER_DELETED = "server_deleted", "MCP server deleted"
    SERVER_PROBED = "server_probed", "MCP server probed"
    TOOL_REVIEWED = "tool_reviewed", "Changed MCP tool reviewed"
    TOOL_DRIFTED = "tool_drifted", "MCP tool definition changed"
    POLICY_CHANGED = "policy_changed", "Approval policy changed"
    # A staff member said "I'm on it" (or opened the card's details): shown on every dashboard.
    CLAIMED = "claimed", "Claimed by a staff member"
    # The claim ended without a decision: given up, its dashboards closed, or it grew old.
    CLAIM_RELEASED = "claim_released", "Claim released"
    # A staff member's passkeys (the step-up of rules that require one).
    PASSKEY_ADDED = "passkey_added", "Passkey registered"
    PASSKEY_REMOVED = "passkey_removed", "Passkey removed"
    # Grants (issue 14): made by a decision, used by a later call instead of asking, revoked by a
    # person, voided when the tool's definition changed.
    GRANT_CREATED = "grant_created", "Grant made"
    GRANT_USED = "grant_used", "Call approved by a grant"
    GRANT_REVOKED = "grant_revoked", "Grant revoked"
    GRANT_VOIDED = "grant_voided", "Grant voided"
    # The MCP gateway (docs/gateway.md): a tools/call it ran for an approval, a rule or a trusted
    # server, and one it refused (no matching approval, other arguments, a replay, a bad token).
    GATEWAY_RAN = "gateway_ran", "Run by the MCP gateway"
    GATEWAY_REFUSED = "gateway_refused", "Refused by the MCP gateway"


kinds.register(AuditKind)
