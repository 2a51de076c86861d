"""Targeted edits from the console: the form on the job and review pages, its permission, its history."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from console.tests.test_views import staff
from jobs import orchestrator
from jobs.models import Job, JobEdit
from jobs.tests.conftest import params
from jobs.tests.stagefns import calls
from jobs.tests.test_edits import approve_and_fail_publish, assert_needs_a_new_review

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job(engine, theme, call_log, tmp_path) -> Job:
    job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
    call_log.write_text("")
    return job


def edit(client: Client, job: Job, **fields):
    return client.post(reverse("console:job_edit", args=[job.pk]), fields)


def flash(client: Client, job: Job) -> str:
    return client.get(reverse("console:job_detail", args=[job.pk])).content.decode()


@pytest.mark.parametrize("page", ["console:job_detail", "console:review"])
def test_the_form_is_on_both_pages_for_who_may_change_jobs(client, job, page):
    client.force_login(staff("view_job"))
    html = client.get(reverse(page, args=[job.pk])).content.decode()
    assert 'id="edit-form"' not in html
    client.force_login(staff("view_job", "change_job"))
    html = client.get(reverse(page, args=[job.pk])).content.decode()
    assert 'id="edit-form"' in html and 'enctype="multipart/form-data"' in html
    assert "3 · Card 2" in html  # the segments, numbered from 1, with their headline


def test_a_viewer_may_not_edit(client, job):
    client.force_login(staff("view_job"))
    assert edit(client, job, kind="caption", index="1", text="x").status_code == 403
    assert not JobEdit.objects.exists()


def test_a_caption_edit_from_the_review_page(client, job, call_log):
    user = staff("view_job", "change_job")
    client.force_login(user)
    back = reverse("console:review", args=[job.pk])
    resp = edit(client, job, kind="caption", index="2", text="Clearer", notes="typo", next=back, headline="ignored")
    assert resp.status_code == 302 and resp["Location"] == back
    record = JobEdit.objects.get()
    assert (record.user, record.notes, record.edits) == (
        user,
        "typo",
        [{"kind": "caption", "index": 2, "text": "Clearer"}],
    )
    assert "caption 2, composition will be redone" in flash(client, job)
    job = orchestrator.run_inline(job.pk)
    assert calls(call_log) == [("composition", 2)]
    html = client.get(reverse("console:review", args=[job.pk])).content.decode()
    assert 'id="edit-history"' in html and "caption 2: &quot;Clearer&quot;" in html and "typo" in html


def test_bad_edits_and_bad_files_are_explained_and_change_nothing(client, job):
    client.force_login(staff("view_job", "change_job"))
    edit(client, job, kind="caption", index="7", text="x")
    assert "Edit not made: edit 1 index: is 7" in flash(client, job)
    fake = io.BytesIO(b"<html>not a picture</html>")
    fake.name = "scene.png"
    edit(client, job, kind="scene", index="1", file=fake)
    assert "not an image or clip" in flash(client, job)
    edit(client, job, kind="scene", index="1")
    assert "exactly one of text, upload or pick" in flash(client, job)
    assert not JobEdit.objects.exists() and Job.objects.get(pk=job.pk).status == Job.Status.AWAITING_REVIEW


def test_an_uploaded_image_replaces_a_scene(client, job, call_log):
    client.force_login(staff("view_job", "change_job"))
    buf = io.BytesIO()
    Image.new("RGB", (40, 60), (9, 9, 200)).save(buf, format="PNG")
    buf.seek(0)
    buf.name = "mine.png"
    edit(client, job, kind="scene", index="3", file=buf)
    (made,) = JobEdit.objects.get().edits
    assert made["upload"].endswith(".png")
    orchestrator.run_inline(job.pk)
    assert calls(call_log) == [("scene_generation", 2), ("composition", 2)]


def test_an_approval_before_a_console_edit_does_not_cover_it(client, engine, job, reviewer):
    job = approve_and_fail_publish(engine, job, reviewer)
    user = staff("view_job", "change_job")
    client.force_login(user)
    edit(client, job, kind="voice", index="", voice="en_US-amy-low")
    assert JobEdit.objects.get().items == ["the whole voice", "composition"]
    assert_needs_a_new_review(job, user)


def test_the_form_says_why_a_running_job_cannot_be_edited(client, job):
    orchestrator.retry_job(job.pk, from_stage="composition")
    client.force_login(staff("view_job", "change_job"))
    html = client.get(reverse("console:job_detail", args=[job.pk])).content.decode()
    assert 'id="edit-blocked"' in html and 'id="edit-form"' not in html
    edit(client, job, kind="caption", index="1", text="x")
    assert "Edit not made" in flash(client, job) and not JobEdit.objects.exists()


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_the_edit_form_never_redirects_off_site(client, job, target):
    client.force_login(staff("view_job", "change_job"))
    resp = edit(client, job, kind="caption", index="1", text="x", next=target)
    assert resp["Location"] == reverse("console:job_detail", args=[job.pk])


def test_the_edit_form_needs_csrf(job):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(staff("view_job", "change_job"))
    assert edit(csrf_client, job, kind="caption", index="1", text="x").status_code == 403
    assert not JobEdit.objects.exists()
