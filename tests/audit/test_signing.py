from __future__ import annotations

import base64
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from audit import chain, checks, sealing, signing
from tests.compliance.conftest import KEY_A, KEY_B, public_base64, public_raw


def _pem(private_key: str) -> str:
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key)).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_trusted_keys_are_read_as_base64_hex_or_pem_separated_by_commas_or_spaces(settings):
    key_c = base64.b64encode(b"\x09" * 32).decode()
    one_line_pem = " ".join(_pem(KEY_B).split())
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = (
        f"{public_base64(KEY_A).rstrip('=')},\n{_pem(key_c)} {one_line_pem} , {public_raw(KEY_A).hex()}"
    )
    assert signing.earlier_public_keys() == (public_raw(KEY_A), public_raw(key_c), public_raw(KEY_B))


def test_the_current_key_is_always_trusted_and_comes_first(settings):
    settings.AUDIT_SIGNING_KEY = KEY_B
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = f"{public_base64(KEY_A)} {public_base64(KEY_B)}"
    assert signing.trusted_public_keys() == (public_raw(KEY_B), public_raw(KEY_A))
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = ""
    assert signing.trusted_public_keys() == (public_raw(KEY_B),)


def _private_pem(private_key: str) -> str:
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key))
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("entry", "hint"),
    [
        (_private_pem(KEY_A), "that is a private key"),
        ("SHA256:abcdef", "that is a fingerprint"),
        (base64.b64encode(b"\x01" * 31).decode(), "base64 or hex of the 32 raw bytes, or PEM"),
    ],
)
def test_a_malformed_trusted_key_is_refused_without_repeating_it(settings, entry, hint):
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = f"{public_base64(KEY_A)}, {entry}"
    with pytest.raises(ImproperlyConfigured, match="entry 2 is not an Ed25519 public key") as failure:
        signing.earlier_public_keys()
    assert hint in str(failure.value)
    # The message ends up in logs: never the entry itself (it may be a private key).
    assert entry.replace("-----BEGIN PRIVATE KEY-----", "").split()[0] not in str(failure.value)


def test_the_system_check_reports_a_malformed_trusted_key_list(settings):
    assert checks.check_trusted_public_keys(None) == []
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = "nonsense"
    [error] = checks.check_trusted_public_keys(None)
    assert error.id == "compliance.E001" and "AUDIT_TRUSTED_PUBLIC_KEYS: entry 1" in error.msg


def audit_key_info() -> str:
    out = StringIO()
    call_command("audit_key_info", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_audit_key_info_prints_the_public_key_to_trust_before_a_rotation(make_request, effects, rotate):
    out = audit_key_info()
    assert f"Current key: {chain.key_fingerprint(public_raw(KEY_A))}" in out
    assert f"(base64, for AUDIT_TRUSTED_PUBLIC_KEYS): {public_base64(KEY_A)}" in out
    assert "Keys that signed stored checkpoints: none yet" in out

    make_request()
    seq = sealing.ensure_sealed().seq
    rotate(trust_a=False)
    out = audit_key_info()
    assert f"Current key: {chain.key_fingerprint(public_raw(KEY_B))}" in out
    assert f"{chain.key_fingerprint(public_raw(KEY_A))} (NOT TRUSTED): 1 checkpoints, #{seq}..#{seq}" in out
    rotate(trust_a=True)
    out = audit_key_info()
    assert f"  {chain.key_fingerprint(public_raw(KEY_A))}  {public_base64(KEY_A)}" in out
    assert f"{chain.key_fingerprint(public_raw(KEY_A))} (trusted): 1 checkpoints" in out
