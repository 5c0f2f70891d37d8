"""Channel-layer groups and event shapes, and the after-commit hooks: the only module that knows
them (house rule 10).

Events are hints, sent at most once: a dashboard re-reads a snapshot when it (re)connects and
the relay re-reads its outbox, so a lost event never loses a decision. That is why the
helpers below log and swallow channel-layer errors instead of failing the caller: they run
after commit, when the database already holds the truth.

Hooks (`Hook`) are how a room above approvals/ hears of a change it reacts to, explicitly:
the services send them after commit, and a receiver is connected by name in its app's
AppConfig.ready(). Nothing listens to audit rows to make things happen.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from approvals.models import ApprovalRequest, DashboardPresence, online_members

logger = logging.getLogger(__name__)

# Every staff dashboard joins this group.
DASHBOARD = "approvals.dashboard"
# Message types (the consumer handler is the type with "." replaced by "_").
REQUEST_CHANGED = "approvals.request_changed"
# Someone's dashboard opened or closed: each dashboard re-sends its person who is online.
PRESENCE_CHANGED = "approvals.presence_changed"
# A grant was made, used, revoked or voided: dashboards re-read their grants list (a hint).
GRANTS_CHANGED = "approvals.grants_changed"
RELAY_DECISION = "relay.decision"
# A staff member stopped the session (services.stop_session, committed): the process holding it
# closes upstream and the client with this code and reason. The reason is fixed words for the
# guest's device: why staff stopped it is in the audit, never sent to the client.
RELAY_STOP = "relay.stop"
STOPPED_CLOSE_CODE = 4300
STOPPED_CLOSE_REASON = "The hotel's staff ended this session."
# The group run_bridge listens on for calls to attach to (realtime_bridge/sideband.py). A hint
# only: the bridge also re-reads the live calls from the database when it starts and every few
# seconds.
BRIDGE_CALLS = "bridge.calls"
BRIDGE_ATTACH = "bridge.attach"
# Each staff dashboard also joins its person's own group (staff_user_group), so that a logout, a
# deactivation or a loss of staff status closes it (approvals/signals.py), with one of these
# close codes, which the dashboard's JS knows: it then stops reconnecting and says why.
STAFF_ENDED = "staff.ended"
CLOSE_LOGGED_OUT = 4401
CLOSE_NOT_ALLOWED = 4403


class Hook:
    """A named after-commit hook. Receivers are connected explicitly (in AppConfig.ready()) and
    called with the keyword arguments of send(), in the order they were connected."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[Callable[..., object]] = []

    def connect(self, receiver: Callable[..., object]) -> None:
        """Call `receiver(**kwargs)` on every send(); connecting the same one twice is a no-op."""
        if receiver not in self._receivers:
            self._receivers.append(receiver)

    def disconnect(self, receiver: Callable[..., object]) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    def send(self, **kwargs: Any) -> None:
        """Call every receiver. It runs after commit, when the change is already true: one
        receiver's failure is logged and the others still run (the sweeps heal what it missed)."""
        for receiver in list(self._receivers):
            try:
                receiver(**kwargs)
            except Exception:
                logger.exception("Hook %s: receiver %r failed", self.name, receiver)


# A request was answered (approved, denied or expired: by a person, a quorum, the policy or the
# deadline) and that answer is committed. kwargs: request_id, session_id, status (the request's
# new status), kind (the audit kind of the answer, DECIDED or EXPIRED).
decision_committed = Hook("decision_committed")

# A pending request reached a step (it was routed to its first groups, or escalated to the next)
# and that is committed. kwargs: request_id. The services' own receiver escalates at once when the
# step says so and nobody of its groups is reachable (approvals/apps.py connects it).
step_reached = Hook("step_reached")

# A request now waits for people: it was routed to its first groups (request_opened) or escalated
# to the next ones (request_escalated). kwargs: request_id. notify/ reaches the groups' members.
request_opened = Hook("request_opened")
request_escalated = Hook("request_escalated")

# OpenAI sent an `error` event on a session, or a relayed session failed (realtime_bridge).
# kwargs: session_id, error_type (the error's `type`, e.g. "invalid_request_error", or
# "session_failed"). observability/ counts them.
upstream_error = Hook("upstream_error")


def session_group(session_id: int) -> str:
    """The group of the one process that holds this session's upstream socket."""
    return f"relay.session.{session_id}"


