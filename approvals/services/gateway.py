"""The MCP gateway's decisions (gateway/ speaks MCP; this module decides and writes): which
token may call, which `tools/call` runs, and the record of each. The only writer of
GatewayToken and GatewayCall rows.

- A session's capability token (GatewayToken, `csg_…`) is what OpenAI gets for a server in
  gateway mode. A call with it runs only if it matches a request of that session, approved, for
  that server and tool, with the same canonical arguments digest, not used before (the partial
  unique constraint on GatewayCall.request is the "at most once"); or, with no request at all,
  when the policy allows it without asking (what compile_entry put in require_approval.never).
- A client token with the scope `mcp:gateway` (any MCP client) asks like the approval API does:
  open_request in a session of kind `gateway` named after the token, so policy, groups, quorum,
  deadlines, grants, notifications and audit all apply; the gateway waits for the decision.

Every call that runs or is refused leaves a GatewayCall row and an audit row (GATEWAY_RAN,
GATEWAY_REFUSED) in the same transaction.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals import events, policy
from approvals.models import (
    GATEWAY_TOKEN_PREFIX,
    TOKEN_PREFIX,
    ApprovalRequest,
    AuditKind,
    ClientToken,
    GatewayCall,
    GatewayToken,
    McpServer,
    RealtimeSession,
    Scope,
    arguments_digest,
    canonical_arguments,
)
from approvals.services._common import Status, on_commit
from approvals.services._transition import transition
from approvals.services.requests import _route, mark_decision_sent, open_request, record_mcp_call
from approvals.services.sessions import open_session
from audit import writer

ACTOR = "MCP gateway"
SESSION_TOKEN_VIA = "session token"
# A client's gateway session: one open session per client token, found by this id prefix.
CLIENT_SESSION_PREFIX = "mcp-gateway:"
# Approvals matched against a call per query.
MATCH_PAGE = 50


class GatewayRefusal(Exception):
    """A call the gateway will not run; the message is for the model (and the audit row)."""


@dataclass(frozen=True)
class Caller:
    """Who presented a token: OpenAI for one session (`session_token`) or an MCP client
    (`client_token`, with the scope mcp:gateway)."""

    session_token: GatewayToken | None = None
    client_token: ClientToken | None = None

    @property
    def via(self) -> str:
        if self.client_token is not None:
            return self.client_token.label[:150]
        return SESSION_TOKEN_VIA


@dataclass(frozen=True)
class Admission:
    """A call the gateway may run now: its row (outcome RUNNING)."""

    call: GatewayCall


# Tokens -------------------------------------------------------------------------------------------


def gateway_token_for(session: RealtimeSession, server: McpServer) -> str:
    """The capability token of `session` for `server` (created on first use, the same one after):
    what the session's `mcp` tool entry carries as `authorization` in gateway mode."""
    found = GatewayToken.objects.filter(session=session, server=server).first()
    if found is not None:
        return str(found.token)
    plaintext = GatewayToken.generate()
    now = timezone.now()
    try:
        with transaction.atomic():
            GatewayToken.objects.create(
                session=session,
                server=server,
                token_hash=GatewayToken.hash(plaintext),
                token=plaintext,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.GATEWAY_TOKEN_TTL_SECONDS),
            )
    except IntegrityError:
        # Another process of the same session made it a moment ago.
        return str(GatewayToken.objects.get(session=session, server=server).token)
    return plaintext


def authenticate(plaintext: str) -> Caller | None:
    """The caller a bearer token names, or None when it names nothing the gateway knows (a
    revoked client token, or one without the scope mcp:gateway, counts as unknown). A session
    token is returned even when expired or of an ended session: token_problem says so, audited."""
    if not plaintext or len(plaintext) > 200:
        return None
    if plaintext.startswith(GATEWAY_TOKEN_PREFIX):
        token = (
            GatewayToken.objects.select_related("session", "server")
            .filter(token_hash=GatewayToken.hash(plaintext))
            .first()
        )
        return Caller(session_token=token) if token is not None else None
    if plaintext.startswith(TOKEN_PREFIX):
        client = ClientToken.objects.for_plaintext(plaintext, scope=Scope.MCP_GATEWAY)
        return Caller(client_token=client) if client is not None else None
    return None


