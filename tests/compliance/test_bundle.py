from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from approvals import services
from audit import chain, sealing
from audit.models import AuditEvent
from compliance import bundle, exports
from compliance import services as compliance_services
from compliance.models import Export
from compliance.verify_bundle import BundleError, verify
from tests.compliance.conftest import KEY_A, KEY_B, public_raw
from tests.plugins.processes import PYTHON

pytestmark = pytest.mark.django_db
BASE = Path(__file__).resolve().parents[2]


def _export(rita, capture, monkeypatch) -> Path:
    queued: list[int] = []
    monkeypatch.setattr("compliance.tasks.build_export.delay", queued.append)
    with capture(execute=True):
        export: Export | None = exports.request_export(by=rita, query={"tool": "refund_minibar_charge"})
    assert queued == [export.pk]
    export = exports.build_export(export.pk)
    assert export.status == Export.Status.DONE and export.done == export.total > 0
    return bundle.export_path(export.file_name)


def _refund_called(refund) -> None:
    services.record_mcp_call(
        session=refund.session,
        item={
            "id": "c1",
            "approval_request_id": refund.upstream_id,
            "arguments": refund.arguments,
            "output": "Refunded",
        },
    )


@pytest.fixture
def exported(make_request, alice, rita, effects, django_capture_on_commit_callbacks, monkeypatch) -> Path:
    refund = make_request()
    services.decide(refund, approve=True, by=alice)
    _refund_called(refund)
    services.decide(make_request(name="unlock_door"), approve=False, by=alice)
    return _export(rita, django_capture_on_commit_callbacks, monkeypatch)


@pytest.fixture
def rotated(make_request, alice, rita, effects, django_capture_on_commit_callbacks, monkeypatch, rotate) -> Path:
    """A case whose life spans a key rotation: decided and sealed under key A, its call result
    recorded and sealed (by the export) under key B, with A kept trusted."""
    refund = make_request()
    services.decide(refund, approve=True, by=alice)
    sealing.ensure_sealed()
    rotate(trust_a=True)
    _refund_called(refund)
    return _export(rita, django_capture_on_commit_callbacks, monkeypatch)


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
    assert result.stdout.startswith("OK: 4 audit rows of 1 requests")


def test_the_bundle_holds_only_the_searched_case_with_its_whole_life(exported):
    with zipfile.ZipFile(exported) as z:
        rows = [json.loads(line) for line in z.read("rows.jsonl").splitlines()]
        manifest = json.loads(z.read("manifest.json"))
    assert [r["kind"] for r in rows] == ["requested", "policy_routed", "decided", "mcp_call"]
    assert rows[0]["payload"]["item"]["name"] == "refund_minibar_charge"
    assert manifest["search"] == {"tool": "refund_minibar_charge"} and manifest["requested_by"] == "rita"


