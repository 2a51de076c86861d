from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class StagesConfig(AppConfig):
    name = "stages"
    verbose_name = "Stages"

    def ready(self) -> None:
        checks.register(check_stage_paths)


def check_stage_paths(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every stage path (defaults and overrides) must import: fail at start-up, not mid-job."""
    from django.core.exceptions import ImproperlyConfigured

    from stages import pipeline

    errors = []
    for key in pipeline.STAGE_KEYS:
        try:
            pipeline.load(key)
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="stages.E001"))
    return errors
