"""`python -m demo.seed`: the demo sets itself up through Django and Countersign's own commands."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

from demo import seed


def run(*args: str) -> str:
    out = StringIO()
    assert seed.main(list(args), stdout=out) == 0
    return out.getvalue()


def test_seed_demo_gives_the_demo_staff_their_groups_and_a_policy_only_once(db, settings, tmp_path):
    from django.contrib.auth import get_user_model

    from approvals import policy, services
    from approvals.models import PolicyVersion

    settings.DEMO_MODE = True
    settings.VAR_DIR = tmp_path
    output = run()
    assert "Demo policy installed (version 1)" in output
    users = {u.username: set(u.groups.values_list("name", flat=True)) for u in get_user_model().objects.all()}
    assert users == {"frontdesk": {"front-desk"}, "manager": {"managers"}, "admin": set()}
    doc = policy.current_document()
    assert [r["label"] for r in doc["rules"]][-1] == "doors"
    # An admin's change survives the next `make run`.
    services.import_policies("rules:\n  - {label: only, tool: '*', outcome: ask}\n", by=None, source="admin")
    assert "Demo policy installed" not in run()
    assert PolicyVersion.objects.count() == 2 and policy.current_document()["rules"][0]["label"] == "only"


def test_it_keeps_the_guests_tokens_and_passwords_that_are_still_good(db, settings, tmp_path):
    from approvals.models import ClientToken, McpServer

    settings.DEMO_MODE = True
    settings.VAR_DIR = tmp_path
    first = run()
    tokens = json.loads((tmp_path / "demo-guests.json").read_text())
    assert sorted(tokens) == ["Room 0812", "Room 1102", "Room 1204", "Room 1205", "Room 1410", "Room 1501"]
    assert {ClientToken.objects.for_plaintext(t).label for t in tokens.values()} == set(tokens)
    assert ClientToken.objects.get(label="Room 1205").metadata == {"room": "1205"}
    hotel = McpServer.objects.get(label="hotel")
    assert (hotel.url, hotel.headers, hotel.require_approval) == (
        f"http://127.0.0.1:{settings.HOTEL_MCP_PORT}/mcp",
        {"X-API-Key": settings.HOTEL_MCP_API_KEY},
        "always",
    )

    assert run().splitlines()[:4] == first.splitlines()[:4]  # the same passwords
    assert json.loads((tmp_path / "demo-guests.json").read_text()) == tokens
    assert ClientToken.objects.count() == 6 and McpServer.objects.count() == 1

    ClientToken.objects.filter(label="Room 1410").delete()
    run()
    renewed = json.loads((tmp_path / "demo-guests.json").read_text())
    assert renewed["Room 1204"] == tokens["Room 1204"] and renewed["Room 1410"] != tokens["Room 1410"]
    assert ClientToken.objects.for_plaintext(renewed["Room 1410"]) is not None


def test_it_refuses_to_run_outside_demo_mode_unless_forced(db, settings, tmp_path, capsys):
    from django.contrib.auth import get_user_model

    settings.DEMO_MODE = False
    settings.VAR_DIR = tmp_path
    assert seed.main([]) == 1
    assert "only runs in demo mode" in capsys.readouterr().err
    assert not get_user_model().objects.exists()
    assert "Demo staff accounts" in run("--force")


def test_it_runs_as_a_module_of_its_own(settings):
    done = subprocess.run(
        [sys.executable, "-m", "demo.seed", "--help"], cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert done.returncode == 0 and "--force" in done.stdout
