"""Single sign-on through a real OpenID Connect provider (panva's oidc-provider, started by the
test), with Chromium through its login and consent screens and a real Daphne: the directory's
groups become Countersign's, a change in the directory reaches the next sign-in, and someone with
no Countersign role is refused. Local accounts stay beside it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from tests.e2e.test_browser_approval import _orm_beside_playwright, browser  # noqa: F401
from tests.plugins.oidc import Provider, start_provider
from tests.plugins.processes import ServerProcess, free_port
from tests.plugins.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DIRECTORY: dict[str, dict[str, object]] = {
    "maria": {"email": "maria@hotel.example", "name": "Maria Lopez", "groups": ["hotel-frontdesk", "all-staff"]},
    "ivan": {"email": "ivan@hotel.example", "name": "Ivan Petrov", "groups": ["all-staff"]},
    "tess": {"email": "tess@hotel.example", "name": "Tess Ng", "groups": ["hotel-it"]},
}
GROUP_MAP = "hotel-frontdesk=front-desk,hotel-managers=managers,hotel-audit=compliance"


@pytest.fixture
def web_port() -> int:
    return free_port()


@pytest.fixture
def provider(web_port: int, tmp_path: Path) -> Iterator[Provider]:
    yield from start_provider(f"http://127.0.0.1:{web_port}/oidc/callback/", DIRECTORY, tmp_path)


@pytest.fixture
def web(stack: Stack, provider: Provider, web_port: int) -> ServerProcess:
    return stack.web(
        web_port,
        **provider.settings(
            OIDC_GROUP_MAP=GROUP_MAP, OIDC_SUPERUSER_GROUPS="hotel-it", OIDC_LOGIN_LABEL="Hotel Group ID"
        ),
    )


def sign_in(browser, web: ServerProcess, login: str):  # noqa: F811
    """Through the login page's button, the provider's login and consent screens; returns the page."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{web.url}/accounts/login/")
    # Local accounts stay: the password form is still there beside the button.
    assert page.locator("input[name=username]").count() == 1
    page.get_by_role("link", name="Sign in with Hotel Group ID").click()
    page.wait_for_url("http://localhost:*/interaction/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    # The provider's consent screen, then back to Countersign.
    page.wait_for_selector("button[type=submit]")
    page.click("button[type=submit]")
    page.wait_for_url(f"{web.url}/**")
    page.wait_for_load_state()
    return page


def groups_of(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def test_staff_sign_in_through_the_provider_and_get_the_directorys_groups(browser, web, provider):  # noqa: F811
    page = sign_in(browser, web, "maria")
    assert page.url == f"{web.url}/"
    assert "Maria Lopez" in page.locator(".topbar").inner_text()
    user = User.objects.get(username="oidc:maria")
    assert user.is_staff and not user.is_superuser
    assert user.email == "maria@hotel.example" and not user.has_usable_password()
    # Only the mapped group: the directory's "all-staff" means nothing here.
    assert groups_of(user) == {"front-desk"}
    page.context.close()

    # The directory moves Maria to the duty managers; a group given by hand here stays.
    user.groups.add(Group.objects.get_or_create(name="night-shift")[0])
    provider.set_accounts({**DIRECTORY, "maria": {**DIRECTORY["maria"], "groups": ["hotel-managers"]}})
    page = sign_in(browser, web, "maria")
    assert page.url == f"{web.url}/"
    assert groups_of(User.objects.get(username="oidc:maria")) == {"managers", "night-shift"}
    assert User.objects.filter(username__startswith="oidc:").count() == 1
    page.context.close()


def test_someone_without_a_countersign_role_is_refused(browser, web):  # noqa: F811
    page = sign_in(browser, web, "ivan")
    assert page.url == f"{web.url}/accounts/login/?sso=failed"
    assert "no Countersign role" in page.locator(".error").inner_text()
    assert not User.objects.filter(username="oidc:ivan").exists()
    # Not signed in: the dashboard sends back to the login page.
    page.goto(f"{web.url}/")
    assert page.url.startswith(f"{web.url}/accounts/login/")
    page.context.close()


def test_the_directorys_it_group_makes_policy_admins(browser, web):  # noqa: F811
    page = sign_in(browser, web, "tess")
    user = User.objects.get(username="oidc:tess")
    assert user.is_superuser and user.is_staff
    page.goto(f"{web.url}/admin/")
    assert page.locator("#site-name").count() == 1
    page.context.close()
