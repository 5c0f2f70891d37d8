"""The approval API, hostile: Schemathesis generates requests from the API's own OpenAPI schema
(valid ones and, in negative mode, ones that break it: wrong types, missing fields, unknown
ids, huge strings), and sends each through the real WSGI application with a real token.

Invariant: never a server error; every answer matches what the schema promises (status code,
content type, body); a refused request (4xx) changes nothing (approval requests, sessions,
webhooks, the audit trail)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth

from approval_api.models import WebhookEndpoint
from approvals import services
from approvals.models import ApprovalRequest, RealtimeSession
from audit.models import AuditEvent
from tests.hostile import surfaces

pytestmark = pytest.mark.django_db


def operations(mode: GenerationMode) -> list[Any]:
    loaded = schemathesis.openapi.from_wsgi("/api/v1/schema", get_wsgi_application())
    if mode is GenerationMode.POSITIVE:
        # What an OpenAPI schema cannot say: text holds no NUL and no lone surrogate (PostgreSQL's
        # jsonb refuses both, so the API does too). Valid data is then data the API must accept;
        # the negative mode still sends both.
        loaded.config.generation.update(allow_x00=False, codec="utf-8")
    return [result.ok() for result in loaded.get_all_operations()]


@pytest.fixture(autouse=True)
def _keep_the_test_database_open() -> Any:
    """The WSGI handler closes the database connection around each request; the test's database
    lives in its transaction, so, as Django's own test client does, keep it open."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def snapshot() -> tuple[list[Any], int, int, int]:
    return (
        list(ApprovalRequest.objects.order_by("pk").values("pk", "status", "decided_at", "decided_by_label")),
        RealtimeSession.objects.count(),
        WebhookEndpoint.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_approval_api_refuses_what_breaks_its_schema_and_never_fails(settings: Any, mode: GenerationMode) -> None:
    settings.APPROVAL_API_MAX_WAIT_SECONDS = 0.2  # the long poll answers at once in a fuzz run
    _, writer = services.issue_token(
        label="Fuzzing gateway", metadata={}, scopes=["requests:write", "requests:read", "webhooks"]
    )
    _, tablet = services.issue_token(label="Room tablet", metadata={}, scopes=["realtime"])
    callers = {
        "token": {"Authorization": f"Bearer {writer}"},
        "wrong scope": {"Authorization": f"Bearer {tablet}"},
        "no token": {},
        "forged": {"Authorization": f"Bearer {writer[:-4]}AAAA"},
    }
    ops = operations(mode)
    assert len(ops) >= 5, [f"{op.method} {op.path}" for op in ops]
    # The surface is the API as a whole: `make fuzz`'s 10,000 examples spread over its operations
    # (a bounded run keeps its examples per operation).
    per_operation = max(
        -(-hypothesis_settings.default.max_examples // len(ops)), min(hypothesis_settings.default.max_examples, 40)
    )
    for operation in ops:

        @hypothesis_settings(max_examples=per_operation)
        @given(case=operation.as_strategy(generation_mode=mode), caller=st.sampled_from(sorted(callers)))
        def one(case: Any, caller: str) -> None:
            surfaces.ran(f"approval API ({mode.value})")
            before = snapshot()
            response = case.call(headers=callers[caller])
            # Schemathesis' own checks (no server error, status codes, content types and bodies as
            # the schema says), but its "ignored auth" check: the callers here are chosen, not generated.
            case.validate_response(response, excluded_checks=[ignored_auth])
            routed = re.fullmatch(r"[0-9]+", str((case.path_parameters or {}).get("id", "0"))) is not None
            if caller in ("no token", "forged"):
                # 401 on every route; a path the URLs do not match (a negative or non-numeric id) is 404.
                expected = 401 if routed else 404
                assert response.status_code == expected, (caller, case.formatted_path, response.status_code)
            elif caller == "wrong scope":
                assert response.status_code in (401, 403, 404, 405), (caller, case.path, response.status_code)
            if response.status_code >= 400:
                assert snapshot() == before, f"{case.method} {case.path} answered {response.status_code}, changed state"

        one()
