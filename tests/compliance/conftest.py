"""Fixtures of the compliance review: Rita the reviewer, fixed audit keys (A, the one in use, and
B, the one a rotation switches to), exports in tmp_path. The approvals fixtures (session,
make_request, effects, …) are shared from there."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.approvals.conftest import (  # noqa: F401  (fixtures)
    _fast_password_hashing,
    effects,
    make_request,
    scheduled,
    session,
)

TEST_KEY = base64.b64encode(bytes(range(32))).decode()
KEY_A = TEST_KEY
KEY_B = base64.b64encode(b"\x07" * 32).decode()


def public_raw(private_key: str) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key)).public_key().public_bytes_raw()


def public_base64(private_key: str) -> str:
    return base64.b64encode(public_raw(private_key)).decode()


@pytest.fixture(autouse=True)
def _audit_settings(settings, tmp_path) -> None:
    settings.AUDIT_SIGNING_KEY = TEST_KEY
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = ""
    settings.AUDIT_EXPORT_DIR = tmp_path / "exports"


@pytest.fixture
def rotate(settings):
    """Switch the audit key from A to B, as an operator would: with A's public key kept trusted
    (the documented procedure), or not (the mistake verify_audit must name)."""

    def rotate(*, trust_a: bool = True) -> None:
        settings.AUDIT_TRUSTED_PUBLIC_KEYS = public_base64(KEY_A) if trust_a else ""
        settings.AUDIT_SIGNING_KEY = KEY_B

    return rotate


@pytest.fixture
def compliance_group(db):
    # The data migration made it; a transactional test's flush removes it, so make sure.
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name="compliance")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="compliance", codename__in=["view_review", "manage_legal_hold"]
        )
    )
    return group


@pytest.fixture
def rita(django_user_model, password, compliance_group):
    """Rita: compliance reviewer. Not staff: she reads the record, she never decides."""
    user = django_user_model.objects.create_user("rita", "rita@example.org", password, first_name="Rita")
    user.groups.add(compliance_group)
    return user
