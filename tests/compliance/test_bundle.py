from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from approvals import services
from compliance import bundle, chain
from compliance import services as compliance_services
from compliance.models import Export
from compliance.verify_bundle import BundleError, verify
from tests.plugins.processes import PYTHON

pytestmark = pytest.mark.django_db
BASE = Path(__file__).resolve().parents[2]


@pytest.fixture
def exported(make_request, alice, rita, effects, django_capture_on_commit_callbacks, monkeypatch) -> Path:
    queued: list[int] = []
    monkeypatch.setattr("compliance.tasks.build_export.delay", queued.append)
    refund = make_request()
    services.decide(refund, approve=True, by=alice)
    services.record_mcp_call(
        session=refund.session,
        item={
            "id": "c1",
            "approval_request_id": refund.upstream_id,
            "arguments": refund.arguments,
            "output": "Refunded",
        },
    )
    services.decide(make_request(name="unlock_door"), approve=False, by=alice)
    with django_capture_on_commit_callbacks(execute=True):
        export = compliance_services.request_export(by=rita, query={"tool": "refund_minibar_charge"})
    assert queued == [export.pk]
    export = compliance_services.build_export(export.pk)
    assert export.status == Export.Status.DONE and export.done == export.total > 0
    return bundle.export_path(export.file_name)


def test_an_exported_bundle_verifies_offline_without_django(exported):
    # A fresh interpreter with no Django settings at all: only the standalone verifier runs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    code = (
        "import sys, runpy; sys.argv = ['verify_bundle', sys.argv[1]];"
        "from compliance import verify_bundle; rc = verify_bundle.main([sys.argv[1]]);"
        "assert 'django' not in sys.modules, 'the verifier imported Django'; sys.exit(rc)"
    )
    result = subprocess.run([PYTHON, "-c", code, str(exported)], cwd=BASE, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 3 audit rows of 1 requests")


def test_the_bundle_holds_only_the_searched_case_with_its_whole_life(exported):
    with zipfile.ZipFile(exported) as z:
        rows = [json.loads(line) for line in z.read("rows.jsonl").splitlines()]
        manifest = json.loads(z.read("manifest.json"))
    assert [r["kind"] for r in rows] == ["requested", "decided", "mcp_call"]
    assert rows[0]["payload"]["item"]["name"] == "refund_minibar_charge"
    assert manifest["search"] == {"tool": "refund_minibar_charge"} and manifest["requested_by"] == "rita"


def _rewrite(path: Path, member: str, change) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    files[member] = change(files[member])
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def _flip(data: bytes, at: int) -> bytes:
    # Another printable character in the same place: one changed byte.
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("member", ["rows.jsonl", "chain.jsonl", "checkpoints.jsonl", "manifest.json", "manifest.sig"])
def test_a_single_changed_byte_in_any_file_of_the_bundle_fails_it(exported, tmp_path, member):
    with zipfile.ZipFile(exported) as z:
        size = len(z.read(member))
    for at in sorted({0, size // 3, size // 2, size - 2}):
        copy = tmp_path / f"{member}-{at}.zip"
        copy.write_bytes(exported.read_bytes())
        _rewrite(copy, member, lambda data, at=at: _flip(data, at))
        with pytest.raises(BundleError):
            verify(str(copy))


def test_a_changed_byte_anywhere_in_the_zip_fails_it_given_the_digest_of_the_export(exported, tmp_path):
    digest = Export.objects.get().sha256
    assert verify(str(exported), sha256=digest).startswith("OK")
    data = exported.read_bytes()
    for at in range(0, len(data), max(1, len(data) // 60)):
        copy = tmp_path / f"raw-{at}.zip"
        copy.write_bytes(_flip(data, at))
        with pytest.raises(BundleError):
            verify(str(copy), sha256=digest)


def test_a_payload_changed_with_its_hashes_recomputed_still_fails_at_the_checkpoint(exported, tmp_path):
    def forge(data: bytes) -> bytes:
        rows = [json.loads(line) for line in data.splitlines()]
        rows[1]["payload"]["approve"] = False
        rows[1]["payload_sha256"] = chain.payload_hash(rows[1]["payload"])
        fields = {k: rows[1][k] for k in ("seq", "kind", "at", "request", "session", "actor", "actor_label")}
        rows[1]["content_sha256"] = chain.content_hash(payload_sha256=rows[1]["payload_sha256"], **fields)
        rows[1]["row_sha256"] = chain.row_hash(rows[1]["prev_sha256"], rows[1]["content_sha256"])
        return b"".join(chain.canonical(r) + b"\n" for r in rows)

    _rewrite(exported, "rows.jsonl", forge)
    with pytest.raises(BundleError):
        verify(str(exported))


def test_a_bundle_checked_against_another_trusted_key_fails(exported):
    assert verify(str(exported)).startswith("OK")
    with pytest.raises(BundleError, match="not by the key you trust"):
        verify(str(exported), public_key="SHA256:somebody-else")
