"""Media retention: old finished jobs' files go, their records stay, a retry starts over."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from jobs import orchestrator, retention
from jobs.models import Job
from jobs.tests.conftest import params
from jobs.tests.stagefns import calls

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def make_job(engine, theme, call_log, tmp_path, reviewer):
    def make(status: str, days_ago: float) -> Job:
        job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
        if status == "completed":
            orchestrator.review_job(job.pk, "approve", user=reviewer)
            job = orchestrator.run_inline(job.pk)
        elif status == "rejected":
            job = orchestrator.review_job(job.pk, "reject", notes="off-brand", user=reviewer)
        elif status == "failed":
            Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED, error_stage="publish")
        job.refresh_from_db()
        assert job.status == status
        if days_ago:
            Job.objects.filter(pk=job.pk).update(finished=timezone.now() - timedelta(days=days_ago))
        return Job.objects.get(pk=job.pk)

    return make


def folder(job: Job):
    return orchestrator.job_dir(job.pk)


def test_it_removes_old_finished_jobs_media_and_keeps_the_rest(make_job):
    old_done, old_rejected = make_job("completed", 40), make_job("rejected", 31)
    recent, old_failed, in_review = make_job("completed", 5), make_job("failed", 60), make_job("awaiting_review", 0)
    Job.objects.filter(pk=in_review.pk).update(created=timezone.now() - timedelta(days=90))
    sizes = {j.pk: sum(f.stat().st_size for f in folder(j).rglob("*") if f.is_file()) for j in (old_done, old_rejected)}

    report = retention.prune_media(days=30)
    assert sorted(report.jobs) == sorted([old_done.pk, old_rejected.pk])
    assert report.bytes == sum(sizes.values()) > 0
    for job in (old_done, old_rejected):
        assert not folder(job).exists()
        job.refresh_from_db()
        assert job.media_purged_at is not None
        assert job.artifacts.exists() and job.runs.filter(status="succeeded").exists()  # the record stays
    for job in (recent, old_failed, in_review):
        assert folder(job).exists() and Job.objects.get(pk=job.pk).media_purged_at is None
    assert not retention.prune_media(days=30).jobs  # nothing twice

    # failed and cancelled jobs may still be retried: only on request
    assert retention.prune_media(days=30, include_failed=True).jobs == [old_failed.pk]
    assert not folder(old_failed).exists()


def test_the_command_reports_and_a_dry_run_removes_nothing(make_job):
    job = make_job("completed", 40)
    out = io.StringIO()
    call_command("prune_media", "--older-than", "30", "--dry-run", stdout=out)
    assert "would remove the media of 1 job" in out.getvalue() and folder(job).exists()
    out = io.StringIO()
    call_command("prune_media", "--older-than", "30", stdout=out)
    assert "removed the media of 1 job" in out.getvalue() and "MB" in out.getvalue()
    assert not folder(job).exists()


def test_purged_media_answers_410_and_the_job_page_says_why(make_job, admin_client):
    job = make_job("completed", 40)
    artifact = job.artifacts.first()
    retention.prune_media(days=30)
    response = admin_client.get(reverse("console:media", args=[job.pk, artifact.pk]))
    assert response.status_code == 410
    page = admin_client.get(reverse("console:job_detail", args=[job.pk])).content.decode()
    assert "Media removed" in page
    assert reverse("console:media", args=[job.pk, artifact.pk]) not in page  # no broken players


def test_a_retry_of_a_purged_job_starts_over(make_job, call_log):
    job = make_job("failed", 60)
    retention.prune_media(days=30, include_failed=True)
    before = len(calls(call_log))
    orchestrator.retry_job(job.pk)
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    assert job.media_purged_at is None and folder(job).exists()
    rerun = [s for s, _ in calls(call_log)[before:]]
    assert rerun[0] == "trend_collection"  # every checkpoint's files were gone: from the start


def test_the_worker_applies_the_retention_setting(make_job, settings):
    from jobs.management.commands.worker import Command

    job = make_job("completed", 40)
    settings.TRENDREEL_MEDIA_RETENTION_DAYS = 0
    Command().housekeeping()
    assert folder(job).exists()  # 0: keep everything (the default)
    settings.TRENDREEL_MEDIA_RETENTION_DAYS = 30
    out = io.StringIO()
    Command(stdout=out).housekeeping()
    assert not folder(job).exists() and "removed the media of 1 job (" in out.getvalue()
