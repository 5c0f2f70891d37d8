"""The sign-in redirect of single sign-on: mozilla-django-oidc's, with the provider's
authorization endpoint from discovery instead of a setting."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from sso import discovery


class SignIn(OIDCAuthenticationRequestView):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Not the parent's: it would read the endpoint from settings when the view is built.
        self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")
        self.OIDC_OP_AUTH_ENDPOINT = ""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = discovery.metadata().authorization_endpoint
        except discovery.DiscoveryError:
            messages.error(request, _("The sign-in service cannot be reached. Try again, or log in with a password."))
            return redirect("login")
        response: HttpResponse = super().get(request)
        return response


class Callback(OIDCAuthenticationCallbackView):
    @property
    def failure_url(self) -> str:
        return "/accounts/login/?sso=failed"