def staff_user_group(user_id: int) -> str:
    """The group of one staff member's open dashboards."""
    return f"staff.user.{user_id}"


def staff_ended(user_id: int, *, code: int, session_key: str | None = None) -> bool:
    """Close the open dashboards of this person with `code` (CLOSE_LOGGED_OUT or
    CLOSE_NOT_ALLOWED); only those of one login session when `session_key` is given (a logout
    in one browser leaves their other, still logged-in, browsers alone)."""
    return _group_send(staff_user_group(user_id), {"type": STAFF_ENDED, "code": code, "session_key": session_key})


def request_changed_message(
    request_dict: dict[str, Any], *, audience: str = "", earlier_audience: str | None = None
) -> dict[str, Any]:
    # The browser frame is serialised once here, not once per dashboard: with a hundred staff
    # screens open that is a hundred json.dumps less on the event loop that relays voice.
    # `audience` (ApprovalRequest.audience: "" = any staff, else ",group,…,") lets each
    # dashboard consumer keep the frame from people who may not decide the request.
    # `earlier_audience` (ApprovalRequest.earlier_audience(), None at the first step): who could
    # decide it before it escalated; their dashboards get the card once more as
    # `request_escalated`, to stamp it "Escalated to …" instead of letting it vanish.
    frame = json.dumps({"type": "request_changed", "request": request_dict}, separators=(",", ":"))
    message = {"type": REQUEST_CHANGED, "frame": frame, "id": request_dict["id"], "audience": audience}
    if earlier_audience is not None:
        message["earlier_audience"] = earlier_audience
    return message


def request_escalated_frame(frame: str) -> str:
    """The request_changed `frame` as a request_escalated one, without serialising it again."""
    return frame.replace('{"type":"request_changed"', '{"type":"request_escalated"', 1)


def request_removed_frame(request_id: int) -> str:
    """For a dashboard whose person may no longer decide the request (it escalated away)."""
    return json.dumps({"type": "request_removed", "id": request_id}, separators=(",", ":"))


def relay_decision_message(request_id: int, decision: dict[str, Any] | None = None) -> dict[str, Any]:
    """`decision` ({"upstream_id", "approve", "reason"}), when given, is what the transaction that
    sends this message committed (it is sent only after that commit), so the relay may send it
    upstream without reading it back; the outbox read stays the fallback."""
    message: dict[str, Any] = {"type": RELAY_DECISION, "request_id": request_id}
    if decision is not None:
        message["decision"] = decision
    return message


def _group_send(group: str, message: dict[str, Any]) -> bool:
    layer = get_channel_layer()
    if layer is None:
        logger.warning("No channel layer configured: %s to %s not sent", message["type"], group)
        return False
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # The DB is the truth and every listener re-syncs from it; a broken Redis must not
        # turn a committed decision into a 500 for the person who made it.
        logger.exception("Channel layer error: %s to %s not sent", message["type"], group)
        return False
    return True


def request_changed(request_id: int) -> bool:
    """Tell every dashboard the request's current state (reloaded now, so it is never staler
    than the commit that triggered it)."""
    req = ApprovalRequest.objects.for_one().filter(pk=request_id).first()
    if req is None:
        return False
    return send_request(req)


class _LastSent:
    """What this process last told the dashboards of each request, as a digest of the card without
    its clock, so that one change reaches them as one frame (issue 16.7). Several after-commit
    callbacks of one transaction may each re-send a request (a Responses run's step records the
    tool call, then closes the session and re-sends every card of it): each reloads the request
    after the commit, so all but the first would send the same card again. A card that did not
    change is news to nobody: a dashboard that (re)connects gets a snapshot anyway."""

    SIZE = 4096

    def __init__(self) -> None:
        self.digests: OrderedDict[int, str] = OrderedDict()
        self.lock = threading.Lock()

    @staticmethod
    def digest(card: dict[str, Any], message: dict[str, Any]) -> str:
        # seconds_left is the clock (each dashboard counts down by itself), not a change.
        unclocked = {k: v for k, v in card.items() if k != "seconds_left"}
        parts = [unclocked, message["audience"], message.get("earlier_audience")]
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def is_news(self, request_id: int, digest: str) -> bool:
        with self.lock:
            return self.digests.get(request_id) != digest

    def sent(self, request_id: int, digest: str) -> None:
        with self.lock:
            self.digests[request_id] = digest
            self.digests.move_to_end(request_id)
            while len(self.digests) > self.SIZE:
                self.digests.popitem(last=False)


