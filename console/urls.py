from django.contrib import admin
from django.urls import include, path

from console import views

admin.site.site_header = "Trendreel"
admin.site.site_title = "Trendreel console"
admin.site.index_title = "Operator console"

urlpatterns = [
    path("", views.home, name="home"),
    path("console/", include("console.urls_console")),
    path("admin/", admin.site.urls),
    path("api/", include("console.api")),
]
