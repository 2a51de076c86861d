from __future__ import annotations

from django.apps import AppConfig
from django.core import checks

DEV_SECRET_PREFIX = "dev-insecure-trendreel-"


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        checks.register(check_secret_key, checks.Tags.security, deploy=True)


def check_secret_key(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The per-checkout development key is predictable: never deploy with it."""
    from django.conf import settings

    if settings.SECRET_KEY.startswith(DEV_SECRET_PREFIX):
        return [
            checks.Warning(
                "SECRET_KEY is the development key", hint="set SECRET_KEY to a long random value", id="console.W001"
            )
        ]
    return []
