"""The authentication backend of single sign-on: mozilla-django-oidc's code flow, with the
provider's endpoints from discovery (sso/discovery.py) and the account's groups from its claim
(sso/roles.py).

Django builds a backend object for every login attempt and every request of a signed-in user,
so nothing here reaches the provider until a sign-in actually comes back from it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from sso import discovery, roles

log = logging.getLogger(__name__)


class OIDCBackend(OIDCAuthenticationBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Not the parent's: it would demand every endpoint as a setting. They are resolved
        # from discovery when a sign-in comes back (authenticate).
        self.UserModel = get_user_model()
        self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")
        self.OIDC_RP_CLIENT_SECRET = self.get_settings("OIDC_RP_CLIENT_SECRET")
        self.OIDC_RP_SIGN_ALGO = self.get_settings("OIDC_RP_SIGN_ALGO", "RS256")
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.OIDC_OP_TOKEN_ENDPOINT = ""
        self.OIDC_OP_USER_ENDPOINT = ""
        self.OIDC_OP_JWKS_ENDPOINT = ""

    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        if request is None or not request.GET.get("code") or not request.GET.get("state"):
            return None  # a password login: not ours
        try:
            meta = discovery.metadata()
        except discovery.DiscoveryError as exc:
            log.warning("single sign-on: %s", exc)
            return None
        self.OIDC_OP_TOKEN_ENDPOINT = meta.token_endpoint
        self.OIDC_OP_USER_ENDPOINT = meta.userinfo_endpoint
        self.OIDC_OP_JWKS_ENDPOINT = meta.jwks_uri
        return super().authenticate(request, **kwargs)

    # Accounts are found by the provider's subject, kept as the username `<prefix><sub>` is not
    # what staff see: they see their name. The e-mail address is only copied, never trusted to
    # find an account (a directory may reuse it; a local account may have the same one).
    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        sub = claims.get("sub")
        if not sub:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(username=self.get_username(claims))

    def get_username(self, claims: dict[str, Any]) -> str:
        return f"oidc:{claims['sub']}"[:150]

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        if not claims.get("sub"):
            return False
        found = roles.roles_for(claims)
        if not found.any:
            log.warning(
                "single sign-on refused %s: no Countersign role in claim %r (%s)",
                claims.get("sub"),
                self.get_settings("OIDC_GROUPS_CLAIM", "groups"),
                ", ".join(roles.claimed_groups(claims)) or "empty",
            )
            return False
        return True

    def create_user(self, claims: dict[str, Any]) -> Any:
        user = self.UserModel.objects.create_user(self.get_username(claims), email=claims.get("email") or "")
        return self.update_user(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        found = roles.roles_for(claims)
        if not found.any:  # verify_claims refuses this first; kept as a guard
            raise SuspiciousOperation("no Countersign role")
        name = str(claims.get("name") or claims.get("preferred_username") or "")
        first, _, last = name.partition(" ")
        user.first_name, user.last_name = first[:150], last[:150]
        user.email = str(claims.get("email") or "")[:254]
        user.set_unusable_password()
        user.save()
        roles.apply(user, found)
        log.info("single sign-on: %s signed in as %s (%s)", claims.get("sub"), user.username, sorted(found.groups))
        return user
