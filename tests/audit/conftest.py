"""Fixtures of the audit trail: the approvals fixtures make the activity (session, make_request,
effects, …); the compliance ones hold the fixed audit keys (A in use, B after a rotation)."""

from __future__ import annotations

from tests.approvals.conftest import (  # noqa: F401  (fixtures)
    _fast_password_hashing,
    effects,
    make_request,
    scheduled,
    session,
)
from tests.compliance.conftest import _audit_settings, compliance_group, rita, rotate  # noqa: F401  (fixtures)
