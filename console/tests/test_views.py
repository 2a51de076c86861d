"""Console pages: permissions, actions through the orchestrator, media with Range, no N+1."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from jobs import orchestrator
from jobs.models import Artifact, Job
from jobs.tests.conftest import params

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job(engine, theme, call_log, tmp_path) -> Job:
    return orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)


def staff(*codenames: str) -> User:
    user = User.objects.create_user("op-" + "-".join(codenames or ("none",)), password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_pages_render_for_an_operator(client, job):
    client.force_login(staff("view_job", "change_job"))
    for name, args in [
        ("console:dashboard", []),
        ("console:dashboard_live", []),
        ("console:job_detail", [job.pk]),
        ("console:job_live", [job.pk]),
        ("console:review", [job.pk]),
    ]:
        resp = client.get(reverse(name, args=args))
        assert resp.status_code == 200, name
    page = client.get(reverse("console:job_detail", args=[job.pk])).content.decode()
    assert "Composition" in page and "Re-run from stage" in page


def test_anonymous_users_go_to_login_and_non_staff_get_403(client, job):
    url = reverse("console:job_detail", args=[job.pk])
    resp = client.get(url)
    assert resp.status_code == 302 and reverse("admin:login") in resp["Location"]
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert client.get(url).status_code == 403
    client.force_login(staff())
    assert client.get(url).status_code == 403


def test_review_needs_the_review_permission(client, job):
    client.force_login(staff("view_job", "change_job"))
    page = client.get(reverse("console:review", args=[job.pk])).content.decode()
    assert 'id="approve-btn"' not in page and "no-review-perm" in page
    resp = client.post(reverse("console:review_decide", args=[job.pk]), {"decision": "approve"})
    assert resp.status_code == 403
    job.refresh_from_db()
    assert job.status == Job.Status.AWAITING_REVIEW

    client.force_login(staff("view_job", "review_job"))
    resp = client.post(
        reverse("console:review_decide", args=[job.pk]),
        {"decision": "request_changes", "from_stage": "script_generation"},
    )
    assert resp.status_code == 302
    job.refresh_from_db()
    assert job.status == Job.Status.AWAITING_REVIEW  # refused: notes are required
    client.post(reverse("console:review_decide", args=[job.pk]), {"decision": "approve", "notes": "good"})
    job.refresh_from_db()
    assert job.status == Job.Status.PUBLISHING
    assert job.reviews.get().decided_by.username == "op-view_job-review_job"


def test_actions_go_through_the_orchestrator_and_refuse_bad_states(client, job):
    client.force_login(staff("view_job", "change_job"))
    url = reverse("console:job_action", args=[job.pk, "retry"])
    resp = client.post(url, follow=True)
    assert "only failed or cancelled jobs resume" in resp.content.decode()
    client.post(reverse("console:job_action", args=[job.pk, "cancel"]))
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    client.post(reverse("console:job_action", args=[job.pk, "retry"]))
    job.refresh_from_db()
    assert job.status == Job.Status.AWAITING_REVIEW  # every stage had its checkpoint: straight back to review
    assert client.get(reverse("console:job_action", args=[job.pk, "cancel"])).status_code == 405


def test_media_serves_ranges_and_refuses_traversal_and_foreign_jobs(client, job, engine, theme):
    client.force_login(staff("view_job"))
    art = Artifact.objects.filter(job=job).first()
    url = reverse("console:media", args=[job.pk, art.pk])
    full = b"".join(client.get(url).streaming_content)
    assert len(full) == art.size
    resp = client.get(url, HTTP_RANGE="bytes=2-5")
    assert resp.status_code == 206
    assert resp["Content-Range"] == f"bytes 2-5/{art.size}"
    assert b"".join(resp.streaming_content) == full[2:6]
    assert client.get(url, HTTP_RANGE=f"bytes={art.size + 10}-").status_code == 416
    other = Job.objects.create(theme=theme)
    assert client.get(reverse("console:media", args=[other.pk, art.pk])).status_code == 404
    Artifact.objects.filter(pk=art.pk).update(path="../../../etc/passwd")
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302


def test_run_now_and_batch_start_jobs(client, theme, engine):
    client.force_login(staff("view_job", "add_job"))
    client.post(reverse("console:theme_run", args=[theme.pk]), {"count": "1"})
    client.post(reverse("console:theme_run", args=[theme.pk]), {"count": "3"})
    jobs = list(Job.objects.order_by("id"))
    assert len(jobs) == 4
    assert [j.params.get("topic_rank") for j in jobs[1:]] == [0, 1, 2]
    for bad in ("99", "-5", "0", "two", "", "1.5"):
        resp = client.post(reverse("console:theme_run", args=[theme.pk]), {"count": bad}, follow=True)
        assert "Not started: a batch is 1 to 20 jobs" in resp.content.decode(), bad
    assert Job.objects.count() == 4


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "/\\evil.example/x",
        "\\\\evil.example/x",
        "https://evil.example/x",
        "http://evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        " //evil.example",
        "https:///evil.example",
    ],
)
def test_job_actions_never_redirect_off_site(client, job, target):
    client.force_login(staff("view_job", "change_job"))
    home = reverse("console:job_detail", args=[job.pk])
    resp = client.post(reverse("console:job_action", args=[job.pk, "cancel"]), {"next": target})
    assert resp.status_code == 302 and resp["Location"] == home
    resp = client.post(
        reverse("console:job_action", args=[job.pk, "retry"]), {"next": target}, headers={"HX-Request": "true"}
    )
    assert resp.status_code == 204 and resp["HX-Redirect"] == home


def test_job_actions_follow_a_local_next(client, job):
    client.force_login(staff("view_job", "change_job"))
    resp = client.post(reverse("console:job_action", args=[job.pk, "cancel"]), {"next": "/console/?x=1"})
    assert resp["Location"] == "/console/?x=1"


def test_the_job_page_masks_the_jobs_secrets(client, theme):
    theme.settings = {"voiceover": {"openai": {"api_key": "sk-console-secret-1"}}}
    theme.save()
    job = orchestrator.start_job(theme, params={"n": 1})
    Job.objects.filter(pk=job.pk).update(
        status="failed", error_stage="voiceover", error_message="401 for sk-console-secret-1", error_hint="x"
    )
    job.runs.update(
        status="failed",
        error_kind="permanent",
        error_message="refused sk-console-secret-1",
        error_traceback="Traceback: key=sk-console-secret-1",
        log_tail="POST with sk-console-secret-1",
        output={"api_key": "sk-console-secret-1", "echo": "sk-console-secret-1"},
    )
    client.force_login(staff("view_job"))
    for name in ("console:job_detail", "console:job_live"):
        page = client.get(reverse(name, args=[job.pk])).content.decode()
        assert "sk-console-secret-1" not in page and "********" in page, name
