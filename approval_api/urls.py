from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from approval_api import schema, views, wait

__all__ = ["schema", "urlpatterns"]

urlpatterns = [
    path("requests", views.RequestList.as_view(), name="api_requests"),
    path("requests/<int:pk>", views.RequestDetail.as_view(), name="api_request"),
    path("requests/<int:pk>/wait", wait.wait, name="api_request_wait"),
    path("webhooks", views.WebhookList.as_view(), name="api_webhooks"),
    path("webhooks/<int:pk>", views.WebhookDetail.as_view(), name="api_webhook"),
    path("schema", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="api_schema"), name="api_redoc"),
]