def token_problem(caller: Caller, server_label: str) -> str:
    """Why this caller may not use the server `server_label` now, in words; "" when it may."""
    token = caller.session_token
    if token is None:
        return ""
    if token.server.label != server_label:
        return f"This token belongs to the MCP server {token.server.label!r}, not {server_label!r}."
    if token.session.status != RealtimeSession.Status.OPEN:
        return "The session this token was issued for has ended; its token no longer runs anything."
    if token.expires_at <= timezone.now():
        return "This token has expired."
    return ""


# Listing -----------------------------------------------------------------------------------------


def listable(server: McpServer, tool_names: list[str]) -> set[str]:
    """Of these tool names, those the policy does not always deny (what tools/list shows)."""
    rules = policy.current()
    drifted = set(server.tools.drifted().values_list("name", flat=True))
    return {
        name for name in tool_names if rules.static_outcome(server.label, name, drifted=name in drifted) != policy.DENY
    }


# Calls -------------------------------------------------------------------------------------------


def _new_call(
    caller: Caller, server: McpServer, session: RealtimeSession | None, tool: str, canonical: str
) -> GatewayCall:
    return GatewayCall(
        session=session,
        server=server,
        server_label=server.label,
        tool_name=tool[:200],
        arguments=canonical,
        arguments_digest=arguments_digest(canonical),
        via=caller.via,
    )


def refuse(
    caller: Caller,
    server: McpServer,
    tool: str,
    arguments: dict[str, Any],
    reason: str,
    *,
    request: ApprovalRequest | None = None,
) -> GatewayRefusal:
    """Record a refused call (row and audit GATEWAY_REFUSED) and return the refusal to raise."""
    session = request.session if request is not None else _session_of(caller)
    call = _new_call(caller, server, session, tool, canonical_arguments(arguments))
    call.outcome = GatewayCall.Outcome.REFUSED
    call.reason = reason
    call.request = request
    call.finished_at = call.created_at
    with transaction.atomic():
        call.save()
        writer.record(
            kind=AuditKind.GATEWAY_REFUSED,
            request_id=request.pk if request is not None else None,
            session_id=session.pk if session is not None else None,
            actor_label=ACTOR,
            payload=_payload(call),
        )
        if request is not None:
            on_commit(partial(events.request_changed, request.pk))
    return GatewayRefusal(reason)


def _payload(call: GatewayCall) -> dict[str, Any]:
    return {
        "call": call.pk,
        "server": call.server_label,
        "tool": call.tool_name,
        "arguments_digest": call.arguments_digest,
        "via": call.via,
        "outcome": call.outcome,
        "reason": call.reason,
        "allowed_by": call.allowed_by,
    }


def _session_of(caller: Caller) -> RealtimeSession | None:
    return caller.session_token.session if caller.session_token is not None else None


def _consume(call: GatewayCall, req: ApprovalRequest) -> bool:
    """Take `req` for this call: True when this call is the first (and only) to use it."""
    call.request = req
    call.consumed = True
    call.outcome = GatewayCall.Outcome.RUNNING
    try:
        with transaction.atomic():
            call.save()
    except IntegrityError:
        call.pk = None
        call.consumed = False
        return False
    return True


