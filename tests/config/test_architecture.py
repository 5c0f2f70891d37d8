"""The shape of the house (docs/architecture.md): rooms stay small enough to read, the hot path
stays in short functions, and nothing makes things happen by listening to audit rows. The import
layers themselves are import-linter's contracts (`make layers`), and the types are mypy's
(`make typecheck`); both run in `make test`."""

from __future__ import annotations

import ast
from pathlib import Path

from django.db.models.signals import post_delete, post_save, pre_save

from audit.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ["config", "audit", "approvals", "compliance", "realtime_bridge", "notify", "simulator", "demo", "mcp_link"]
MAX_MODULE_LINES = 500
MAX_HOT_FUNCTION_LINES = 60
# What runs for every relayed frame, every upstream item, every decision and every dashboard push.
HOT_PATH = [
    "realtime_bridge/relay.py",
    "realtime_bridge/relay_server.py",
    "realtime_bridge/consumers.py",
    "realtime_bridge/gate.py",
    "realtime_bridge/protocol.py",
    "realtime_bridge/items.py",
    "realtime_bridge/handlers.py",
    "realtime_bridge/outbound.py",
    "approvals/services",
    "approvals/events.py",
    "approvals/consumers.py",
    "audit/writer.py",
]


def _modules(*roots: str) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        path = ROOT / root
        candidates = [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
        found += [p for p in candidates if "migrations" not in p.parts]
    return found


def test_no_module_outside_migrations_and_tests_passes_500_lines():
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in _modules(*(room for room in ROOMS if (ROOT / room).exists()))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_no_function_on_the_hot_path_passes_60_lines():
    too_long = {}
    for path in _modules(*HOT_PATH):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_HOT_FUNCTION_LINES:
                    too_long[f"{path.relative_to(ROOT)}:{node.name}"] = length
    assert too_long == {}


def test_nothing_listens_to_audit_rows():
    # Effects that cross rooms are explicit after-commit hooks (approvals/events.py); an audit
    # row is a record, never a trigger.
    for signal in (pre_save, post_save, post_delete):
        assert not signal.has_listeners(AuditEvent)
