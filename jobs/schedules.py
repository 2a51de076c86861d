"""A theme's cron schedule lives in django-q2's Schedule table, kept in step with the theme."""

from __future__ import annotations

from datetime import datetime

from croniter import croniter
from django.utils import timezone
from django_q.models import Schedule

from jobs.models import Theme


def schedule_name(theme: Theme) -> str:
    return f"theme-{theme.pk}"


def sync_schedule(theme: Theme) -> Schedule | None:
    """Create, update or remove the theme's schedule to match ``schedule_cron``."""
    name = schedule_name(theme)
    if not theme.schedule_cron:
        Schedule.objects.filter(name=name).delete()
        return None
    schedule, _ = Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": "jobs.tasks.run_theme",
            "args": repr((theme.pk, theme.schedule_batch)),
            "schedule_type": Schedule.CRON,
            "cron": theme.schedule_cron,
            "repeats": -1,
            "next_run": croniter(theme.schedule_cron, timezone.localtime()).get_next(datetime),
        },
    )
    return schedule
