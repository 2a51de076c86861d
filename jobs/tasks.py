"""django-q2 entry points. They only forward: all decisions live in ``jobs.orchestrator``."""

from __future__ import annotations

import logging

from jobs import orchestrator

log = logging.getLogger("trendreel.schedules")


def run_stage(run_id: int) -> str:
    return orchestrator.execute_run(run_id)


def sweep() -> str:
    """Scheduled backstop for deployments that run plain ``qcluster`` without ``manage.py worker``."""
    report = orchestrator.sweep()
    return f"crashed={len(report.crashed)} pushed={len(report.pushed)}"


def run_theme(theme_id: int, count: int = 1) -> str:
    """A theme's scheduled run: a batch of ``count`` jobs for its top topics."""
    from jobs.models import Theme

    theme = Theme.objects.get(pk=theme_id)
    try:
        jobs = orchestrator.start_batch(theme, count) if count > 1 else [orchestrator.start_job(theme)]
    except orchestrator.BudgetSpent as exc:  # the next run (or tomorrow's) tries again
        log.warning("scheduled run of theme %s skipped: %s", theme.slug, exc)
        return f"skipped: {exc}"
    return "started " + ", ".join(str(j.pk) for j in jobs)


def pull_metrics() -> str:
    """The analytics schedule's task: every recent video's numbers, once (``jobs.analytics``)."""
    from jobs import analytics

    return analytics.pull_metrics().summary()
