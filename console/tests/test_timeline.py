"""The console's time maths (console/timeline.py) and the stage statistics queryset, on the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from console import timeline
from jobs.models import Job, StageRun

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status


def attempt(job: Job, stage: str, n: int, seconds: float, ago: timedelta, status: str = RS.SUCCEEDED) -> StageRun:
    finished = timezone.now() - ago
    return StageRun.objects.create(
        job=job,
        stage=stage,
        attempt=n,
        status=status,
        queued_at=finished - timedelta(seconds=seconds),
        started_at=finished - timedelta(seconds=seconds),
        finished_at=finished,
    )


def test_stage_stats_count_and_take_the_median_per_window(theme):
    job = Job.objects.create(theme=theme)
    hour, days = timedelta(hours=1), timedelta(days=3)
    for n, (seconds, ago) in enumerate([(1, hour), (3, hour), (2, hour), (10, days), (20, days)], start=1):
        attempt(job, "trend_collection", n, seconds, ago)
    attempt(job, "trend_collection", 6, 50, hour, status=RS.FAILED)
    attempt(job, "voiceover", 1, 4, timedelta(days=9))  # older than a week: not counted
    now = timezone.now()
    stats = StageRun.objects.stage_stats(now - timedelta(days=1), now - timedelta(days=7))
    assert set(stats) == {"trend_collection"}
    (d_total, d_ok, d_med), (w_total, w_ok, w_med) = stats["trend_collection"]["day"], stats["trend_collection"]["week"]
    assert (d_total, d_ok, w_total, w_ok) == (4, 3, 6, 5)
    assert float(d_med) == pytest.approx(2.0) and float(w_med) == pytest.approx(3.0)

    chart = {row["stage"]: row for row in timeline.stage_chart(now)}
    assert "review" not in chart  # gates have no duration of their own
    row = chart["trend_collection"]
    assert row["rate"] == pytest.approx(0.75) and row["week"]["rate"] == pytest.approx(5 / 6)
    assert row["week_width"] == pytest.approx(100) and row["day_width"] == pytest.approx(2 / 3 * 100)
    assert chart["voiceover"]["total"] == 0 and chart["voiceover"]["rate"] is None


def test_timeline_bars_share_one_axis(theme):
    job = Job.objects.create(theme=theme)
    t0 = timezone.now() - timedelta(seconds=100)
    done = StageRun.objects.create(
        job=job, stage="trend_collection", status=RS.SUCCEEDED, queued_at=t0, started_at=t0,
        finished_at=t0 + timedelta(seconds=25),
    )  # fmt: skip
    running = StageRun.objects.create(
        job=job, stage="trend_analysis", status=RS.RUNNING, queued_at=t0 + timedelta(seconds=25),
        started_at=t0 + timedelta(seconds=50),
    )  # fmt: skip
    runs = list(job.runs.for_timeline())
    span = timeline.place_bars(runs, since=job.created, now=t0 + timedelta(seconds=100))
    assert span == pytest.approx(100)
    assert (runs[0].bar_left, runs[0].bar_width) == (pytest.approx(0), pytest.approx(25))
    assert (runs[1].bar_left, runs[1].bar_width) == (pytest.approx(50), pytest.approx(50))  # runs until now
    steps = timeline.latest_per_stage(runs)
    assert [s["run"] for s in steps[:3]] == [done, running, None]
    assert timeline.place_bars([], since=t0, now=t0) == pytest.approx(1.0)  # no attempt yet: one second
