from django.urls import path

from notify import views

urlpatterns = [
    path("manifest.webmanifest", views.manifest, name="notify_manifest"),
    path("sw.js", views.service_worker, name="notify_service_worker"),
    path("notify/csrf", views.csrf, name="notify_csrf"),
    path("notify/profile", views.profile, name="notify_profile"),
    path("notify/push/subscriptions", views.subscriptions, name="notify_subscriptions"),
    path("notify/slack/interactions", views.slack_interactions, name="notify_slack_interactions"),
    path("notify/slack/link/<str:token>", views.slack_link, name="notify_slack_link"),
]
