"""No story twice: a theme does not tell the same story again within N days (``recent_days``), by
trend id or by a near-duplicate title; the output says which stories were skipped and why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, Theme
from stages.tests.test_trend_analysis import analyse, make_job, trend


def aged(job: Job, days: float) -> Job:
    Job.objects.filter(pk=job.pk).update(created=timezone.now() - timedelta(days=days))
    return job


@pytest.mark.django_db
def test_a_story_told_within_the_window_is_skipped_and_an_older_one_may_come_back(tmp_path):
    theme = Theme.objects.create(name="Tech pulse", slug="tech-window")
    pints = trend("wire", "Robot bartender pours a perfect pint", engagement=900)
    repost = trend("forum", "Robot bartender now pours perfect pints in Oslo bars", engagement=5, hours_ago=3)
    pumps = trend("wire", "Heat pumps outsell gas boilers", engagement=100, hours_ago=1)
    kiosk = trend("wire", "Solar kiosk charges phones in Nairobi", engagement=1, hours_ago=5)
    last_week = aged(make_job(theme, Job.Status.COMPLETED, {"trend_id": pumps.id, "title": pumps.title}), 7)
    aged(make_job(theme, Job.Status.COMPLETED, {"trend_id": pints.id, "title": pints.title}), 60)
    current = make_job(theme, Job.Status.RUNNING, None)

    # Told 60 days ago: outside the 30-day window, the story may be told again.
    out = analyse(tmp_path, [pints, kiosk], theme=theme.as_input(), job_id=current.pk)
    assert out["topic"]["trend_id"] == pints.id and out["skipped"] == []

    # Told today: the same story from another source (a near-duplicate title) is skipped, and so is
    # last week's; the output says why, story by story.
    today = make_job(theme, Job.Status.COMPLETED, {"trend_id": pints.id, "title": pints.title})
    out = analyse(tmp_path / "again", [repost, pumps, kiosk], theme=theme.as_input(), job_id=current.pk)
    assert out["topic"]["trend_id"] == kiosk.id
    assert {s["trend_id"]: s["reason"] for s in out["skipped"]} == {
        repost.id: f"similar to the topic of job {today.pk}",
        pumps.id: f"used by job {last_week.pk}",
    }

    # A theme that wants a shorter memory says so: last week's story is allowed again.
    short = {**theme.as_input(), "settings": {"trend_analysis": {"recent_days": 5}}}
    out = analyse(tmp_path / "short", [pumps, kiosk], theme=short, job_id=current.pk)
    assert out["topic"]["trend_id"] == pumps.id and out["skipped"] == []
