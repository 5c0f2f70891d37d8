"""Fixtures of the staff-screen tests: the approvals fixtures (a session, requests made through
the real service) and fast password hashing."""

from tests.approvals.conftest import (  # noqa: F401  (fixtures)
    _fast_password_hashing,
    effects,
    make_request,
    scheduled,
    session,
)
