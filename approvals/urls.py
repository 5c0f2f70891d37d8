from django.urls import path

from approvals import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("history/", views.history, name="history"),
    path("requests/<int:pk>/decide/", views.decide, name="decide"),
    path("requests/<int:pk>/opened/", views.opened, name="opened"),
    path("requests/<int:pk>/claim/", views.claim, name="claim"),
    path("requests/<int:pk>/release/", views.release, name="release"),
]
