"""JSON log lines carry the ids bound for what they are about (observability/logs.py)."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from django.test import Client

from observability.logs import json_formatter


@pytest.fixture
def json_log():
    """The root logger's lines as settings.LOGGING writes them with LOG_FORMAT=json."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    structlog.contextvars.clear_contextvars()


def test_a_line_carries_the_bound_ids_and_its_extras(json_log):
    structlog.contextvars.bind_contextvars(request_id="r-1", session_id=7, user="alice")
    logging.getLogger("approvals.test").warning("decided %s", 42, extra={"outcome": "approved"})
    (line,) = json_log()
    assert line["event"] == "decided 42" and line["level"] == "warning" and line["logger"] == "approvals.test"
    assert (line["request_id"], line["session_id"], line["user"], line["outcome"]) == ("r-1", 7, "alice", "approved")
    assert line["timestamp"].endswith("Z")


@pytest.mark.django_db
def test_every_response_names_its_request_id_and_a_bad_one_is_replaced():
    client = Client()
    assert client.get("/accounts/login/", HTTP_X_REQUEST_ID="proxy-id-1")["X-Request-ID"] == "proxy-id-1"
    replaced = client.get("/accounts/login/", HTTP_X_REQUEST_ID="bad id\n{json}")["X-Request-ID"]
    assert replaced != "bad id\n{json}" and len(replaced) == 32
