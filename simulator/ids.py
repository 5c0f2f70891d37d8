"""Ids shaped like the real API's (REALTIME_PROTOCOL.md section 2): a prefix and 21 base62 characters.

MCP item prefixes follow the Responses API (`mcpl_`, `mcpr_`, `mcp_`, section 9); Realtime's own are
unverified (section "Uncertain" 5). Every id stays within the 32-character item id limit.
"""

from __future__ import annotations

import secrets
import string

_BASE62 = string.digits + string.ascii_letters


def base62(n: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(n))


def new_id(prefix: str) -> str:
    """`event_…`, `sess_…`, `resp_…`, `conv_…`, `item_…`, `mcpl_…`, `mcpr_…`, `mcp_…`."""
    return f"{prefix}_{base62(21)}"
