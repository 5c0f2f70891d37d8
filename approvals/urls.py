from django.urls import path

from approvals import grant_views, passkey_views, stop_views, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("history/", views.history, name="history"),
    path("requests/<int:pk>/decide/", views.decide, name="decide"),
    path("requests/<int:pk>/opened/", views.opened, name="opened"),
    path("requests/<int:pk>/claim/", views.claim, name="claim"),
    path("requests/<int:pk>/release/", views.release, name="release"),
    path("requests/approve-all/", grant_views.approve_all, name="approve_all"),
    path("grants/", grant_views.grant_list, name="grant_list"),
    path("grants/<int:pk>/revoke/", grant_views.revoke, name="grant_revoke"),
    path("requests/<int:pk>/step-up/options/", passkey_views.step_up_options, name="step_up_options"),
    path("sessions/<int:pk>/stop/", stop_views.stop, name="stop_session"),
    path("profile/passkeys/", passkey_views.passkeys, name="passkeys"),
    path("profile/passkeys/options/", passkey_views.registration_options, name="passkey_options"),
    path("profile/passkeys/register/", passkey_views.register, name="passkey_register"),
    path("profile/passkeys/<int:pk>/delete/", passkey_views.delete, name="passkey_delete"),
]
