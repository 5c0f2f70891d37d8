"""Fixtures of the compliance review: Rita the reviewer, a fixed audit key, exports in tmp_path.
The approvals fixtures (session, make_request, effects, …) are shared from there."""

from __future__ import annotations

import base64

import pytest

from tests.approvals.conftest import (  # noqa: F401  (fixtures)
    _fast_password_hashing,
    effects,
    make_request,
    scheduled,
    session,
)

TEST_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(autouse=True)
def _audit_settings(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.AUDIT_SIGNING_KEY = TEST_KEY
    settings.AUDIT_EXPORT_DIR = tmp_path / "exports"


@pytest.fixture
def compliance_group(db):  # type: ignore[no-untyped-def]
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
def rita(django_user_model, password, compliance_group):  # type: ignore[no-untyped-def]
    """Rita: compliance reviewer. Not staff: she reads the record, she never decides."""
    user = django_user_model.objects.create_user("rita", "rita@example.org", password, first_name="Rita")
    user.groups.add(compliance_group)
    return user
