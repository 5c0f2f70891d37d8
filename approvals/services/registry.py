"""The registry: client tokens (who may open a session), MCP servers (their credentials stay
here), and the tools a probe or a session listing found on them, with drift (a tool whose
definition changed since an admin last reviewed it)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from approvals import probe
from approvals.models import AuditKind, ClientToken, McpServer, McpTool, PolicyRule, Scope, tool_definition_hash
from approvals.services import grants
from approvals.services._common import actor_label, user_label
from audit import writer

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def issue_token(
    *, label: str, metadata: dict[str, Any], by: User | None = None, scopes: list[str] | None = None
) -> tuple[ClientToken, str]:
    """Create a client token and return it with its plaintext, which exists only in this return
    value: only the hash is stored. `scopes` (Scope values): default `realtime` only. Raises
    ValueError on an unknown scope. Side effect: audit TOKEN_ISSUED (without the secret)."""
    scopes = list(dict.fromkeys(scopes)) if scopes else [Scope.REALTIME.value]
    unknown = [s for s in scopes if s not in Scope.values]
    if unknown:
        raise ValueError(f"Unknown scope {unknown[0]!r}; known: {', '.join(Scope.values)}")
    plaintext = ClientToken.generate()
    with transaction.atomic():
        token = ClientToken.objects.create(
            label=label,
            metadata=metadata,
            token_hash=ClientToken.hash(plaintext),
            prefix=plaintext[:12],
            created_by=by,
            scopes=scopes,
        )
        writer.record(
            kind=AuditKind.TOKEN_ISSUED,
            actor=by,
            actor_label=actor_label(by),
            payload={
                "token_id": token.pk,
                "label": label,
                "prefix": token.prefix,
                "metadata": metadata,
                "scopes": scopes,
            },
        )
    return token, plaintext


def revoke_token(token: ClientToken, *, by: User | None) -> bool:
    """Revoke a client token: no new session may open with it. Idempotent; False when it was
    already revoked. Side effect: audit TOKEN_REVOKED."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional: revoking twice keeps the first time and writes one audit row.
        won = ClientToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
        if won:
            writer.record(
                kind=AuditKind.TOKEN_REVOKED,
                actor=by,
                actor_label=actor_label(by),
                payload={"token_id": token.pk, "label": token.label, "prefix": token.prefix},
                created_at=now,
            )
    token.refresh_from_db(fields=["revoked_at"])
    return bool(won)


def _server_audit_payload(server: McpServer) -> dict[str, Any]:
    # Never the secrets: whether an authorization is set, and the header names only.
    return {
        "server_id": server.pk,
        "label": server.label,
        "url": server.url,
        "transport": server.transport,
        "require_approval": server.require_approval,
        "description": server.description,
        "enabled": server.enabled,
        "authorization_set": bool(server.authorization),
        "header_names": sorted(server.headers or {}),
    }


def save_mcp_server(server: McpServer, *, by: User | None, created: bool) -> McpServer:
    """Save a registry entry edited elsewhere (the admin form). Side effect: audit SERVER_SAVED."""
    with transaction.atomic():
        server.save()
        writer.record(
            kind=AuditKind.SERVER_SAVED,
            actor=by,
            actor_label=actor_label(by),
            payload={"created": created, **_server_audit_payload(server)},
        )
    return server


def rules_naming(server: McpServer) -> list[str]:
    """The labels of the policy rules that name this server."""
    return list(PolicyRule.objects.filter(server_label=server.label).values_list("label", flat=True))


def delete_mcp_server(server: McpServer, *, by: User | None) -> None:
    """Remove a registry entry. Refused (ValidationError) while policy rules name it: deleting
    it would leave those rules matching nothing, silently. Side effect: audit SERVER_DELETED."""
    naming = rules_naming(server)
    if naming:
        raise ValidationError(
            f"Policy rule(s) {', '.join(naming)} name the server {server.label}: change or delete them first."
        )
    with transaction.atomic():
        payload = _server_audit_payload(server)
        server.delete()
        writer.record(
            kind=AuditKind.SERVER_DELETED,
            actor=by,
            actor_label=actor_label(by),
            payload=payload,
        )


def register_mcp_server(
    *,
    label: str,
    url: str,
    authorization: str | None = None,
    headers: dict[str, str] | None = None,
    require_approval: str | None = None,
    transport: str | None = None,
    description: str | None = None,
    gateway_mode: bool | None = None,
) -> tuple[McpServer, bool]:
    """Create the MCP server `label`, or update it; an option left as None keeps its current
    value. Returns (server, created?). Raises django's ValidationError on a bad label, URL or
    choice. Side effect: audit SERVER_SAVED (without the secrets)."""
    server = McpServer.objects.filter(label=label).first()
    created = server is None
    if server is None:
        server = McpServer(label=label)
    server.url = url
    if authorization is not None:
        server.authorization = authorization
    if headers is not None:
        server.headers = headers
    if require_approval is not None:
        server.require_approval = require_approval
    if transport is not None:
        server.transport = transport
    if description is not None:
        server.description = description
    if gateway_mode is not None:
        server.gateway_mode = gateway_mode
    server.full_clean()
    save_mcp_server(server, by=None, created=created)
    return server, created


