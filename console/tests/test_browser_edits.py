"""A targeted edit made from the review page in a real browser (Chromium, Playwright), under the CSP."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from PIL import Image

from console.tests import test_browser as tb
from jobs import orchestrator
from jobs.models import Job, JobEdit
from jobs.tests.conftest import params
from jobs.tests.stagefns import calls

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
browser, page = tb.browser, tb.page  # the browser suite's fixtures (a page fails on any CSP refusal)


def test_an_operator_replaces_a_caption_and_a_scene_from_the_review_page(
    page, live_server, engine, theme, call_log, tmp_path
):
    job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    call_log.write_text("")
    tb.make_user("editor", "view_job", "change_job")
    base, review = live_server.url, reverse("console:review", args=[job.pk])
    tb.login(page, base, "editor")

    page.goto(base + review)
    page.select_option("#edit-kind", "caption")
    page.select_option("#edit-index", "2")
    page.fill("#edit-text", "Nine tokens a second")
    page.fill("#edit-notes", "the number reads better")
    tb.shot(page, "review-edit-form")
    page.click("#edit-btn")
    page.wait_for_selector("text=caption 2, composition will be redone")
    assert page.url.endswith(review)
    record = JobEdit.objects.get()
    assert (record.user.username, record.stages) == ("editor", ["composition"])
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW and calls(call_log) == [("composition", 2)]

    buf = io.BytesIO()
    Image.new("RGB", (90, 160), (250, 120, 0)).save(buf, format="PNG")
    page.goto(base + review)
    page.select_option("#edit-kind", "scene")
    page.select_option("#edit-index", "3")
    page.set_input_files("#edit-file", {"name": "ours.png", "mimeType": "image/png", "buffer": buf.getvalue()})
    page.click("#edit-btn")
    page.wait_for_selector("text=scene 3, composition will be redone")
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    page.goto(base + review)
    history = page.inner_text("#edit-history")
    assert 'caption 2: "Nine tokens a second"' in history and "the number reads better" in history
    assert "scene 3: upload" in history and "editor" in history
    tb.shot(page, "review-edit-history")
