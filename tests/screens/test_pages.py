"""The staff screens as served: error pages with the navigation, a 403 in one log line, the
language from the browser or the picker, the dark theme, the favicon."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.contrib.staticfiles import finders
from django.test import RequestFactory

from config.errors import server_error


def test_a_403_is_a_styled_page_with_the_navigation(client, charlie):
    client.force_login(charlie)
    response = client.get("/history/")
    assert response.status_code == 403
    html = response.content.decode()
    assert 'class="topbar"' in html and "You may not open this page" in html
    assert "Only staff can see approval requests." in html
    assert "Log out Charlie" in html  # the display name, not the username


def test_a_403_logs_one_line_with_path_and_user_and_no_traceback(client, charlie, caplog):
    client.force_login(charlie)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        client.get("/history/")
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 1
    (record,) = records
    assert record.getMessage() == "Forbidden: /history/ (user charlie)"
    assert record.exc_info is None and record.exc_text is None
    assert "Traceback" not in caplog.text


def test_a_404_is_a_styled_page_with_the_navigation(client, alice):
    client.force_login(alice)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "There is nothing here" in html and 'href="/history/"' in html


def test_the_500_page_renders_without_a_request_context(db):
    response = server_error(RequestFactory().get("/boom/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong on our side" in html
    assert 'class="topbar"' in html and 'href="/history/"' in html and 'href="/"' in html


def test_the_browsers_language_picks_german(client, alice):
    client.force_login(alice)
    html = client.get("/", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.5").content.decode()
    assert '<html lang="de">' in html
    assert "Offene Freigaben" in html and "Genehmigen" in html and "Ablehnen" in html
    catalog = client.get("/jsi18n/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Genehmigt von %(name)s" in catalog


def test_a_language_without_translations_falls_back_to_english(client, alice):
    client.force_login(alice)
    html = client.get("/", HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9").content.decode()
    assert '<html lang="en">' in html and "Pending approvals" in html


def test_the_language_picker_switches_the_screens(client, alice):
    client.force_login(alice)
    response = client.post("/i18n/setlang/", {"language": "es", "next": "/history/"}, HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 302 and response["Location"] == "/history/"
    html = client.get("/history/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Solicitudes decididas" in html  # the choice wins over the browser
    assert 'name="language"' in html and '<option value="es" lang="es" selected>' in html


def test_the_dark_theme_follows_the_system_and_covers_every_color():
    path = finders.find("css/app.css")
    assert isinstance(path, str)
    css = Path(path).read_text()
    light = re.search(r":root \{(.*?)\n\}", css, re.S)
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{\s*:root \{(.*?)\}", css, re.S)
    assert light and dark
    names = lambda block: set(re.findall(r"(--[\w-]+):", block))  # noqa: E731
    assert names(light.group(1)) - names(dark.group(1)) == {"--radius"}
    # Outside the two palettes no rule names a light background of its own.
    rules = css.replace(light.group(0), "").replace(dark.group(0), "")
    assert not re.search(r"background:\s*#fff\b", rules)


@pytest.mark.django_db
async def test_the_favicon_is_served(async_client, settings):
    response = await async_client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.ico"
    from config.asgi import application

    settings.DEBUG = False
    for path in ("/static/favicon.ico", "/static/favicon.svg"):
        scope: dict[str, Any] = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
        comm = ApplicationCommunicator(application, scope)
        await comm.send_input({"type": "http.request", "body": b""})
        start = await comm.receive_output(5)
        assert start["status"] == 200, path


def test_every_page_links_the_favicon_and_the_formats(client, alice):
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in html
    assert "data-time-zone=" in html and "js/format.js" in html and "/jsi18n/" in html
