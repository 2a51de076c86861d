"""No N+1: the console's pages cost the same few queries with 10,000 jobs and 80,000 runs."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, StageRun, Theme
from stages import pipeline

RS = StageRun.Status


def populate(jobs: int = 10_000, runs_per_job: int = 8) -> Job:
    """A realistic mix of job states with one run per stage (retries on some), over 7 days."""
    rng = random.Random(7)
    theme = Theme.objects.create(name="Load", slug="load")
    now = timezone.now()
    statuses = [Job.Status.COMPLETED] * 6 + [Job.Status.FAILED, Job.Status.AWAITING_REVIEW, Job.Status.RUNNING, Job.Status.CANCELLED]
    Job.objects.bulk_create(
        [Job(theme=theme, status=rng.choice(statuses), created=now - timedelta(minutes=i), current_stage="composition",
             error_stage="voiceover", error_message="boom") for i in range(jobs)],
        batch_size=2000,
    )
    runs = []
    for job_id, created in Job.objects.values_list("id", "created"):
        t = created
        for k in range(runs_per_job):
            stage = pipeline.STAGE_KEYS[k % len(pipeline.STAGE_KEYS)]
            took = timedelta(seconds=rng.uniform(0.1, 20))
            runs.append(StageRun(job_id=job_id, stage=stage, attempt=1 + k // len(pipeline.STAGE_KEYS), status=RS.SUCCEEDED if rng.random() > 0.05 else RS.FAILED,
                                 queued_at=t, started_at=t, finished_at=t + took, progress=1.0))
            t += took
    StageRun.objects.bulk_create(runs, batch_size=5000)
    return Job.objects.order_by("-created").first()


@pytest.fixture(scope="module")
def big_db(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        job = populate()
        yield job
        StageRun.objects.all().delete()
        Job.objects.all().delete()
        Theme.objects.all().delete()


@pytest.fixture
def operator(big_db, db, client):
    user, _ = User.objects.get_or_create(username="boss", defaults={"is_staff": True, "is_superuser": True})
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "name, args, queries",
    [
        ("console:dashboard", [], 11),
        ("console:dashboard_live", [], 11),
        ("console:job_detail", ["job"], 6),
        ("console:job_live", ["job"], 6),
        ("console:review", ["job"], 6),
        ("admin:jobs_job_changelist", [], 9),
    ],
)
def test_query_count_is_pinned_with_10000_jobs(operator, big_db, django_assert_num_queries, name, args, queries):
    assert Job.objects.count() == 10_000 and StageRun.objects.count() == 80_000
    url = reverse(name, args=[big_db.pk if a == "job" else a for a in args])
    with django_assert_num_queries(queries):
        resp = operator.get(url)
        if hasattr(resp, "render"):
            resp.render()
    assert resp.status_code == 200
