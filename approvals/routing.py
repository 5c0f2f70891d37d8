"""WebSocket routes of the staff UI; config/asgi.py wraps them in the origin check and auth."""

from django.urls import path

from approvals.consumers import DashboardConsumer

websocket_urlpatterns = [
    # Channels' URLRouter takes ASGI apps where django-stubs' path() expects views.
    path("ws/dashboard/", DashboardConsumer.as_asgi(), name="dashboard-ws"),  # type: ignore[arg-type]
]
