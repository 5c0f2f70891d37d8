"""Every change of an approval's state, and of the records around it (house rule 1).

Views, the dashboard consumer, Celery tasks, management commands, the admin and the relay
(realtime_bridge) call these functions and never save these models themselves. One module per
aggregate: sessions, requests (and decisions), the registry, policies. Every status change of
a request goes through `_transition.transition`: one conditional UPDATE guarded by the states
it may leave (so of two racing callers exactly one wins), its AuditEvents in the same
transaction, and whatever leaves the process (dashboard events, the relay nudge, the deadline
task, `events.decision_committed`) registered with `on_commit`.

Callers import this package (`from approvals import services`), not its modules.
"""

from django.core.exceptions import PermissionDenied

from approvals.events import is_anyone_online, online_members
from approvals.models import tool_definition_hash
from approvals.services import gateway
from approvals.services._common import (
    BY_COMMAND_LINE,
    BY_DEADLINE,
    BY_SESSION_END,
    DEFAULT_CANCEL_REASON,
    MAX_INTERNAL_NOTE_LENGTH,
    MAX_REASON_LENGTH,
    RequirementMissing,
    StepUpRequired,
    TransitionError,
    actor_label,
    closed_message,
    user_label,
)
from approvals.services._transition import EXPIRE_REQUEST_TASK, EXPIRY_SLACK_SECONDS
from approvals.services.claims import claim, release_claim, release_claims_of, release_expired_claims
from approvals.services.decisions import (
    check_may_decide,
    decide,
    decide_all,
    escalate_if_nobody_online,
    expire_overdue,
    expire_request,
    guest_deadline_message,
    wait_in_words,
)
from approvals.services.gateway import gateway_token_for
from approvals.services.grants import (
    EDIT_GRANT_MINUTES,
    GrantSpec,
    check_edited_arguments,
    check_scope,
    find_grant,
    revoke_grant,
    subject_of,
    void_for_tool,
)
from approvals.services.passkeys import (
    PasskeyError,
    RelyingParty,
    StepUp,
    delete_passkey,
    register_passkey,
    registration_options,
    step_up_options,
)
from approvals.services.policies import import_policies, publish_policy
from approvals.services.presence import (
    dashboard_connected,
    dashboard_disconnected,
    dashboard_seen,
    forget_stale_dashboards,
)
from approvals.services.registry import (
    delete_mcp_server,
    issue_token,
    mark_tool_reviewed,
    observe_listed_tools,
    probe_mcp_server,
    register_mcp_server,
    revoke_token,
    rules_naming,
    save_mcp_server,
    store_tools,
)
from approvals.services.requests import (
    mark_decision_sent,
    mark_opened,
    open_request,
    record_mcp_call,
    record_unasked_call,
)
from approvals.services.sessions import (
    add_conversation_line,
    close_lapsed_sessions,
    close_session,
    hold_sessions,
    open_session,
)
from approvals.services.stop import (
    MAX_STOP_REASON_LENGTH,
    STOP_PERMISSION,
    SessionNotStoppable,
    check_may_stop,
    stop_session,
)

__all__ = [
    "BY_COMMAND_LINE",
    "BY_DEADLINE",
    "BY_SESSION_END",
    "DEFAULT_CANCEL_REASON",
    "EDIT_GRANT_MINUTES",
    "EXPIRE_REQUEST_TASK",
    "EXPIRY_SLACK_SECONDS",
    "MAX_INTERNAL_NOTE_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_STOP_REASON_LENGTH",
    "STOP_PERMISSION",
    "GrantSpec",
    "PasskeyError",
    "PermissionDenied",
    "RelyingParty",
    "RequirementMissing",
    "SessionNotStoppable",
    "StepUp",
    "StepUpRequired",
    "TransitionError",
    "actor_label",
    "add_conversation_line",
    "check_edited_arguments",
    "check_may_decide",
    "check_may_stop",
    "check_scope",
    "claim",
    "close_lapsed_sessions",
    "close_session",
    "closed_message",
    "dashboard_connected",
    "dashboard_disconnected",
    "dashboard_seen",
    "decide",
    "decide_all",
    "delete_mcp_server",
    "delete_passkey",
    "escalate_if_nobody_online",
    "expire_overdue",
    "expire_request",
    "find_grant",
    "forget_stale_dashboards",
    "gateway",
    "gateway_token_for",
    "guest_deadline_message",
    "hold_sessions",
    "import_policies",
    "is_anyone_online",
    "issue_token",
    "mark_decision_sent",
    "mark_opened",
    "mark_tool_reviewed",
    "observe_listed_tools",
    "online_members",
    "open_request",
    "open_session",
    "probe_mcp_server",
    "publish_policy",
    "record_mcp_call",
    "record_unasked_call",
    "register_mcp_server",
    "register_passkey",
    "registration_options",
    "release_claim",
    "release_claims_of",
    "release_expired_claims",
    "revoke_grant",
    "revoke_token",
    "rules_naming",
    "save_mcp_server",
    "step_up_options",
    "stop_session",
    "store_tools",
    "subject_of",
    "tool_definition_hash",
    "user_label",
    "void_for_tool",
    "wait_in_words",
]