def admit_session_call(caller: Caller, server: McpServer, tool: str, arguments: dict[str, Any]) -> Admission:
    """Match OpenAI's `tools/call` with a session token to a decision; raises GatewayRefusal
    (recorded and audited) when there is none it may use."""
    assert caller.session_token is not None
    problem = token_problem(caller, server.label)
    if problem:
        raise refuse(caller, server, tool, arguments, problem)
    session = caller.session_token.session
    canonical = canonical_arguments(arguments)
    digest = arguments_digest(canonical)
    approved = ApprovalRequest.objects.filter(
        session=session, server_label=server.label, tool_name=tool, status=Status.APPROVED
    ).order_by("decided_at", "pk")
    # The unused approvals, oldest first, a page at a time (a used one is never tried again: its
    # consumption row exists; two callers racing for one: the unique constraint picks one).
    unused = approved.exclude(gateway_calls__consumed=True).order_by("pk").only("pk", "arguments")
    last_pk = 0
    while page := list(unused.filter(pk__gt=last_pk)[:MATCH_PAGE]):
        last_pk = page[-1].pk
        for req in page:
            if arguments_digest(req.arguments) != digest:
                continue
            call = _new_call(caller, server, session, tool, canonical)
            if _consume(call, req):
                return Admission(call)
    _refuse_a_replay(caller, server, tool, arguments, approved, digest)
    allowed_by = _allowed_without_asking(session, server, tool, canonical)
    if allowed_by:
        call = _new_call(caller, server, session, tool, canonical)
        call.outcome = GatewayCall.Outcome.RUNNING
        call.allowed_by = allowed_by
        call.save()
        return Admission(call)
    other = approved.exclude(gateway_calls__consumed=True).last() or approved.last()
    if other is not None:
        raise refuse(
            caller,
            server,
            tool,
            arguments,
            f"Refused: these arguments differ from the ones staff approved (request #{other.pk}: "
            f"{canonical_arguments(other.arguments)}). A call runs only with exactly the approved arguments.",
            request=other,
        )
    raise refuse(
        caller,
        server,
        tool,
        arguments,
        f"Refused: no approval for {tool} with these arguments in this session. It needs a staff member's approval.",
    )


def _refuse_a_replay(
    caller: Caller, server: McpServer, tool: str, arguments: dict[str, Any], approved: Any, digest: str
) -> None:
    """Raise the refusal of a call whose approval was already used (a replay)."""
    used = [req for req in approved.filter(gateway_calls__consumed=True) if arguments_digest(req.arguments) == digest]
    if used:
        raise refuse(
            caller,
            server,
            tool,
            arguments,
            f"Replay refused: the approval for this call (request #{used[-1].pk}) was already used once. "
            "Ask for approval again.",
            request=used[-1],
        )


def _allowed_without_asking(session: RealtimeSession, server: McpServer, tool: str, canonical: str) -> str:
    """What lets this call run with no request of its own ("" = nothing): a rule that allows it
    at once, or a server whose admin chose never to ask (unless a rule denies the call)."""
    routing = _route(session, server.label, tool, canonical, timezone.now())
    if routing.outcome == policy.ALLOW:
        return f"rule {routing.rule}" if routing.rule else "the policy"
    if server.require_approval == McpServer.RequireApproval.NEVER and routing.outcome != policy.DENY:
        return "server set to never ask"
    return ""


def finish(call: GatewayCall, *, output: str | None, error: str | None) -> None:
    """The call ran: keep its result (and, for a client's request, record it on the request as
    the relay records an mcp_call). Side effects: audit GATEWAY_RAN, a dashboard event."""
    now = timezone.now()
    call.outcome = GatewayCall.Outcome.RAN if error is None else GatewayCall.Outcome.FAILED
    call.output = output
    call.reason = error or ""
    call.finished_at = now
    with transaction.atomic():
        GatewayCall.objects.filter(pk=call.pk).update(
            outcome=call.outcome, output=output, reason=call.reason, finished_at=now
        )
        payload = {**_payload(call), "output": output, "error": error}
        writer.record(
            kind=AuditKind.GATEWAY_RAN,
            request_id=call.request_id,
            session_id=call.session_id,
            actor_label=ACTOR,
            payload=payload,
            created_at=now,
        )
        if call.request_id is not None:
            on_commit(partial(events.request_changed, call.request_id))
    req = call.request
    if req is not None and call.session is not None and call.session.kind == RealtimeSession.Kind.GATEWAY:
        # The client's request: nobody else reports what ran, so the gateway does, as the relay
        # would from an mcp_call item.
        item = {
            "type": "mcp_call",
            "id": f"gwc_{call.pk}",
            "approval_request_id": req.upstream_id,
            "server_label": call.server_label,
            "name": call.tool_name,
            "arguments": call.arguments,
            "output": output,
            "error": {"type": "tool_execution_error", "message": error} if error is not None else None,
        }
        record_mcp_call(session=call.session, item=item)


