"""Admin forms, hostile: every add form of the project's models in the admin, posted by a
superuser with values Hypothesis draws for the form's own fields (and some it does not have).

Invariant: never a 500; a form shown again with errors (200) changed nothing (the model's rows,
the audit rows); only a redirect (302) may have saved something."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.db.models import Model
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from tests.hostile import surfaces

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"approvals", "audit", "compliance", "notify", "realtime_bridge"}


def add_forms() -> list[tuple[type[Model], admin.ModelAdmin[Any]]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PROJECT_APPS
    ]


_value = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", "0", "-1", "1e999", "true", "on", "null", "{}", "[]", '{"a": [1, {"b": null}]}', "http://", "a" * 10_000]
    ),
    st.sampled_from(["https://mcp.hotel.example/mcp", "http://127.0.0.1:9/mcp", "ftp://x", "javascript:alert(1)"]),
    st.integers().map(str),
    st.sampled_from(["2026-13-45", "2026-01-01 25:61", "9999-12-31"]),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(100, 5_000)),
)


@pytest.mark.parametrize("model", [m for m, _ in add_forms()], ids=lambda m: m._meta.label)
def test_admin_add_forms_refuse_bad_input_and_change_nothing(admin_user: Any, model: type[Model]) -> None:
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    request.user = admin_user
    if not model_admin.has_add_permission(request):
        pytest.skip(f"{model._meta.label} cannot be added in the admin")
    try:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
    except NoReverseMatch:
        pytest.skip(f"{model._meta.label} has no add view")
    fields = list(model_admin.get_form(request)().fields)
    client = Client()
    client.force_login(admin_user)

    # A quarter of the profile's examples per form: the forms together are one surface, and an
    # admin page costs far more than the other surfaces' examples.
    @settings(max_examples=max(10, settings.default.max_examples // 4))
    @given(
        data=st.dictionaries(st.sampled_from(fields) | st.text(max_size=8), st.lists(_value, min_size=1, max_size=2))
    )
    def one(data: dict[str, list[str]]) -> None:
        before = (model._default_manager.count(), AuditEvent.objects.count())
        response = client.post(url, data)
        assert response.status_code in (200, 302, 400, 403), response.status_code
        if response.status_code != 302:
            assert (model._default_manager.count(), AuditEvent.objects.count()) == before, data
        surfaces.ran("admin add forms")

    one()
