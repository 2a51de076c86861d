"""Bulk data for query-count tests and the console benchmark."""

from __future__ import annotations

import random
from datetime import timedelta

from django.utils import timezone

from jobs.models import Job, StageRun, Theme
from stages import pipeline

RS = StageRun.Status


def populate(jobs: int = 10_000, runs_per_job: int = 8) -> Job:
    """A realistic mix of job states with one run per stage (retries on some), over 7 days."""
    rng = random.Random(7)
    theme = Theme.objects.create(name="Load", slug="load")
    now = timezone.now()
    statuses = [Job.Status.COMPLETED] * 6 + [
        Job.Status.FAILED,
        Job.Status.AWAITING_REVIEW,
        Job.Status.RUNNING,
        Job.Status.CANCELLED,
    ]
    Job.objects.bulk_create(
        [
            Job(
                theme=theme,
                status=rng.choice(statuses),
                created=now - timedelta(minutes=i),
                current_stage="composition",
                error_stage="voiceover",
                error_message="boom",
            )
            for i in range(jobs)
        ],
        batch_size=2000,
    )
    runs = []
    for job_id, created in Job.objects.values_list("id", "created"):
        t = created
        for k in range(runs_per_job):
            stage = pipeline.STAGE_KEYS[k % len(pipeline.STAGE_KEYS)]
            took = timedelta(seconds=rng.uniform(0.1, 20))
            runs.append(
                StageRun(
                    job_id=job_id,
                    stage=stage,
                    attempt=1 + k // len(pipeline.STAGE_KEYS),
                    status=RS.SUCCEEDED if rng.random() > 0.05 else RS.FAILED,
                    queued_at=t,
                    started_at=t,
                    finished_at=t + took,
                    progress=1.0,
                )
            )
            t += took
    StageRun.objects.bulk_create(runs, batch_size=5000)
    return Job.objects.order_by("-created").first()


def approved(job: Job) -> Job:
    """Give ``job`` what publish needs: a composition checkpoint and a reviewer's approval of it."""
    from django.contrib.auth.models import Permission, User

    from jobs.models import ReviewDecision

    now = timezone.now()
    composition = StageRun.objects.create(
        job=job, stage=pipeline.REVIEWED, status=RS.SUCCEEDED, started_at=now, finished_at=now, output={}
    )
    reviewer, created = User.objects.get_or_create(username="factory-reviewer")
    if created:
        reviewer.user_permissions.add(Permission.objects.get(codename="review_job"))
    ReviewDecision.objects.create(
        job=job,
        composition_run=composition,
        decision=ReviewDecision.Decision.APPROVE,
        decided_by=reviewer,
        decided_at=now + timedelta(microseconds=1),
    )
    return job
