from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class StagesConfig(AppConfig):
    name = "stages"
    verbose_name = "Stages"

    def ready(self) -> None:
        checks.register(check_stage_paths)
        checks.register(check_broker_retry)


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


def check_broker_retry(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """django-q2 re-delivers an unacknowledged task after ``retry`` seconds: it must outlast the
    longest stage (plus queue wait), or a slow stage is started again while it still runs."""
    from django.conf import settings

    from stages import pipeline

    retry = settings.Q_CLUSTER.get("retry", 60)
    longest = pipeline.max_time_limit()
    if longest == float("inf"):
        return []  # a stage without a limit outlasts any retry: a second delivery finds it claimed
    if retry <= longest + 60:
        return [
            checks.Error(
                f"Q_CLUSTER retry ({retry}s) must exceed the longest stage time limit ({longest:g}s) plus a minute",
                hint="raise TRENDREEL_BROKER_RETRY or lower the stage's time_limit",
                id="stages.E002",
            )
        ]
    return []