# A client's calls (client token, scope mcp:gateway) -------------------------------------------------


def client_session(token: ClientToken) -> RealtimeSession:
    """The open gateway session of this client token (a new one when it has none, e.g. after
    staff stopped the last): its requests show on the dashboard under the token's name."""
    found = (
        RealtimeSession.objects.filter(
            client_token=token,
            kind=RealtimeSession.Kind.GATEWAY,
            status=RealtimeSession.Status.OPEN,
            external_id__startswith=CLIENT_SESSION_PREFIX,
        )
        .order_by("-opened_at")
        .first()
    )
    if found is not None:
        return found
    return open_session(
        kind=RealtimeSession.Kind.GATEWAY,
        label=token.label[:100],
        metadata=dict(token.metadata or {}),
        client_token=token,
        external_id=CLIENT_SESSION_PREFIX + secrets.token_hex(8),
    )


def ask(caller: Caller, server: McpServer, tool: str, arguments: dict[str, Any]) -> ApprovalRequest:
    """A client's `tools/call` as an approval request through the policy (it may be allowed or
    denied at once, or wait for staff like any other)."""
    assert caller.client_token is not None
    session = client_session(caller.client_token)
    upstream_id = "gw_" + secrets.token_hex(12)
    req, _ = open_request(
        session=session,
        upstream_id=upstream_id,
        server_label=server.label,
        tool_name=tool,
        arguments=json.dumps(arguments, ensure_ascii=False, separators=(",", ":")),
        raw_item={
            "type": "gateway_tool_call",
            "id": upstream_id,
            "server_label": server.label,
            "name": tool,
            "via": f"MCP gateway ({caller.client_token.label})",
        },
    )
    return req


ABANDONED_REASON = "The MCP client stopped waiting for the decision."


def abandon(req: ApprovalRequest) -> bool:
    """The client stopped waiting (it disconnected, or cancelled the call): a request still
    pending is cancelled, so that it leaves the queue and nobody decides a call no one waits for
    (and no decision waits for ever to be delivered). False when a decision came first. Side
    effects: audit CANCELLED; dashboard events after commit."""
    now = timezone.now()
    return transition(
        req,
        to=Status.CANCELLED,
        fields={"decided_at": now, "decided_by_label": ACTOR, "reason": ABANDONED_REASON},
        rows=[{"kind": AuditKind.CANCELLED, "actor_label": ACTOR, "payload": {"reason": ABANDONED_REASON}}],
        now=now,
    )


def current(req: ApprovalRequest) -> ApprovalRequest:
    return ApprovalRequest.objects.select_related("session").get(pk=req.pk)


def admit_decided(caller: Caller, server: McpServer, req: ApprovalRequest, arguments: dict[str, Any]) -> Admission:
    """A client's request has its answer: an approval is consumed by this call (once); anything
    else is refused with the decision's reason. Either way the answer counts as delivered."""
    if req.status in ApprovalRequest.ANSWERED:
        mark_decision_sent(req, via=ACTOR)
    if req.status != Status.APPROVED:
        said = {
            Status.DENIED.value: "Staff denied this call",
            Status.EXPIRED.value: "Nobody decided this call in time",
            Status.CANCELLED.value: "This call was cancelled",
        }.get(str(req.status), f"This call was {req.status}")
        reason = f"{said}: {req.reason}" if req.reason else f"{said}."
        raise refuse(caller, server, req.tool_name, arguments, reason, request=req)
    call = _new_call(caller, server, req.session, req.tool_name, canonical_arguments(arguments))
    if not _consume(call, req):
        raise refuse(
            caller, server, req.tool_name, arguments, "Replay refused: this approval was already used.", request=req
        )
    return Admission(call)
