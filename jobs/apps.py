from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sweep_schedule(sender, using="default", **kwargs) -> None:
    """Every deployment migrates, so every deployment gets the sweeper's django-q2 schedule, which
    any plain ``qcluster`` runs (``manage.py worker`` runs a sweeper loop as well)."""
    if using != "default":
        return
    from jobs.orchestrator.sweeper import ensure_schedule

    ensure_schedule()


def _analytics_schedule(sender, using="default", **kwargs) -> None:
    """Likewise the analytics pull's schedule (``jobs.analytics``; removed when
    TRENDREEL_ANALYTICS_MINUTES is 0)."""
    if using != "default":
        return
    from jobs.analytics import ensure_schedule

    ensure_schedule()


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Pipeline"

    def ready(self) -> None:
        post_migrate.connect(_sweep_schedule, sender=self, dispatch_uid="trendreel-sweep-schedule")
        post_migrate.connect(_analytics_schedule, sender=self, dispatch_uid="trendreel-analytics-schedule")
        from jobs.lineage import code_version

        code_version()  # at start-up: what this process runs, whatever the checkout becomes later
