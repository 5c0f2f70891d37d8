from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic.base import RedirectView
from django.views.i18n import JavaScriptCatalog

from config import health
from observability.views import metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("accounts/", include("django.contrib.auth.urls")),
    # Single sign-on (OpenID Connect): answers 404 unless OIDC_ISSUER is set.
    path("oidc/", include("sso.urls")),
    path("admin/", admin.site.urls),
    # The approval API for other gateways and programs (docs/approval_api.md).
    path("api/v1/", include("approval_api.urls")),
    path("review/", include("compliance.urls")),
    # The language picked in the navigation (Django's set_language) and the dashboard's strings.
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    # Browsers ask for /favicon.ico whatever the page links to.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"), permanent=True)),
    path("", include("notify.urls")),
    path("", include("realtime_bridge.urls")),
    path("", include("approvals.urls")),
]

handler403 = "config.errors.forbidden"
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
