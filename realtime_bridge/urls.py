from django.urls import path

from realtime_bridge import views

urlpatterns = [
    path("webhooks/openai", views.openai_webhook, name="openai_webhook"),
    path("calls/<int:pk>", views.call_detail, name="call_detail"),
    path("calls/<int:pk>/hangup", views.call_hangup, name="call_hangup"),
    path("calls/<int:pk>/refer", views.call_refer, name="call_refer"),
    path("api/runs", views.runs_create, name="runs_create"),
    path("api/runs/<int:pk>", views.run_detail, name="run_detail"),
    path("api/webrtc/session", views.webrtc_session, name="webrtc_session"),
    path("api/webrtc/calls", views.webrtc_attach, name="webrtc_attach"),
]
