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


def login_as(client, name: str, *codenames: str, superuser: bool = False) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True, is_superuser=superuser)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


SECRETS = ("sk-theme-secret-1", "tk-param-secret-2", "pw-url-secret-3")


@pytest.fixture
def job_with_secrets(theme) -> Job:
    theme.settings = {"voiceover": {"openai": {"api_key": SECRETS[0]}}}
    theme.save()
    job = orchestrator.start_job(
        theme, params={"api_token": SECRETS[1], "hook": f"https://bot:{SECRETS[2]}@hooks.example/x", "n": 1}
    )
    Job.objects.filter(pk=job.pk).update(error_stage="voiceover", error_message=f"401 for key {SECRETS[0]}")
    job.runs.update(
        error_message=f"refused {SECRETS[1]}", message=f"calling with {SECRETS[0]}", output={"token": SECRETS[1]}
    )
    return job


@pytest.mark.parametrize("codenames", [("view_job", "view_stagerun"), ("view_job", "change_job", "view_stagerun")])
def test_job_params_and_errors_are_masked_in_every_admin_page(client, job_with_secrets, codenames):
    login_as(client, "looker", *codenames)
    run = job_with_secrets.runs.get()
    for url in [
        reverse("admin:jobs_job_changelist"),
        reverse("admin:jobs_job_change", args=[job_with_secrets.pk]),
        reverse("admin:jobs_stagerun_changelist"),
        reverse("admin:jobs_stagerun_change", args=[run.pk]),
    ]:
        resp = client.get(url)
        assert resp.status_code == 200, url
        page = resp.content.decode()
        assert not [s for s in SECRETS if s in page], url
    page = client.get(reverse("admin:jobs_job_change", args=[job_with_secrets.pk])).content.decode()
    assert "********" in page and "hooks.example" in page  # masked, not dropped


def test_a_view_only_theme_user_sees_the_settings_masked(client, theme):
    theme.settings = {"voiceover": {"elevenlabs": {"api_key": "sk-el-viewer-secret", "voice_id": "v1"}}}
    theme.sources = [{"name": "feed", "url": "https://feeds.example/rss?token=tok-viewer-9"}]
    theme.save()
    login_as(client, "theme-viewer", "view_theme")
    page = client.get(reverse("admin:jobs_theme_change", args=[theme.pk])).content.decode()
    assert "sk-el-viewer-secret" not in page and "tok-viewer-9" not in page
    assert "v1" in page and "feeds.example" in page


@pytest.mark.parametrize("who", ["operator", "superuser"])
def test_audit_fields_are_read_only_for_everyone(client, job_with_secrets, theme, who):
    login_as(client, who, "view_job", "change_job", superuser=who == "superuser")
    other = type(theme).objects.create(name="Other", slug="other")
    url = reverse("admin:jobs_job_change", args=[job_with_secrets.pk])
    page = client.get(url).content.decode()
    for field in ("theme", "params", "review_notes", "media_purged_at", "status", "created_by"):
        assert f'name="{field}"' not in page, field
    assert 'name="_save"' not in page
    before = Job.objects.filter(pk=job_with_secrets.pk).values().get()
    resp = client.post(
        url,
        {
            "theme": other.pk,
            "params": "{}",
            "review_notes": '["forged"]',
            "media_purged_at_0": "2020-01-01",
            "media_purged_at_1": "00:00:00",
            "status": "completed",
            "_save": "Save",
        },
    )
    assert resp.status_code == 403
    assert Job.objects.filter(pk=job_with_secrets.pk).values().get() == before
    # the actions that go through the orchestrator stay
    assert 'value="cancel"' in client.get(reverse("admin:jobs_job_changelist")).content.decode()


def theme_post_data(admin_client, theme) -> dict:
    import json

    form = admin_client.get(reverse("admin:jobs_theme_change", args=[theme.pk])).context["adminform"].form
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in form.initial.items() if v is not None}


def test_a_stored_key_is_cleared_when_its_base_url_moves_to_another_host(admin_client, theme):
    import json

    theme.settings = {
        "script_generation": {"openai": {"base_url": "http://localhost:11434/v1", "api_key": "sk-local-1"}},
        "voiceover": {"openai": {"api_key": "sk-default-2"}, "elevenlabs": {"api_key": "el-3", "voice_id": "v"}},
    }
    theme.save()
    url = reverse("admin:jobs_theme_change", args=[theme.pk])
    page = admin_client.get(url).content.decode()
    assert "clears its stored keys" in page  # the form says so before anyone saves
    data = theme_post_data(admin_client, theme)
    settings = json.loads(data["settings"])
    settings["script_generation"]["openai"]["base_url"] = "http://localhost:11434/v2"  # same host: kept
    settings["voiceover"]["openai"]["base_url"] = "https://collector.example/v1"  # from the default host: cleared
    settings["voiceover"]["elevenlabs"]["voice_id"] = "w"
    data["settings"] = json.dumps(settings)
    resp = admin_client.post(url, data, follow=True)
    assert resp.status_code == 200
    theme.refresh_from_db()
    assert theme.settings["script_generation"]["openai"]["api_key"] == "sk-local-1"
    assert "api_key" not in theme.settings["voiceover"]["openai"]
    assert theme.settings["voiceover"]["openai"]["base_url"] == "https://collector.example/v1"
    assert theme.settings["voiceover"]["elevenlabs"] == {"api_key": "el-3", "voice_id": "w"}
    shown = " ".join(str(m) for m in resp.context["messages"])
    assert "voiceover.openai.api_key" in shown and "collector.example" in shown

    # a key typed in with the new host is the key for that host: kept
    data = theme_post_data(admin_client, theme)
    settings = json.loads(data["settings"])
    settings["script_generation"]["openai"].update(base_url="https://llm.example/v1", api_key="sk-new-4")
    data["settings"] = json.dumps(settings)
    assert admin_client.post(url, data).status_code == 302
    theme.refresh_from_db()
    assert theme.settings["script_generation"]["openai"] == {
        "base_url": "https://llm.example/v1",
        "api_key": "sk-new-4",
    }
