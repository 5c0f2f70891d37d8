"""The approval domain's data. Fields, choices, constraints and reads only: every change of an
approval's state goes through approvals/services.py (house rule 1).

registry: MCP servers, their tools, client tokens; sessions: sessions and their conversation;
requests: approval requests; policy: the rules and their versions; kinds: the audit events
approvals writes; cards: what the apps above add to a request's card; fields: encrypted fields; passkeys:
staff passkeys and WebAuthn challenges (step-up); grants: decisions that reach beyond one call."""

from approvals.models.cards import register_session_detail
from approvals.models.fields import (
    EncryptedJSONField,
    EncryptedTextField,
    decrypt_text,
    encrypt_text,
    field_cipher,
)
from approvals.models.gateway import GATEWAY_TOKEN_PREFIX, GatewayCall, GatewayToken
from approvals.models.grants import Grant, GrantQuerySet, arguments_digest, canonical_arguments
from approvals.models.kinds import AuditKind
from approvals.models.passkeys import PasskeyCredential, WebAuthnChallenge
from approvals.models.policy import DeadlineAction, EscalationStep, PolicyRule, PolicyVersion
from approvals.models.presence import DashboardPresence, DashboardPresenceQuerySet, online_members
from approvals.models.registry import (
    TOKEN_PREFIX,
    ClientToken,
    ClientTokenQuerySet,
    McpServer,
    McpTool,
    McpToolQuerySet,
    Scope,
    tool_definition_hash,
)
from approvals.models.requests import (
    CARD_CONVERSATION_LINES,
    REVIEW_ONLY_GROUP,
    ApprovalRequest,
    ApprovalRequestQuerySet,
    audience_allows,
    grant_options,
    plain_words,
)
from approvals.models.sessions import ConversationLine, RealtimeSession

__all__ = [
    "CARD_CONVERSATION_LINES",
    "GATEWAY_TOKEN_PREFIX",
    "REVIEW_ONLY_GROUP",
    "TOKEN_PREFIX",
    "ApprovalRequest",
    "ApprovalRequestQuerySet",
    "AuditKind",
    "ClientToken",
    "ClientTokenQuerySet",
    "ConversationLine",
    "DashboardPresence",
    "DashboardPresenceQuerySet",
    "DeadlineAction",
    "EncryptedJSONField",
    "EncryptedTextField",
    "EscalationStep",
    "GatewayCall",
    "GatewayToken",
    "Grant",
    "GrantQuerySet",
    "McpServer",
    "McpTool",
    "McpToolQuerySet",
    "PasskeyCredential",
    "PolicyRule",
    "PolicyVersion",
    "RealtimeSession",
    "Scope",
    "WebAuthnChallenge",
    "arguments_digest",
    "audience_allows",
    "canonical_arguments",
    "decrypt_text",
    "encrypt_text",
    "field_cipher",
    "grant_options",
    "online_members",
    "plain_words",
    "register_session_detail",
    "tool_definition_hash",
]
