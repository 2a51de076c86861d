"""Settings fail loudly on bad values; a theme's cron schedule follows the theme."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ValidationError
from django_q.models import Schedule

from jobs import schedules, tasks
from jobs.models import Job, Theme
from jobs.tests.conftest import ROOT


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TRENDREEL_WORKERS": "two"}, "TRENDREEL_WORKERS='two' is not a whole number"),
        ({"TRENDREEL_WORKERS": "0"}, "TRENDREEL_WORKERS=0 must be at least 1"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"TRENDREEL_STAGE_POLICY": "{nope"}, "TRENDREEL_STAGE_POLICY is not valid JSON"),
        ({"DATABASE_URL": "mongodb://x/y"}, "DATABASE_URL"),
        ({"TRENDREEL_HEARTBEAT_SECONDS": "-1"}, "must be at least"),
        ({"TRENDREEL_API_RATE": "lots"}, "TRENDREEL_API_RATE must look like 600/m"),
        ({"TRENDREEL_MEDIA_RETENTION_DAYS": "-3"}, "must be at least"),
    ],
)
def test_invalid_settings_stop_start_up_with_a_clear_error(env, message):
    full = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")} | env
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


@pytest.mark.django_db
def test_a_theme_schedule_is_created_updated_and_removed():
    theme = Theme.objects.create(name="Daily", slug="daily", schedule_cron="0 9 * * 1-5", schedule_batch=3)
    schedule = schedules.sync_schedule(theme)
    assert (schedule.func, schedule.cron, schedule.schedule_type) == (
        "jobs.tasks.run_theme",
        "0 9 * * 1-5",
        Schedule.CRON,
    )
    assert schedule.next_run is not None
    theme.schedule_cron = "30 7 * * *"
    schedules.sync_schedule(theme)
    assert Schedule.objects.get(name=f"theme-{theme.pk}").cron == "30 7 * * *"
    theme.schedule_cron = ""
    schedules.sync_schedule(theme)
    assert not Schedule.objects.filter(name=f"theme-{theme.pk}").exists()


@pytest.mark.django_db
def test_a_bad_cron_or_batch_is_refused():
    theme = Theme(
        name="Bad", slug="bad", schedule_cron="every morning", schedule_batch=50, sources=[{"name": "x", "path": "x"}]
    )
    with pytest.raises(ValidationError) as exc:
        theme.full_clean()
    assert {"schedule_cron", "schedule_batch"} <= set(exc.value.message_dict)


@pytest.mark.django_db
def test_the_scheduled_task_starts_a_batch_for_the_top_topics():
    theme = Theme.objects.create(name="Daily", slug="daily")
    assert tasks.run_theme(theme.pk, 3).startswith("started ")
    assert sorted(Job.objects.values_list("params__topic_rank", flat=True)) == [0, 1, 2]


def test_with_redis_the_cache_is_shared_by_every_process():
    """The API request budget and the dashboard stats count across web processes."""
    code = (
        "from django.conf import settings; from django.core.cache import cache; "
        "cache.set('probe', 41, 30); cache.incr('probe'); print(settings.CACHES['default']['BACKEND'], cache.get('probe'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")} | {
        "REDIS_URL": "redis://127.0.0.1:6379/14"
    }
    first = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["django.core.cache.backends.redis.RedisCache", "42"]
    second = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-v",
            "0",
            "-c",
            "from django.core.cache import cache; print(cache.get('probe'))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.stdout.strip() == "42"  # another process sees it
