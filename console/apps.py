from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.core import checks


class AdminConfig(admin_apps.AdminConfig):
    """Django's admin with Trendreel's site (second factor at login and on every page);
    INSTALLED_APPS names it instead of django.contrib.admin."""

    default = False  # not the console app's own config
    default_site = "console.admin_site.TrendreelAdminSite"


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        checks.register(check_secret_key, checks.Tags.security, deploy=True)


def check_secret_key(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The development key (DEBUG on, no SECRET_KEY) is derived from the checkout path: anyone can
    guess it. An error, not a warning: a deployment must never run on it."""
    from django.conf import settings

    from console.settings import DEV_SECRET_PREFIX

    if settings.SECRET_KEY.startswith(DEV_SECRET_PREFIX):
        return [
            checks.Error(
                "SECRET_KEY is the development key", hint="set SECRET_KEY to a long random value", id="console.E001"
            )
        ]
    return []
