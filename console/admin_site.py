"""The admin site: Django's, with the login form asking for an authentication code and a
second factor checked on every page (``console.two_factor``). Installed as the default site by
``console.apps.AdminConfig``, so every ``admin.site.register`` lands here."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from console import two_factor


class TrendreelAdminSite(admin.AdminSite):
    site_header = "Trendreel"
    site_title = "Trendreel console"
    index_title = "Operator console"
    login_form = two_factor.LoginForm
    login_template = "admin/trendreel_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and two_factor.satisfied(request)

    def login(self, request: HttpRequest, extra_context=None):
        # logged in with a password but required to have a second factor and without one: set it up
        if request.method == "GET" and request.user.is_authenticated and two_factor.needs_setup(request):
            return two_factor.challenge(request)
        return super().login(request, extra_context)
