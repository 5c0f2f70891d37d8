from django.urls import path

from compliance import views

urlpatterns = [
    path("", views.search, name="review_search"),
    path("search.csv", views.search_csv, name="review_csv"),
    path("metrics/", views.metrics_page, name="review_metrics"),
    path("requests/<int:pk>/", views.case, name="review_case"),
    path("requests/<int:pk>/hold/", views.place_hold, name="review_place_hold"),
    path("holds/<int:pk>/release/", views.release_hold, name="review_release_hold"),
    path("exports/", views.export_create, name="review_export_create"),
    path("exports/<int:pk>/", views.export_status, name="review_export"),
    path("exports/<int:pk>/share/", views.export_share, name="review_export_share"),
    path("exports/<int:pk>/download/", views.export_download, name="review_export_download"),
]
