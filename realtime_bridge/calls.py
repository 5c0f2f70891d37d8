"""Calls Countersign watches through a sideband (DESIGN.md flow 1, "Sideband"): SIP calls that
arrive as `realtime.call.incoming` webhooks, and browser (WebRTC) calls whose client secret it
minted. Every change of a Call goes through this module; approval state still changes only in
approvals.services (closing a call's session cancels its pending requests there).

Call control is audited (audit.writer.record, in the transaction of the change it records):
CALL_ACCEPTED when a routed SIP call is accepted, CALL_REJECTED and CALL_TRANSFERRED when one
that no route matches is rejected or passed on, and CALL_TRANSFERRED / CALL_HUNG_UP when staff
transfer or hang up a call (written by whichever ends the call first, see end_call).

Upstream HTTP goes through the official SDK (`client.realtime.calls.*`,
`client.realtime.client_secrets.create`, `client.webhooks.unwrap`).
Reference: REALTIME_PROTOCOL.md sections 3.2, 8.2 and 8.3.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import openai
import pydantic
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone
from openai.types.webhooks import RealtimeCallIncomingWebhookEvent

from approvals import events, policy, services
from approvals.models import McpServer, RealtimeSession
from audit import writer
from realtime_bridge.client import openai_client
from realtime_bridge.kinds import CallAuditKind
from realtime_bridge.models import Call, SipRoute, WebhookDelivery, sip_number

if TYPE_CHECKING:
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

# The channel-layer group run_bridge listens on for calls to attach to. A hint only: the
# bridge also re-reads the live calls from the database when it starts and every few seconds.
# How long a browser has to create its call with a minted secret (and to ask us to attach).
CLIENT_SECRET_SECONDS = 600
_TICKET_SALT = "countersign.webrtc"
# Who the audit names for what the routing did by itself (accept, reject or pass on a call).
BY_ROUTING = "SIP routing"


class CallError(Exception):
    """A call action that cannot be done (e.g. the call is no longer in progress)."""


def _api() -> openai.OpenAI:
    # Call control is answered while a phone rings: one SDK retry, and no long waits.
    return openai_client(max_retries=1, timeout=20)


# --- Session config --------------------------------------------------------------------------


def tools_for(
    servers: list[McpServer] | None = None, *, session: RealtimeSession | None = None
) -> list[dict[str, Any]]:
    """The `mcp` tool entries (with credentials: server side only) of these servers, or of
    every enabled one when none are named. A server in gateway mode gets `session`'s capability
    token (without a session, none: the gateway refuses its calls; docs/gateway.md)."""
    chosen = servers if servers else list(McpServer.objects.filter(enabled=True))
    tokens = {s.pk: services.gateway_token_for(session, s) for s in chosen if s.gateway_mode} if session else {}
    return policy.upstream_tools(chosen, gateway_tokens=tokens)  # the policies compiled in (approvals/policy.py)


def session_config(
    *, model: str = "", instructions: str = "", voice: str = "", servers: list[McpServer] | None = None
) -> dict[str, Any]:
    """A Realtime session object (section 3.2) for accept or a client secret."""
    config: dict[str, Any] = {"type": "realtime", "model": model or settings.OPENAI_REALTIME_MODEL}
    if instructions:
        config["instructions"] = instructions
    if voice:
        config["audio"] = {"output": {"voice": voice}}
    tools = tools_for(servers)
    if tools:
        config["tools"] = tools
    return config


def route_config(route: SipRoute) -> dict[str, Any]:
    return session_config(
        model=route.model, instructions=route.instructions, voice=route.voice, servers=list(route.mcp_servers.all())
    )


def find_route(*, to_number: str, from_number: str) -> SipRoute | None:
    for route in SipRoute.objects.filter(enabled=True):
        if route.matches(to_number=to_number, from_number=from_number):
            return route
    return None


# --- SIP webhooks ----------------------------------------------------------------------------


class WebhookRefused(Exception):
    """The webhook is not OpenAI's (bad signature, stale timestamp) or not readable."""


def verify_webhook(body: bytes, headers: dict[str, str]) -> Any:
    """The parsed event, if the signature and timestamp are OpenAI's (the SDK checks both,
    Standard Webhooks, 300 s tolerance) and the body is a well-formed event. Raises
    WebhookRefused."""
    secret = settings.OPENAI_WEBHOOK_SECRET
    if not secret:
        raise WebhookRefused("OPENAI_WEBHOOK_SECRET is not set: webhooks cannot be verified.")
    try:
        event = _api().webhooks.unwrap(body, headers, secret=secret)
    except openai.InvalidWebhookSignatureError as exc:
        raise WebhookRefused(str(exc)) from None
    except Exception as exc:  # missing headers, a stale timestamp, a body that is not JSON
        raise WebhookRefused(str(exc)) from None
    if getattr(event, "type", None) == "realtime.call.incoming":
        # unwrap() builds the model without validating it; a call we act on must be whole.
        try:
            return RealtimeCallIncomingWebhookEvent.model_validate_json(body)
        except pydantic.ValidationError as exc:
            raise WebhookRefused(f"Malformed realtime.call.incoming: {exc}") from None
    if not isinstance(getattr(event, "type", None), str):
        raise WebhookRefused("Not a webhook event.")
    return event


