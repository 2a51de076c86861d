"""Admin: every page renders, actions go through the orchestrator, review needs its permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from jobs import orchestrator
from jobs.models import Job, StageRun
from jobs.tests.conftest import params

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job_in_review(engine, theme, call_log, tmp_path) -> Job:
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    return orchestrator.run_inline(job.pk)


def test_every_admin_page_renders(admin_client, job_in_review):
    run = job_in_review.runs.first()
    for url in [
        reverse("admin:index"),
        reverse("admin:jobs_job_changelist"),
        reverse("admin:jobs_job_changelist") + "?status=awaiting_review",
        reverse("admin:jobs_job_change", args=[job_in_review.pk]),
        reverse("admin:jobs_stagerun_changelist"),
        reverse("admin:jobs_stagerun_change", args=[run.pk]),
        reverse("admin:jobs_failedstagerun_changelist"),
        reverse("admin:jobs_theme_changelist"),
        reverse("admin:jobs_theme_change", args=[job_in_review.theme_id]),
        reverse("admin:jobs_artifact_changelist"),
        reverse("admin:jobs_trend_changelist"),
        reverse("admin:jobs_reviewdecision_changelist"),
        reverse("admin:jobs_publication_changelist"),
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_approve_action_goes_through_the_orchestrator(admin_client, job_in_review):
    url = reverse("admin:jobs_job_changelist")
    resp = admin_client.post(url, {"action": "approve", "_selected_action": [job_in_review.pk]}, follow=True)
    assert resp.status_code == 200
    job_in_review.refresh_from_db()
    assert job_in_review.status == Job.Status.PUBLISHING
    assert job_in_review.runs.get(stage="publish").status == StageRun.Status.QUEUED
    # a second approve is refused with a message, not an error
    resp = admin_client.post(url, {"action": "approve", "_selected_action": [job_in_review.pk]}, follow=True)
    assert "not awaiting review" in resp.content.decode()


def test_staff_without_review_permission_cannot_approve(client, job_in_review):
    user = User.objects.create_user("op", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_job", "change_job"]))
    client.force_login(user)
    url = reverse("admin:jobs_job_changelist")
    page = client.get(url).content.decode()
    assert 'value="retry"' in page
    assert 'value="approve"' not in page
    client.post(url, {"action": "approve", "_selected_action": [job_in_review.pk]})
    job_in_review.refresh_from_db()
    assert job_in_review.status == Job.Status.AWAITING_REVIEW


def test_theme_secrets_are_masked_in_the_admin_and_kept_on_save(admin_client, theme):
    theme.settings = {
        "voiceover": {"providers": ["elevenlabs"], "elevenlabs": {"api_key": "sk-el-very-secret", "voice_id": "v1"}}
    }
    theme.sources = [{"name": "feed", "url": "https://feeds.example/rss?token=tok-123456"}]
    theme.save()
    url = reverse("admin:jobs_theme_change", args=[theme.pk])
    page = admin_client.get(url).content.decode()
    assert "sk-el-very-secret" not in page and "tok-123456" not in page
    assert "v1" in page
    form = admin_client.get(url).context["adminform"].form
    data = {
        k: (v if not isinstance(v, (dict, list)) else __import__("json").dumps(v))
        for k, v in form.initial.items()
        if v is not None
    }
    data["settings"] = data["settings"].replace('"v1"', '"v2"')
    resp = admin_client.post(url, data)
    assert resp.status_code == 302, resp.content.decode()[:2000]
    theme.refresh_from_db()
    assert theme.settings["voiceover"]["elevenlabs"] == {"api_key": "sk-el-very-secret", "voice_id": "v2"}
    assert theme.sources[0]["url"].endswith("token=tok-123456")


def test_the_publication_page_hides_a_youtube_upload_session(admin_client, job_in_review):
    """A resumable upload session URI lets whoever holds it upload into that session."""
    from jobs.models import Publication

    session = "https://www.googleapis.com/upload/youtube/v3/videos?uploadType=resumable&upload_id=SECRET-UPLOAD-ID"
    pub = Publication.objects.create(
        job=job_in_review, destination="youtube", meta={"state": "uploading", "session": session, "title": "A title"}
    )
    page = admin_client.get(reverse("admin:jobs_publication_change", args=[pub.pk])).content.decode()
    assert "SECRET-UPLOAD-ID" not in page
    assert "uploading" in page and "A title" in page  # the rest of the record is shown
    assert Publication.objects.get(pk=pub.pk).meta["session"] == session  # hidden, not lost
