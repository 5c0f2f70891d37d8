"""One shape for every error the approval API answers: `{"detail": "..."}`, and for invalid input
also `errors`, what is wrong with each field (DRF's field errors), so a client reads one key
whatever went wrong (documented as the `Error` schema)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

INVALID = "Invalid input: nothing was created or changed."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        response.data = {"detail": INVALID, "errors": response.data}
    return response