def record_webhook(*, webhook_id: str, event: Any) -> Call | None:
    """Keep the delivery and, for `realtime.call.incoming`, the ringing call, in one
    transaction. Returns the new Call to answer, or None when there is nothing (more) to do:
    a webhook-id seen before, a call already known (a re-delivery under a new id), another
    event type. The unique constraints, not a prior read, decide: two deliveries at once
    cannot both win."""
    payload = event.to_dict() if hasattr(event, "to_dict") else {}
    try:
        with transaction.atomic():
            WebhookDelivery.objects.create(
                webhook_id=webhook_id[:200],
                event_id=str(getattr(event, "id", ""))[:200],
                event_type=str(getattr(event, "type", ""))[:100],
                payload=payload,
            )
            if getattr(event, "type", "") != "realtime.call.incoming":
                return None
            headers = [{"name": h.name, "value": h.value} for h in event.data.sip_headers]
            values = {h["name"].lower(): h["value"] for h in headers}
            return Call.objects.create(
                call_id=event.data.call_id,
                kind=Call.Kind.SIP,
                from_number=sip_number(values.get("from", ""))[:100],
                to_number=sip_number(values.get("to", ""))[:100],
                sip_headers=headers,
            )
    except IntegrityError:
        return None


def release_webhook(*, webhook_id: str, call: Call) -> None:
    """Answering the call failed for a reason that may pass (OpenAI unreachable, a 5xx): forget
    the delivery and the ringing call, so that the sender's retry of the same webhook is handled
    as new rather than ignored as a duplicate."""
    with transaction.atomic():
        Call.objects.filter(pk=call.pk, status=Call.Status.INCOMING, session__isnull=True).delete()
        WebhookDelivery.objects.filter(webhook_id=webhook_id[:200]).delete()


def answer_incoming(call: Call) -> Call:
    """Accept a ringing call with its route's config, or reject or refer it when no route
    matches (SIP_UNROUTED_STATUS / SIP_UNROUTED_REFER_TO). Accepting opens its sideband
    session and, after commit, tells the bridge to attach."""
    route = find_route(to_number=call.to_number, from_number=call.from_number)
    calls = _api().realtime.calls
    if route is None and not settings.SIP_UNROUTED_REFER_TO:
        status_code = settings.SIP_UNROUTED_STATUS
        try:
            calls.reject(call.call_id, status_code=status_code)
        except openai.NotFoundError:
            pass  # the caller is gone already (section 10.10)
        return _finish(
            call,
            Call.Status.REJECTED,
            outcome=f"No route: rejected with {status_code}",
            audit_kind=CallAuditKind.CALL_REJECTED,
            audit_payload={"reason": "no route", "status_code": status_code},
        )
    config = route_config(route) if route is not None else session_config(servers=[])
    if route is None:
        # Referring needs an answered call; accept it bare (no tools) and pass it on at once.
        config.pop("tools", None)
    try:
        calls.accept(call.call_id, **config)
    except openai.NotFoundError:
        # Section 10.10: the caller hung up, or the webhook came too late.
        return _finish(call, Call.Status.ENDED, outcome="The caller was gone before the call was answered.")
    if route is None:
        target = settings.SIP_UNROUTED_REFER_TO
        calls.refer(call.call_id, target_uri=target)
        return _finish(
            call,
            Call.Status.REFERRED,
            outcome=f"No route: transferred to {target}",
            refer_target=target,
            audit_kind=CallAuditKind.CALL_TRANSFERRED,
            # Accepted bare (no tools, no session) only to be passed on.
            audit_payload={"reason": "no route", "target_uri": target},
        )
    metadata = {**(route.metadata or {}), "from": call.from_number, "to": call.to_number}
    return _open(call, label=route.label, metadata=metadata, model=config["model"], route=route)


