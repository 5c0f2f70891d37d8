"""Grants (issue 14): decisions beyond yes and no. The only writer of Grant rows.

- Approve with changes: the decider's edited arguments are checked against the tool's input
  schema (the registry's definition); the request is answered upstream as a denial whose reason
  asks the model to call again with exactly those arguments, and a one-time CALL grant approves
  the next call of that tool in that session whose arguments have the same canonical digest.
- Scope: an approval may also grant the tool for the rest of the session (SESSION) or for the
  same guest or room for some minutes (GUEST), within the limits the request's rule froze into
  its plan, optionally only with some arguments fixed.

open_request consults find_grant after the policy says "ask" and before anyone is asked; a
drifted tool voids its grants (void_for_tool, from the registry's drift detection, and again
here when a grant's tool hash no longer matches). Every change is audited in its transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import jsonschema
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from approvals import events
from approvals.models import (
    REVIEW_ONLY_GROUP,
    ApprovalRequest,
    AuditKind,
    Grant,
    McpTool,
    RealtimeSession,
    arguments_digest,
    canonical_arguments,
    grant_options,
)
from approvals.services._common import on_commit, user_label
from audit import writer

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# How long the one-time grant of an edited call waits for the model to call again.
EDIT_GRANT_MINUTES = 15
# The session metadata keys that name a guest, in order of preference; else the session label.
SUBJECT_KEYS = ("room", "guest")
MAX_CONSTRAINTS = 10


@dataclass(frozen=True)
class GrantSpec:
    """What a decider asked to grant, checked (check_scope): SESSION or GUEST."""

    scope: str
    minutes: int | None = None
    constraints: dict[str, Any] = field(default_factory=dict)


def subject_of(session: RealtimeSession) -> tuple[str, str]:
    """Who a GUEST grant is for: the session's room (or guest) from its token's metadata, else
    its label (the token's name)."""
    metadata = session.metadata or {}
    for key in SUBJECT_KEYS:
        value = metadata.get(key)
        if value not in (None, ""):
            return key, str(value)[:200]
    return "label", session.label[:200]


def _tool(server_label: str, tool_name: str) -> McpTool | None:
    return McpTool.objects.filter(server__label=server_label, name=tool_name, removed_at__isnull=True).first()


def check_edited_arguments(req: ApprovalRequest, text: str) -> str:
    """The edited arguments of an approval with changes, as canonical JSON. Raises ValueError
    in words when they are not a JSON object, do not fit the tool's input schema (when the
    registry knows the tool), or are the same as asked (then it is a plain approval)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError("The changed arguments are not valid JSON.") from None
    if not isinstance(value, dict):
        raise ValueError("The changed arguments must be a JSON object, like the ones asked.")
    tool = _tool(req.server_label, req.tool_name)
    schema = (tool.definition or {}).get("input_schema") if tool is not None else None
    if isinstance(schema, dict) and schema:
        validator = jsonschema.validators.validator_for(schema)(schema)
        problems = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if problems:
            first = problems[0]
            where = ".".join(str(p) for p in first.absolute_path) or "the arguments"
            raise ValueError(f"The changed arguments do not fit the tool: {where}: {first.message}")
    canonical = canonical_arguments(value)
    if canonical == canonical_arguments(req.arguments):
        raise ValueError("The arguments are unchanged: approve the request as it is instead.")
    return canonical


def check_scope(
    req: ApprovalRequest, *, scope: str, minutes: int | None = None, constraints: dict[str, Any] | None = None
) -> GrantSpec | None:
    """What an approval grants beyond its call, checked against the limits its rule froze into
    its plan. None for "this call" (the default). Raises ValueError in words otherwise."""
    if scope in ("", "call"):
        return None
    limits = grant_options(req.plan)
    if scope not in ("session", "guest"):
        raise ValueError("Choose this call, this tool for this session, or this tool for this guest.")
    if scope not in limits["scopes"]:
        raise ValueError("This request's rule does not allow that grant: approve this call only.")
    if req.quorum > 1:
        raise ValueError("A rule with more than one approver cannot grant ahead: approve this call only.")
    given = dict(constraints or {})
    if len(given) > MAX_CONSTRAINTS or any(not isinstance(k, str) or not k for k in given):
        raise ValueError("The argument constraints must name arguments of this call.")
    asked = req.parsed_arguments if isinstance(req.parsed_arguments, dict) else {}
    unknown = [k for k in given if k not in asked]
    if unknown:
        raise ValueError(f"This call has no argument {unknown[0]!r} to bind the grant to.")
    if scope == "session":
        return GrantSpec("session", None, given)
    most = limits["max_minutes"]
    if minutes is None or minutes < 1 or minutes > most:
        raise ValueError(f"A grant for this guest lasts from 1 to {most} minutes under this request's rule.")
    return GrantSpec("guest", minutes, given)


def _created_row(grant: Grant, by: User) -> dict[str, Any]:
    return {
        "kind": AuditKind.GRANT_CREATED,
        "request_id": grant.source_request_id,
        "session_id": grant.session_id,
        "actor": by,
        "actor_label": grant.created_by_label,
        "created_at": grant.created_at,
        "payload": {
            "grant": grant.pk,
            "scope": grant.scope,
            "description": grant.describe(),
            "server": grant.server_label,
            "tool": grant.tool_name,
            "subject": {grant.subject_key: grant.subject_value} if grant.subject_key else None,
            "constraints": grant.constraints,
            "arguments": grant.arguments or None,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        },
    }


def make_grant(
    req: ApprovalRequest, *, by: User, now: datetime, spec: GrantSpec | None = None, edited: str = ""
) -> Grant:
    """Write the grant a decision makes (inside the decision's transaction): the one-time CALL
    grant of an edited call, or the SESSION/GUEST grant of `spec`. Side effects: audit
    GRANT_CREATED; after commit the dashboards' grants list is refreshed."""
    tool = _tool(req.server_label, req.tool_name)
    fields: dict[str, Any] = {
        "source_request": req,
        "session_id": req.session_id,
        "server_label": req.server_label,
        "tool_name": req.tool_name,
        "tool_hash": tool.definition_hash if tool is not None else "",
        "created_at": now,
        "created_by": by,
        "created_by_label": user_label(by),
    }
    if edited:
        fields.update(
            scope=Grant.Scope.CALL,
            arguments=edited,
            arguments_digest=arguments_digest(edited),
            uses_left=1,
            expires_at=now + timedelta(minutes=EDIT_GRANT_MINUTES),
        )
    elif spec is not None:
        fields.update(scope=spec.scope, constraints=spec.constraints)
        if spec.scope == Grant.Scope.GUEST:
            key, value = subject_of(req.session)
            fields.update(subject_key=key, subject_value=value, expires_at=now + timedelta(minutes=spec.minutes or 0))
    else:
        raise ValueError("Nothing to grant.")
    grant = Grant.objects.create(**fields)
    writer.record_many([_created_row(grant, by)])
    on_commit(events.grants_changed)
    return grant


def _fits(grant: Grant, arguments: str, parsed: Any) -> bool:
    if grant.scope == Grant.Scope.CALL:
        return grant.arguments_digest == arguments_digest(arguments)
    if not grant.constraints:
        return True
    if not isinstance(parsed, dict):
        return False
    # Compared as canonical JSON: {"room": "1204"} never matches {"room": 1204} by accident.
    return all(
        k in parsed and canonical_arguments(parsed[k]) == canonical_arguments(v) for k, v in grant.constraints.items()
    )


def find_grant(
    *, session: RealtimeSession, server_label: str, tool_name: str, arguments: str, now: datetime
) -> Grant | None:
    """The live grant that approves this call without asking, if any: an edited call's grant
    (same session, same canonical arguments), else a grant of the tool for this session, else
    one for this session's guest. A grant whose tool definition changed since it was made is
    voided here (and skipped). Reads; voiding writes its audit row."""
    candidates = list(
        Grant.objects.live(now)
        .filter(server_label=server_label, tool_name=tool_name)
        .filter(Q(session=session) | Q(scope=Grant.Scope.GUEST))
        .order_by("scope", "pk")  # call < guest < session: the edited call first
    )
    if not candidates:
        return None
    subject = subject_of(session)
    tool = _tool(server_label, tool_name)
    current_hash = tool.definition_hash if tool is not None else ""
    try:
        parsed = json.loads(arguments) if arguments else {}
    except ValueError:
        parsed = None
    for grant in candidates:
        if grant.scope == Grant.Scope.GUEST and (grant.subject_key, grant.subject_value) != subject:
            continue
        if grant.tool_hash and grant.tool_hash != current_hash:
            # Granted for the tool as it was: its definition changed since (a drift the registry
            # missed, or one seen first here). Voided, audited, and this call asks.
            void_for_tool(
                server_label, tool_name, why="the tool's definition changed since the grant", keep=current_hash
            )
            continue
        if _fits(grant, arguments, parsed):
            return grant
    return None


def take(grant: Grant, *, now: datetime) -> dict[str, Any] | None:
    """Use a grant for one call (inside the opening request's transaction): one conditional
    UPDATE, so a one-time grant approves exactly one call however many race for it. Returns the
    GRANT_USED audit row for the caller to write with the request's rows (naming the grant and
    the decision that made it), or None when the grant is no longer live."""
    changes: dict[str, Any] = {"used_count": F("used_count") + 1, "last_used_at": now}
    if grant.uses_left is not None:
        changes["uses_left"] = F("uses_left") - 1
    if not Grant.objects.live(now).filter(pk=grant.pk).update(**changes):
        return None
    on_commit(events.grants_changed)
    return {
        "kind": AuditKind.GRANT_USED,
        "actor_label": grant_label(grant),
        "payload": {
            "grant": grant.pk,
            "scope": grant.scope,
            "source_request": grant.source_request_id,
            "granted_by": grant.created_by_label,
        },
    }


def grant_label(grant: Grant) -> str:
    """Who decided a call a grant approved, as cards and the audit say it."""
    return f"grant #{grant.pk} ({grant.created_by_label})"[:150]


def revoke_grant(grant: Grant, *, by: User) -> bool:
    """A person ends a grant before its time. Only staff who could decide the request that made
    it (or superusers) may. False when it was no longer live (nothing done). Side effects:
    audit GRANT_REVOKED; after commit the dashboards' grants list is refreshed."""
    source = ApprovalRequest.objects.for_one().get(pk=grant.source_request_id)
    if by.groups.filter(name=REVIEW_ONLY_GROUP).exists():
        # Duties do not mix: reviewers never decide, and ending a grant is a decision too.
        raise PermissionDenied(f"Members of {REVIEW_ONLY_GROUP} review decisions and never make them.")
    if not (by.is_active and by.is_staff) or not (by.is_superuser or source.in_audience_of(by) or _reached(source, by)):
        raise PermissionDenied("Only staff of the groups that decide this tool may revoke its grant.")
    now = timezone.now()
    label = user_label(by)
    with transaction.atomic():
        won = Grant.objects.live(now).filter(pk=grant.pk).update(revoked_at=now, revoked_by_label=label)
        if won:
            writer.record(
                kind=AuditKind.GRANT_REVOKED,
                request_id=grant.source_request_id,
                session_id=grant.session_id,
                actor=by,
                actor_label=label,
                payload={"grant": grant.pk, "scope": grant.scope, "description": grant.describe()},
                created_at=now,
            )
            on_commit(events.grants_changed)
    grant.refresh_from_db()
    return bool(won)


def _reached(req: ApprovalRequest, user: User) -> bool:
    return ApprovalRequest.objects.filter(pk=req.pk).reached_by(user).exists()


def void_for_tool(
    server_label: str, tool_name: str, *, why: str, keep: str = "", now: datetime | None = None
) -> list[int]:
    """Void every live grant of a tool whose definition changed (drift): what staff allowed was
    the tool as it was. `keep`: the current definition hash, whose grants (made since the
    change) stay. Returns the voided grants' ids. Side effect: audit GRANT_VOIDED each."""
    now = now or timezone.now()
    with transaction.atomic():
        live = Grant.objects.live(now).select_for_update().filter(server_label=server_label, tool_name=tool_name)
        if keep:
            live = live.exclude(tool_hash=keep)
        ids = list(live.values_list("pk", "source_request_id", "session_id", "scope"))
        if not ids:
            return []
        Grant.objects.filter(pk__in=[row[0] for row in ids]).update(voided_at=now, void_reason=why[:300])
        writer.record_many(
            [
                {
                    "kind": AuditKind.GRANT_VOIDED,
                    "request_id": source,
                    "session_id": session,
                    "actor_label": "registry",
                    "created_at": now,
                    "payload": {"grant": pk, "scope": scope, "server": server_label, "tool": tool_name, "why": why},
                }
                for pk, source, session, scope in ids
            ]
        )
        on_commit(events.grants_changed)
    return [row[0] for row in ids]


def edit_reason(req: ApprovalRequest, edited: str, note: str) -> str:
    """What the model is told when a person approved with changes (the reason of the denial that
    goes upstream): call again with exactly the edited arguments. English on purpose, like the
    deadline's words: it is an instruction to the model, which speaks the guest's language."""
    text = (
        f"Staff did not approve this call as asked, but approved it with changed arguments. Call the tool "
        f"{req.tool_name} on {req.server_label} again now with exactly these arguments: {edited}. That call runs "
        "without waiting for staff again; any other arguments need a new approval."
    )
    return f"{text} Note for the guest from staff: {note}" if note else text
