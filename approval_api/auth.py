"""Who calls the approval API: a client token (`Authorization: Bearer cst_...`) and its scopes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from approvals.models import ClientToken


def token_from_header(header: str) -> ClientToken | None:
    """The active token named by an Authorization header, whatever its scopes; None when there
    is no such token. Raises AuthenticationFailed when the header is not a bearer token."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise exceptions.AuthenticationFailed("Send the client token as `Authorization: Bearer cst_...`.")
    return ClientToken.objects.for_plaintext(value.strip(), scope=None)


class ClientTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[AnonymousUser, ClientToken] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        token = token_from_header(header)
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked client token.")
        return AnonymousUser(), token

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="countersign"'


class HasScope(BasePermission):
    """A token with this scope; see approvals.models.Scope."""

    scope = ""
    message = "This client token may not do that."

    def has_permission(self, request: Any, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, ClientToken):
            raise exceptions.NotAuthenticated("Send the client token as `Authorization: Bearer cst_...`.")
        if not token.has_scope(self.scope):
            raise exceptions.PermissionDenied(f"This client token lacks the scope `{self.scope}`.")
        return True


def scoped(scope: str) -> type[HasScope]:
    return type(f"HasScope_{scope.replace(':', '_')}", (HasScope,), {"scope": scope})


def plain_request_token(request: HttpRequest, scope: str) -> tuple[ClientToken | None, int, str]:
    """For the (async, non-DRF) long poll: the token and scope check as DRF would answer them:
    (token, 0, "") or (None, HTTP status, message)."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None, 401, "Send the client token as `Authorization: Bearer cst_...`."
    try:
        token = token_from_header(header)
    except exceptions.AuthenticationFailed as exc:
        return None, 401, str(exc.detail)
    if token is None:
        return None, 401, "Unknown or revoked client token."
    if not token.has_scope(scope):
        return None, 403, f"This client token lacks the scope `{scope}`."
    return token, 0, ""