def _open(
    call: Call,
    *,
    label: str,
    metadata: dict[str, Any],
    model: str,
    route: SipRoute | None = None,
    started_by: User | None = None,
) -> Call:
    with transaction.atomic():
        session = services.open_session(
            kind=RealtimeSession.Kind.SIDEBAND,
            label=label,
            metadata=metadata,
            model=model,
            call_id=call.call_id,
            started_by=started_by,
        )
        # Conditional on still ringing: a hangup that came in meanwhile stays what it is.
        won = Call.objects.filter(pk=call.pk, status=Call.Status.INCOMING).update(
            status=Call.Status.ACCEPTED, session=session, route=route
        )
        if not won:
            services.close_session(session, code=None, reason="The call ended before it was answered.")
        else:
            if call.kind == Call.Kind.SIP:
                # A browser call is created by the browser; only a SIP call is accepted by us.
                writer.record(
                    kind=CallAuditKind.CALL_ACCEPTED,
                    session=session,
                    actor_label=BY_ROUTING,
                    payload={**_call_payload(call), "route": route.name if route is not None else None},
                )
            transaction.on_commit(partial(events.bridge_attach, call.pk), robust=True)
    call.refresh_from_db()
    return call


def _call_payload(call: Call) -> dict[str, Any]:
    return {"call_id": call.call_id, "kind": call.kind, "from": call.from_number, "to": call.to_number}


def _finish(
    call: Call,
    status: str,
    *,
    outcome: str,
    refer_target: str = "",
    audit_kind: str | None = None,
    audit_payload: dict[str, Any] | None = None,
) -> Call:
    """A ringing call ends without a session (rejected, passed on, gone): mark it, and write the
    audit row of the call-control action that ended it, if any."""
    with transaction.atomic():
        won = Call.objects.filter(pk=call.pk, status=Call.Status.INCOMING).update(
            status=status, outcome=outcome[:200], refer_target=refer_target[:200], ended_at=timezone.now()
        )
        if won and audit_kind is not None:
            writer.record(
                kind=audit_kind, actor_label=BY_ROUTING, payload={**_call_payload(call), **(audit_payload or {})}
            )
    call.refresh_from_db()
    return call


# --- Ending and staff actions -----------------------------------------------------------------


def end_call(call_pk: int, *, status: str = Call.Status.ENDED, outcome: str, code: int | None = None) -> bool:
    """The call is over (hung up, transferred, gone upstream): mark it and close its session,
    which cancels its pending requests (approvals.services.close_session). Idempotent: False
    when it had ended already (its session is closed again, a no-op).

    A staff action notes why (and who) before it calls OpenAI (`_note_action`); the bridge, which
    sees the sideband close a moment later and may get here first, then records that reason, not
    its own, and writes the staff action's audit row (CALL_HUNG_UP or CALL_TRANSFERRED)."""
    with transaction.atomic():
        noted = (
            Call.objects.filter(pk=call_pk, status=Call.Status.ACCEPTED)
            .values("outcome", "refer_target", "action_by")
            .first()
        )
        staff_action = bool(noted and noted["outcome"])
        if noted and staff_action:
            outcome = noted["outcome"]
            status = Call.Status.REFERRED if noted["refer_target"] else Call.Status.ENDED
        # Conditional on in progress: of the staff action and the bridge, the first one ends it.
        won = Call.objects.filter(pk=call_pk, status=Call.Status.ACCEPTED).update(
            status=status, outcome=outcome[:200], ended_at=timezone.now()
        )
        call = Call.objects.select_related("session", "action_by").get(pk=call_pk)
        if call.session is not None:
            # Closing first: it locks the session's pending requests before it writes to the audit
            # chain (approvals/audit.py lock order), which the row below then extends.
            services.close_session(call.session, code=code, reason=call.outcome or outcome)
            if won:
                transaction.on_commit(partial(announce_session, call.session.pk), robust=True)
        if won and staff_action:
            _audit_staff_action(call)
    return bool(won)


def _audit_staff_action(call: Call) -> None:
    by = call.action_by
    payload = {**_call_payload(call), "outcome": call.outcome}
    if call.refer_target:
        payload["target_uri"] = call.refer_target
    writer.record(
        kind=CallAuditKind.CALL_TRANSFERRED if call.refer_target else CallAuditKind.CALL_HUNG_UP,
        session_id=call.session_id,
        actor=by,
        actor_label=services.user_label(by) if by is not None else "",
        payload=payload,
    )


def announce_session(session_id: int) -> None:
    """Re-send the cards of every request of a session whose call or run changed (after commit),
    so that a card showing the call's or the run's state stays true."""
    events.session_requests_changed(session_id, pending_only=False)


def _note_action(call: Call, *, by: User, outcome: str, refer_target: str = "") -> None:
    if not Call.objects.filter(pk=call.pk, status=Call.Status.ACCEPTED).update(
        outcome=outcome[:200], refer_target=refer_target[:200], action_by=by
    ):
        call.refresh_from_db()
        raise CallError(f"The call is {call.get_status_display().lower()}, not in progress.")


