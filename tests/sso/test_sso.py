"""Single sign-on's parts without a browser: the group map, discovery against a real provider
(and one that is down or lies about its issuer), and the login page's button."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from sso import discovery, roles
from tests.plugins.oidc import Provider, start_provider
from tests.plugins.processes import free_port


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    discovery.forget()
    yield
    discovery.forget()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    yield from start_provider("http://testserver/oidc/callback/", {}, tmp_path)


def test_the_map_gives_exactly_the_mapped_groups(settings, db):
    settings.OIDC_GROUP_MAP = ["hotel-frontdesk=front-desk", "hotel-managers=managers"]
    settings.OIDC_SUPERUSER_GROUPS = []
    found = roles.roles_for({"groups": ["hotel-managers", "everyone", 7]})
    assert found == roles.Roles(groups=frozenset({"managers"}), superuser=False)
    assert roles.roles_for({"groups": "hotel-frontdesk"}).groups == {"front-desk"}
    assert not roles.roles_for({"groups": ["everyone"]}).any
    assert not roles.roles_for({}).any

    user = User.objects.create_user("oidc:x", is_superuser=True)
    user.groups.add(Group.objects.create(name="front-desk"), Group.objects.create(name="by-hand"))
    roles.apply(user, found)
    user.refresh_from_db()
    assert set(user.groups.values_list("name", flat=True)) == {"managers", "by-hand"}
    # No superuser groups configured: superuser status stays what the admin set.
    assert user.is_superuser and user.is_staff


def test_a_malformed_map_is_a_configuration_error(settings):
    settings.OIDC_GROUP_MAP = ["hotel-frontdesk"]
    with pytest.raises(ImproperlyConfigured, match="provider-group=countersign-group"):
        roles.group_map()


def test_discovery_reads_the_providers_endpoints(settings, provider):
    settings.OIDC_ISSUER = provider.issuer
    meta = discovery.metadata()
    assert meta.authorization_endpoint == f"{provider.issuer}/auth"
    assert meta.token_endpoint.startswith(provider.issuer) and meta.jwks_uri.startswith(provider.issuer)


def test_an_issuer_that_differs_from_the_documents_is_refused(settings, provider):
    settings.OIDC_ISSUER = provider.issuer.replace("localhost", "127.0.0.1")
    with pytest.raises(discovery.DiscoveryError, match="names issuer"):
        discovery.metadata()


def test_login_page_offers_the_button_only_when_configured(settings, db):
    settings.OIDC_ISSUER = ""
    page = Client().get("/accounts/login/").content.decode()
    assert "oidc/authenticate" not in page
    assert Client().get("/oidc/authenticate/").status_code == 404

    settings.OIDC_ISSUER = "http://localhost:1"
    settings.OIDC_LOGIN_LABEL = "Hotel Group ID"
    page = Client().get("/accounts/login/?next=/review/").content.decode()
    assert "Sign in with Hotel Group ID" in page and "/oidc/authenticate/?next=/review/" in page


def test_a_provider_that_is_down_sends_back_to_the_login_page_with_a_message(settings, db):
    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"
    response = Client().get("/oidc/authenticate/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert "cannot be reached" in response.content.decode()


def test_the_sign_in_redirects_to_the_providers_authorization_endpoint(settings, db, provider):
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_RP_CLIENT_ID = "countersign"
    response = Client().get("/oidc/authenticate/")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(f"{provider.issuer}/auth?")
    assert "client_id=countersign" in location and "code_challenge=" in location and "nonce=" in location