_last_sent = _LastSent()


def send_request(req: ApprovalRequest) -> bool:
    """Tell every dashboard this request's state (`req` loaded with for_one() or for_display()),
    unless this process already told them exactly this (then True: they know it)."""
    card = req.to_dict()
    message = request_changed_message(card, audience=req.audience, earlier_audience=req.earlier_audience())
    digest = _last_sent.digest(card, message)
    if not _last_sent.is_news(req.pk, digest):
        return True
    sent = _group_send(DASHBOARD, message)
    if sent:  # a send that failed (Redis away) must be tried again by the next change or sweep
        _last_sent.sent(req.pk, digest)
    return sent


def relay_decision(*, session_id: int, request_id: int, decision: dict[str, Any] | None = None) -> bool:
    """Nudge the relay holding the session: it sends the committed `decision` at once, or reads
    the outbox and sends what it finds."""
    return _group_send(session_group(session_id), relay_decision_message(request_id, decision))


def relay_stop(*, session_id: int) -> bool:
    """Tell the process holding the session to close it (after the stop committed)."""
    return _group_send(
        session_group(session_id),
        {"type": RELAY_STOP, "code": STOPPED_CLOSE_CODE, "reason": STOPPED_CLOSE_REASON},
    )


def session_requests_changed(session_id: int, *, pending_only: bool = True) -> None:
    """Re-send the cards of a session's requests (after commit): its pending ones, e.g. after a
    new conversation line; or all of them (`pending_only=False`) when something every card of
    the session shows changed, e.g. the state of its call or run."""
    requests = ApprovalRequest.objects.filter(session_id=session_id)
    if pending_only:
        requests = requests.pending()
    for pk in requests.values_list("pk", flat=True):
        request_changed(pk)


def bridge_attach(call_id: int) -> bool:
    """Tell run_bridge there is a call (realtime_bridge Call pk) to attach to (after commit)."""
    return _group_send(BRIDGE_CALLS, {"type": BRIDGE_ATTACH, "call": call_id})


def grants_changed() -> bool:
    """Tell every dashboard to re-read its grants list (after commit of a grant's change)."""
    return _group_send(DASHBOARD, {"type": GRANTS_CHANGED})


# Presence and reach ---------------------------------------------------------------------------


def presence_changed() -> bool:
    """Tell every dashboard that who is online changed (after the presence row was written).
    The map is read once here, not once per dashboard; each consumer keeps its person's groups."""
    return _group_send(DASHBOARD, {"type": PRESENCE_CHANGED, "online": online_by_group()})


def online_by_group() -> dict[str, list[str]]:
    """{group name: [display names of its members with a dashboard open]}, and under "" every
    staff member online (for requests any staff may decide)."""
    from django.contrib.auth.models import Group

    out: dict[str, list[str]] = {"": [_label(u) for u in online_members([])]}
    fresh = DashboardPresence.objects.fresh().values("user_id")
    for group in Group.objects.filter(user__in=fresh).distinct().order_by("name"):
        out[group.name] = [_label(u) for u in online_members([group.name])]
    return out


def _label(user: Any) -> str:
    # As services.user_label names people (events must not import the services).
    return str(user.get_full_name() or user.get_username())


# Whether anyone of a step's groups can be reached now: a list of providers, each
# `provider(groups: list[str]) -> bool` ([] = any staff member). Dashboard presence is the
# default one; an app above approvals (notify: push subscriptions, …) appends its own in
# AppConfig.ready(). Consulted by `escalate_when_nobody_online` on routing and on each step.
def _dashboard_presence(groups: list[str]) -> bool:
    return bool(online_members(groups))


reachability_providers: list[Callable[[list[str]], bool]] = [_dashboard_presence]


def is_anyone_online(groups: list[str]) -> bool:
    """Whether any provider can reach someone of `groups` now. A provider that fails counts as
    "reachable": an outage of a notification channel must not skip people who are there."""
    for provider in list(reachability_providers):
        try:
            if provider(groups):
                return True
        except Exception:
            logger.exception("Reachability provider %r failed", provider)
            return True
    return False
