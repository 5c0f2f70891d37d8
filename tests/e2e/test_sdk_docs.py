"""The examples of docs/agents-js.md and docs/python-sdk.md, run exactly as printed, against the
real stack: a staff member decides on the dashboard and the guest hears one reply."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.sdk_flows import guest_token, hotel_stack, staff_decides  # noqa: F401
from tests.e2e.test_browser_approval import sim_url  # noqa: F401 (a fixture)
from tests.e2e.test_sdk_agents_js import JS_DIR, node  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"


def code_block(doc: str, lang: str) -> str:
    (block,) = re.findall(rf"```{lang}\n(.*?)```", (DOCS / doc).read_text(), re.S)
    return block


def run_example(argv: list[str], env: dict[str, str], web_url: str, password: str, decision: str) -> list[str]:
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        staff_decides(web_url, password, decision)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, f"exited {proc.returncode}: {err}"
    return out.splitlines()


def test_the_agents_js_example_as_printed(hotel_stack, node, password, tmp_path):  # noqa: F811
    web, hotel = hotel_stack
    # Inside tests/js, so that its imports resolve to tests/js/node_modules (git-ignored name).
    app = JS_DIR / f".doc-app-{os.getpid()}.mjs"
    app.write_text(code_block("agents-js.md", "js"))
    try:
        env = {"COUNTERSIGN_TOKEN": guest_token(), "COUNTERSIGN_WS": web.url.replace("http://", "ws://")}
        lines = run_example([node, str(app)], env, web.url, password, "approve")
    finally:
        app.unlink()
    assert "Waiting for the front desk to approve unlock_door" in lines
    assert any(line.startswith("Tool finished: unlock_door {") for line in lines)
    said = [line for line in lines if line.startswith("Front desk:")]
    # A voice session: the holding line while staff decide, then the one reply to the outcome.
    assert len(said) == 2 and "checking your request" in said[0] and said[1].startswith("Front desk: All done.")
    assert [a["action"] for a in hotel.state()["activity"]] == ["unlock_door"]


def test_the_python_example_as_printed(hotel_stack, password, tmp_path):  # noqa: F811
    web, hotel = hotel_stack
    script = tmp_path / "guest.py"
    script.write_text(code_block("python-sdk.md", "python"))
    env = {"COUNTERSIGN_TOKEN": guest_token(), "COUNTERSIGN_URL": web.url}
    lines = run_example([sys.executable, str(script)], env, web.url, password, "deny")
    assert "Waiting for the front desk to approve unlock_door" in lines
    said = [line for line in lines if line.startswith("Front desk:")]
    assert len(said) == 1 and said[0].startswith("Front desk: Okay, I won't run unlock_door; it was not approved.")
    assert hotel.state()["activity"] == []
