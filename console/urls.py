from django.contrib import admin
from django.urls import include, path

from console import views

urlpatterns = [
    path("", views.home, name="home"),
    path("console/", include("console.urls_console")),
    path("admin/", admin.site.urls),
    path("api/", include("console.api")),
]
