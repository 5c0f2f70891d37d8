from django.contrib import admin
from django.urls import include, path

from config import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("review/", include("compliance.urls")),
    path("", include("notify.urls")),
    path("", include("realtime_bridge.urls")),
    path("", include("approvals.urls")),
]
