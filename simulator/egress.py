"""Which MCP servers the simulator's hosted MCP client may reach, as OpenAI's does.

OpenAI's hosted MCP client calls servers on the public internet only: a `server_url` on a private,
loopback or link-local address is out of its reach. The simulator reaches everything by default
(the demo's hotel server listens on 127.0.0.1); with `--mcp-egress public` (SIM_MCP_EGRESS) it
refuses such hosts as OpenAI would, except those named in `--mcp-egress-allow` (for a test's stand-in
of a public address, e.g. Countersign's gateway on 127.0.0.1). `--mcp-egress-deny` names hosts or
networks it refuses in any mode. Hosts are matched by name and by every address they resolve to.

configure() is called once when the app is created; check() is the hook of simulator/mcp_client.py.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MODES = ("open", "public")


class EgressRefused(Exception):
    """The server's host is one the simulator is configured not to reach; the message says why."""


@dataclass(frozen=True)
class Egress:
    mode: str = "open"
    allow_names: frozenset[str] = frozenset()
    allow_nets: tuple[Network, ...] = ()
    deny_names: frozenset[str] = frozenset()
    deny_nets: tuple[Network, ...] = field(default_factory=tuple)


_current = Egress()


def _split(text: str) -> tuple[frozenset[str], tuple[Network, ...]]:
    names, nets = set(), []
    for part in text.replace(" ", ",").split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            names.add(part)
    return frozenset(names), tuple(nets)


def configure(mode: str, allow: str = "", deny: str = "") -> Egress:
    """Set the rules (raises ValueError on an unknown mode); returns them."""
    global _current
    if mode not in MODES:
        raise ValueError(f"mcp_egress must be one of {', '.join(MODES)}, not {mode!r}")
    allow_names, allow_nets = _split(allow)
    deny_names, deny_nets = _split(deny)
    _current = Egress(mode, allow_names, allow_nets, deny_names, deny_nets)
    return _current


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []  # unresolvable: the connection attempt will say so
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _in(address: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in nets)


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not address.is_global


def check(url: str, rules: Egress | None = None) -> None:
    """Raise EgressRefused when the rules forbid reaching `url`'s host."""
    rules = rules or _current
    if rules.mode == "open" and not rules.deny_names and not rules.deny_nets:
        return
    host = (urlsplit(url).hostname or "").lower()
    addresses = _addresses(host)
    if host in rules.deny_names or any(_in(a, rules.deny_nets) for a in addresses):
        raise EgressRefused(f"the simulator is configured not to reach {host} (--mcp-egress-deny)")
    if rules.mode != "public":
        return
    if host in rules.allow_names or (addresses and all(_in(a, rules.allow_nets) for a in addresses)):
        return
    private = [str(a) for a in addresses if _private(a)]
    if private or host in ("localhost", ""):
        raise EgressRefused(
            f"{host} is a private address ({', '.join(private) or host}); like OpenAI's hosted MCP client, "
            "the simulator reaches public servers only (--mcp-egress public)"
        )