def _forget_action(call: Call) -> None:
    Call.objects.filter(pk=call.pk, status=Call.Status.ACCEPTED).update(outcome="", refer_target="", action_by=None)


def hang_up(call: Call, *, by: User) -> Call:
    """Staff end a call in progress. Raises CallError when it is not in progress, or when
    OpenAI refuses (the call then stays as it was). Side effect: audit CALL_HUNG_UP."""
    outcome = f"Hung up by {services.user_label(by)}"
    _note_action(call, by=by, outcome=outcome)
    try:
        _api().realtime.calls.hangup(call.call_id)
    except openai.NotFoundError:
        pass  # gone upstream already: record the end all the same
    except openai.APIError as exc:
        _forget_action(call)
        raise CallError(f"OpenAI did not hang up the call: {exc}") from None
    end_call(call.pk, outcome=outcome)
    call.refresh_from_db()
    return call


def transfer(call: Call, *, target_uri: str, by: User) -> Call:
    """Staff transfer a SIP call (SIP REFER) to `tel:…` or `sip:…`. Raises CallError when it
    is not a SIP call in progress, on a bad target, or when OpenAI refuses. Side effect: audit
    CALL_TRANSFERRED."""
    if call.kind != Call.Kind.SIP:
        raise CallError("Only a SIP call can be transferred.")
    if not target_uri.startswith(("tel:", "sip:", "sips:")) or len(target_uri) > 200:
        raise CallError("The transfer target must be a tel: or sip: URI.")
    outcome = f"Transferred to {target_uri} by {services.user_label(by)}"
    _note_action(call, by=by, outcome=outcome, refer_target=target_uri)
    try:
        _api().realtime.calls.refer(call.call_id, target_uri=target_uri)
    except openai.NotFoundError:
        _forget_action(call)
        end_call(call.pk, outcome="The call had ended before the transfer.")
        raise CallError("The call had already ended.") from None
    except openai.APIError as exc:
        _forget_action(call)
        raise CallError(f"OpenAI did not transfer the call: {exc}") from None
    end_call(call.pk, status=Call.Status.REFERRED, outcome=outcome)
    call.refresh_from_db()
    return call


# --- Browser calls (WebRTC) -------------------------------------------------------------------


def mint_client_secret(
    *, label: str, metadata: dict[str, Any], owner: str, started_by: int | None = None
) -> dict[str, Any]:
    """A short-lived `ek_` secret for a browser, for a session that already holds the
    registered MCP servers and their credentials (they never reach the browser: the browser
    only gets the secret), and a signed ticket to present when it asks us to attach.
    `started_by`: the pk of the staff member minting it, recorded on the session at attach
    (signed into the ticket), so that they never decide its requests."""
    config = session_config()
    secret = _api().realtime.client_secrets.create(
        session=config,  # type: ignore[arg-type]
        expires_after={"anchor": "created_at", "seconds": CLIENT_SECRET_SECONDS},
    )
    ticket = signing.dumps(
        {"label": label, "metadata": metadata, "owner": owner, "model": config["model"], "started_by": started_by},
        salt=_TICKET_SALT,
    )
    return {"client_secret": secret.value, "expires_at": secret.expires_at, "model": config["model"], "ticket": ticket}


def attach_browser_call(*, call_id: str, ticket: str, owner: str) -> Call:
    """The browser created its call (`Location: …/calls/rtc_…`): record it, open its session,
    and have the bridge attach. Idempotent on call_id. Raises CallError on a bad ticket, or
    one minted for somebody else."""
    try:
        data = signing.loads(ticket, salt=_TICKET_SALT, max_age=CLIENT_SECRET_SECONDS + 60)
    except signing.BadSignature:
        raise CallError("The ticket is not valid (or has expired).") from None
    if data.get("owner") != owner:
        raise CallError("The ticket was issued to someone else.")
    if not call_id.startswith("rtc_") or len(call_id) > 100:
        raise CallError("That is not a call id.")
    try:
        with transaction.atomic():
            call = Call.objects.create(call_id=call_id, kind=Call.Kind.WEBRTC)
    except IntegrityError:
        return Call.objects.get(call_id=call_id)
    metadata = {**(data.get("metadata") or {}), "owner": data.get("owner", "")}
    label = str(data.get("label") or "Browser call")
    started_by = get_user_model().objects.filter(pk=data["started_by"]).first() if data.get("started_by") else None
    return _open(call, label=label, metadata=metadata, model=str(data.get("model") or ""), started_by=started_by)
