from django.contrib import admin
from django.urls import path

admin.site.site_header = "Trendreel"
admin.site.site_title = "Trendreel console"
admin.site.index_title = "Operator console"

urlpatterns = [
    path("admin/", admin.site.urls),
]
