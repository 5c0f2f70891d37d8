"""What drf-spectacular cannot see by itself: the client-token authentication and the long poll
(an async view outside DRF). Loaded by the app (urls.py imports it)."""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ClientTokenScheme(OpenApiAuthenticationExtension):
    target_class = "approval_api.auth.ClientTokenAuthentication"
    name = "clientToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A Countersign client token (`cst_...`, `manage.py create_client_token --scope ...`).",
        }


WAIT_PATH: dict[str, Any] = {
    "/api/v1/requests/{id}/wait": {
        "get": {
            "operationId": "wait_request",
            "summary": "Wait for a request's answer (long poll)",
            "description": (
                "Answers as soon as the request is final, or after `timeout` seconds with it still pending "
                "(`final: false`): call again. Holds no server thread while it waits."
            ),
            "tags": ["requests"],
            "security": [{"clientToken": []}],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                {
                    "name": "timeout",
                    "in": "query",
                    "required": False,
                    "description": "Seconds to wait (default 30, at most APPROVAL_API_MAX_WAIT_SECONDS).",
                    "schema": {"type": "number", "minimum": 0},
                },
            ],
            "responses": {
                "200": {
                    "description": "The request, final or still pending at the timeout.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RequestOut"}}},
                },
                "400": {"description": "A timeout out of range."},
                "401": {"description": "No token, or an unknown or revoked one."},
                "403": {"description": "The token lacks the scope requests:read."},
                "404": {"description": "No such request of this token."},
            },
        }
    }
}


def add_wait_path(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the long poll's operation, beside the others."""
    paths = copy.deepcopy(WAIT_PATH)
    timeout = paths["/api/v1/requests/{id}/wait"]["get"]["parameters"][1]
    timeout["schema"]["maximum"] = float(settings.APPROVAL_API_MAX_WAIT_SECONDS)  # as configured here
    result.setdefault("paths", {}).update(paths)
    return result