def probe_mcp_server(server: McpServer, *, by: User | None) -> probe.ProbeResult:
    """Connect to `server` as OpenAI would, list its tools, and store what was found: the report
    on the server, and each listed tool with the hash of its definition (store_tools). Runs the
    network part first, outside any transaction. Side effect: audit SERVER_PROBED (causes and
    tool names only, never a credential). Call it from sync code (an admin action, a command)."""
    result = asyncio.run(
        probe.probe(
            url=server.url,
            transport=server.transport,
            authorization=server.authorization,
            headers=dict(server.headers or {}),
        )
    )
    now = timezone.now()
    with transaction.atomic():
        drifted: list[str] = []
        if result.reached:
            drifted = store_tools(server, result.tools, now=now)
        McpServer.objects.filter(pk=server.pk).update(probed_at=now, probe_ok=result.ok, probe_report=result.report())
        writer.record(
            kind=AuditKind.SERVER_PROBED,
            actor=by,
            actor_label=actor_label(by),
            payload={
                "server_id": server.pk,
                "label": server.label,
                "ok": result.ok,
                "problems": result.problems,
                "tools": [t["name"] for t in result.tools],
                "drifted": drifted,
            },
            created_at=now,
        )
    server.refresh_from_db(fields=["probed_at", "probe_ok", "probe_report"])
    return result


def _take_definition(tool: McpTool, definition: dict[str, Any], digest: str, *, now: datetime) -> bool:
    """A tool's definition changed (the caller saves): keep what an admin last reviewed next to
    what the server now says, side by side, and flag it; a change back to the reviewed
    definition clears the flag. Returns whether the tool is newly flagged."""
    newly = tool.drifted_at is None
    if newly:
        tool.previous_definition, tool.previous_hash = tool.definition, tool.definition_hash
        tool.drifted_at = now
    tool.definition, tool.definition_hash = definition, digest
    # What staff granted was the tool as it was: any change voids its grants (audited), even a
    # change back to the reviewed definition.
    grants.void_for_tool(tool.server.label, tool.name, why="the tool's definition changed", keep=digest, now=now)
    if tool.definition_hash == tool.previous_hash:
        # Changed back to what was last reviewed: nothing left to review.
        tool.drifted_at = None
        return False
    return newly


def store_tools(server: McpServer, definitions: list[dict[str, Any]], *, now: datetime) -> list[str]:
    """Record the tools a probe listed. A known name with a new definition hash keeps the old
    definition beside the new one and is flagged (drifted_at) until mark_tool_reviewed; a name
    no longer listed gets removed_at. Returns the names that drifted in this probe."""
    drifted = []
    known = {tool.name: tool for tool in McpTool.objects.select_for_update().filter(server=server)}
    listed = set()
    for definition in definitions:
        name = definition["name"]
        if name in listed:  # a duplicate name is a probe problem already; keep the first
            continue
        listed.add(name)
        digest = tool_definition_hash(definition)
        tool = known.get(name)
        if tool is None:
            McpTool.objects.create(
                server=server,
                name=name,
                definition=definition,
                definition_hash=digest,
                first_seen_at=now,
                last_seen_at=now,
            )
            continue
        tool.last_seen_at = now
        tool.removed_at = None
        if tool.definition_hash != digest:
            _take_definition(tool, definition, digest, now=now)
            drifted.append(name)
        tool.save()
    McpTool.objects.filter(server=server, removed_at__isnull=True).exclude(name__in=listed).update(removed_at=now)
    return drifted


def mark_tool_reviewed(tool: McpTool, *, by: User) -> bool:
    """Accept a drifted tool's current definition. False if it was not flagged (nothing done).
    Side effect: audit TOOL_REVIEWED with both definition hashes."""
    now = timezone.now()
    with transaction.atomic():
        won = McpTool.objects.filter(pk=tool.pk, drifted_at__isnull=False).update(
            drifted_at=None, reviewed_at=now, reviewed_by_label=user_label(by)
        )
        if won:
            writer.record(
                kind=AuditKind.TOOL_REVIEWED,
                actor=by,
                actor_label=user_label(by),
                payload={
                    "server_id": tool.server_id,
                    "tool": tool.name,
                    "previous_hash": tool.previous_hash,
                    "definition_hash": tool.definition_hash,
                },
                created_at=now,
            )
    tool.refresh_from_db()
    return bool(won)


def observe_listed_tools(*, server_label: str, tools: list[dict[str, Any]]) -> list[str]:
    """Compare an `mcp_list_tools` item seen in a session with the registry: a known tool whose
    description or input schema changed is flagged for review (drift) exactly as a probe would
    flag it, which suspends the rules that let it run without a person. Tools the registry does
    not know are left to the probe (a listing shows only the tools allowed_tools let through,
    and OpenAI reports annotations in its own shape). Returns the names newly flagged. Side
    effect: audit TOOL_DRIFTED per newly flagged tool."""
    listed = {str(t.get("name")): t for t in tools if isinstance(t, dict) and t.get("name")}
    if not listed:
        return []
    now = timezone.now()
    flagged = []
    with transaction.atomic():
        for tool in McpTool.objects.select_for_update().filter(server__label=server_label, name__in=list(listed)):
            seen = listed[tool.name]
            stored = tool.definition or {}
            same = (seen.get("description") or "") == (stored.get("description") or "") and (
                seen.get("input_schema") or {}
            ) == (stored.get("input_schema") or {})
            if same:
                continue
            # The probe's shape, with what the listing shows replaced: a later probe that finds
            # the same change then sees no further drift.
            definition = {
                **stored,
                "description": seen.get("description") or "",
                "input_schema": seen.get("input_schema") or {},
            }
            digest = tool_definition_hash(definition)
            if digest == tool.definition_hash:
                continue
            tool.last_seen_at = now
            newly = _take_definition(tool, definition, digest, now=now)
            tool.save()
            if newly:
                flagged.append(tool.name)
                writer.record(
                    kind=AuditKind.TOOL_DRIFTED,
                    actor_label="relay",
                    payload={
                        "server_id": tool.server_id,
                        "server": server_label,
                        "tool": tool.name,
                        "previous_hash": tool.previous_hash,
                        "definition_hash": digest,
                        "seen_in": "mcp_list_tools",
                    },
                    created_at=now,
                )
    return flagged
