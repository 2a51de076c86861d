from django.urls import path

from console import editing, views

app_name = "console"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("live/", views.dashboard_live, name="dashboard_live"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/live/", views.job_live, name="job_live"),
    path("jobs/<int:pk>/review/", views.review, name="review"),
    path("jobs/<int:pk>/review/decide/", views.review_decide, name="review_decide"),
    path("jobs/<int:pk>/media/<int:artifact_id>/", views.media, name="media"),
    path("jobs/<int:pk>/edit/", editing.job_edit, name="job_edit"),
    path("jobs/<int:pk>/<str:action>/", views.job_action, name="job_action"),
    path("themes/<int:pk>/run/", views.theme_run, name="theme_run"),
    path("two-factor/", views.two_factor_setup, name="two_factor"),
    path("two-factor/qr.svg", views.two_factor_qr, name="two_factor_qr"),
]