def _rewrite(path: Path, member: str, change) -> None:
    with zipfile.ZipFile(path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    files[member] = change(files[member])
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def _flip(data: bytes, at: int) -> bytes:
    # Another printable character in the same place: one changed byte.
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("which", ["exported", "rotated"])
@pytest.mark.parametrize("member", ["rows.jsonl", "chain.jsonl", "checkpoints.jsonl", "manifest.json", "manifest.sig"])
def test_a_single_changed_byte_in_any_file_of_the_bundle_fails_it(request, tmp_path, member, which):
    exported = request.getfixturevalue(which)
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
    with pytest.raises(BundleError, match=r"the bundle is signed by SHA256:.*, not by a key you trust"):
        verify(str(exported), public_keys=["SHA256:somebody-else"])


FINGERPRINT_A = chain.key_fingerprint(public_raw(KEY_A))
FINGERPRINT_B = chain.key_fingerprint(public_raw(KEY_B))


def _checkpoints(path: Path) -> list[dict]:
    with zipfile.ZipFile(path) as z:
        return [json.loads(line) for line in z.read("checkpoints.jsonl").splitlines()]


def test_a_bundle_spanning_a_key_rotation_verifies_offline_and_names_both_keys(rotated):
    by_a, by_b = _checkpoints(rotated)
    assert (by_a["public_key"], by_b["public_key"]) == (public_raw(KEY_A).hex(), public_raw(KEY_B).hex())
    with zipfile.ZipFile(rotated) as z:
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["checkpoint_keys"] == [
        {"public_key": public_raw(KEY_A).hex(), "fingerprint": FINGERPRINT_A},
        {"public_key": public_raw(KEY_B).hex(), "fingerprint": FINGERPRINT_B},
    ]
    result = subprocess.run(
        [PYTHON, "-m", "compliance.verify_bundle", str(rotated)], cwd=BASE, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"OK: {manifest['rows']} audit rows of 1 requests; "
        f"chain #{manifest['first_seq']}..#{by_b['seq']} matches checkpoint #{by_b['seq']}.",
        "Keys relied on; compare each fingerprint with the ones published for this installation:",
        f"  {FINGERPRINT_A}  signed 1 checkpoint (#{by_a['seq']})",
        f"  {FINGERPRINT_B}  signed the manifest and 1 checkpoint (#{by_b['seq']})",
    ]


def test_a_rotated_bundle_checked_against_the_trusted_keys_needs_both(rotated):
    assert verify(str(rotated), public_keys=[FINGERPRINT_A, public_raw(KEY_B).hex()]).startswith("OK")
    by_a, _ = _checkpoints(rotated)
    with pytest.raises(
        BundleError, match=rf"checkpoint #{by_a['seq']} is signed by {re.escape(FINGERPRINT_A)}, not by a key"
    ):
        verify(str(rotated), public_keys=[FINGERPRINT_B])


def _forge(path: Path, change_checkpoints, *, list_keys=None) -> None:
    """A forger holding the current key: changes checkpoints.jsonl, fixes its digest in the
    manifest and signs the manifest again."""
    with zipfile.ZipFile(path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    checkpoints = [json.loads(line) for line in files["checkpoints.jsonl"].splitlines()]
    change_checkpoints(checkpoints)
    files["checkpoints.jsonl"] = b"".join(chain.canonical(c) + b"\n" for c in checkpoints)
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["checkpoints.jsonl"] = hashlib.sha256(files["checkpoints.jsonl"]).hexdigest()
    if list_keys is not None:
        manifest["checkpoint_keys"] = [
            {"public_key": k.hex(), "fingerprint": chain.key_fingerprint(k)} for k in list_keys
        ]
    files["manifest.json"] = chain.canonical(manifest)
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(KEY_B))
    files["manifest.sig"] = private.sign(files["manifest.json"]).hex().encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def test_a_tampered_checkpoint_signature_fails_even_in_a_manifest_signed_again(rotated):
    by_a, _ = _checkpoints(rotated)

    def tamper(checkpoints: list[dict]) -> None:
        # One bit of the signature itself (a hex string: flipping a bit of a hex *character*
        # could make it not hex at all, a different failure).
        raw = bytearray(bytes.fromhex(checkpoints[0]["signature"]))
        raw[5] ^= 0x01
        checkpoints[0]["signature"] = raw.hex()

    _forge(rotated, tamper)
    with pytest.raises(
        BundleError, match=rf"checkpoint #{by_a['seq']} has a bad signature \(key {re.escape(FINGERPRINT_A)}\)"
    ):
        verify(str(rotated))


def test_a_checkpoint_claiming_another_listed_key_fails(rotated):
    # Each checkpoint is checked against its own key: naming B on A's checkpoint breaks it.
    by_a, _ = _checkpoints(rotated)

    def swap(checkpoints: list[dict]) -> None:
        checkpoints[0]["public_key"] = public_raw(KEY_B).hex()

    _forge(rotated, swap)
    with pytest.raises(
        BundleError, match=rf"checkpoint #{by_a['seq']} has a bad signature \(key {re.escape(FINGERPRINT_B)}\)"
    ):
        verify(str(rotated))


def test_a_checkpoint_by_a_key_the_manifest_does_not_list_fails(rotated):
    key_c = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    by_a, _ = _checkpoints(rotated)

    def resign(checkpoints: list[dict]) -> None:
        c = checkpoints[0]
        message = chain.checkpoint_message(seq=c["seq"], row_sha256=c["row_sha256"], sealed_at=c["sealed_at"])
        c["public_key"], c["signature"] = key_c.public_key().public_bytes_raw().hex(), key_c.sign(message).hex()

    _forge(rotated, resign)
    with pytest.raises(
        BundleError, match=rf"checkpoint #{by_a['seq']} is signed by SHA256:.*, a key the manifest does"
    ):
        verify(str(rotated))
    # Listed too, it verifies: the manifest's key vouches for it, and only the fingerprints
    # printed (or --public-key) tell the reviewer that C is nobody's published key.
    fingerprint_c = chain.key_fingerprint(key_c.public_key().public_bytes_raw())
    _forge(rotated, lambda checkpoints: None, list_keys=[key_c.public_key().public_bytes_raw(), public_raw(KEY_B)])
    assert f"  {fingerprint_c}  signed 1 checkpoint (#{by_a['seq']})" in verify(str(rotated))
    with pytest.raises(
        BundleError, match=rf"checkpoint #{by_a['seq']} is signed by {re.escape(fingerprint_c)}, not by a key"
    ):
        verify(str(rotated), public_keys=[FINGERPRINT_A, FINGERPRINT_B])


def test_a_bundle_is_not_built_over_a_checkpoint_of_a_key_not_trusted(
    make_request, alice, rita, effects, django_capture_on_commit_callbacks, monkeypatch, rotate
):
    refund = make_request()
    services.decide(refund, approve=True, by=alice)
    seq = sealing.ensure_sealed().seq
    rotate(trust_a=False)
    monkeypatch.setattr("compliance.tasks.build_export.delay", lambda pk: None)
    export = exports.request_export(by=rita, query={"tool": "refund_minibar_charge"})
    with pytest.raises(bundle.UntrustedKeyError):
        exports.build_export(export.pk)
    export.refresh_from_db()
    assert export.status == Export.Status.FAILED
    assert export.error.startswith(f"checkpoint #{seq} is signed by a key that is not trusted: {FINGERPRINT_A}")


def test_a_bundle_of_format_1_still_verifies(exported):
    # Bundles exported before key rotation existed: no checkpoint_keys, the manifest's key signed all.
    with zipfile.ZipFile(exported) as z:
        files = {name: z.read(name) for name in z.namelist()}
    manifest = json.loads(files["manifest.json"])
    manifest["format"] = "countersign-audit-bundle/1"
    del manifest["checkpoint_keys"]
    files["manifest.json"] = chain.canonical(manifest)
    files["manifest.sig"] = (
        Ed25519PrivateKey.from_private_bytes(base64.b64decode(KEY_A)).sign(files["manifest.json"]).hex().encode()
    )
    with zipfile.ZipFile(exported, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    assert f"  {FINGERPRINT_A}  signed the manifest and 1 checkpoint" in verify(str(exported))


# Purged payloads ----------------------------------------------------------------------------------


def test_a_purged_case_exports_with_its_purge_record_and_verifies(
    make_request, alice, rita, effects, django_capture_on_commit_callbacks, monkeypatch, settings
):
    settings.AUDIT_RETENTION_DAYS = 30
    services.decide(make_request(), approve=True, by=alice)
    compliance_services.purge_expired(now=timezone.now() + timedelta(days=31))
    path = _export(rita, django_capture_on_commit_callbacks, monkeypatch)
    with zipfile.ZipFile(path) as z:
        rows = [json.loads(line) for line in z.read("rows.jsonl").splitlines()]
    assert [r["kind"] for r in rows] == ["requested", "policy_routed", "decided", "purged"]
    assert [r["payload"] for r in rows[:3]] == [None, None, None]
    assert verify(str(path)).startswith("OK: 4 audit rows of 1 requests")


def test_a_payload_emptied_outside_the_retention_job_fails_the_bundle(
    make_request, alice, rita, effects, django_capture_on_commit_callbacks, monkeypatch
):
    from tests.audit.tampering import forced

    req = make_request()
    services.decide(req, approve=True, by=alice)
    row = AuditEvent.objects.get(request=req, kind="decided")
    forced(
        "UPDATE approvals_auditevent SET payload = '{}', payload_purged_at = %s WHERE id = %s",
        [timezone.now(), row.pk],
    )
    path = _export(rita, django_capture_on_commit_callbacks, monkeypatch)
    with pytest.raises(BundleError, match=rf"row #{row.seq} \(decided\) has its payload purged, but no retention"):
        verify(str(path))
