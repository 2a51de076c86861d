"""The live job page in Chromium: its polls leave alone what did not change. An open traceback stays
open and a playing video keeps playing (the same element) through seconds of polls that move the
stage table; a status change brings the new attempt without a reload; at rest the page stops
polling, and an action's ``job-changed`` event wakes it. Screenshots land in test-artifacts/."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from console.tests.livejob import running_job
from console.tests.test_browser import browser, login, make_user, page, shot  # noqa: F401
from jobs.models import Job, StageRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
RS = StageRun.Status


def is_poll(response) -> bool:
    return "/live/" in response.url and response.request.method == "GET"


def open_page(page, base: str, live) -> list[int]:  # noqa: F811
    """Log in, open the job page, record every poll's status code; open the failed attempt's traceback."""
    make_user("watcher", superuser=True)
    login(page, base, "watcher")
    polls: list[int] = []
    page.on("response", lambda r: polls.append(r.status) if is_poll(r) else None)
    page.goto(base + reverse("console:job_detail", args=[live.job.pk]))
    page.evaluate("window.__noReload = 'still here'")
    traceback = page.locator(f"#run-{live.failed.pk}-traceback")
    traceback.locator("summary").click()
    expect(traceback).to_have_attribute("open", "")
    return polls


def test_an_open_traceback_and_a_playing_video_survive_five_seconds_of_polls(page, live_server, theme):  # noqa: F811
    live = running_job(theme, video_seconds=30)
    polls = open_page(page, live_server.url, live)
    page.locator(f"#run-{live.video.pk} > summary").click()  # the superseded composition, its video
    video_id = f"artifact-{live.video.artifacts.get().pk}"
    video = page.locator(f"#{video_id}").element_handle()
    video.evaluate("v => { v.muted = true; return v.play(); }")  # muted: autoplay rules allow it
    start = video.evaluate("v => v.currentTime")
    t0 = page.evaluate("performance.now()")

    # 5 s by the page's clock, and at least 4 polls that brought a new stage table: after each
    # answer the test moves the running stage on, as a worker's heartbeat would
    step, moved = 0, 0
    while page.evaluate("performance.now()") - t0 < 5000 or moved < 4:
        response = page.wait_for_event("response", predicate=is_poll, timeout=10_000)
        moved += response.status == 200
        step += 1
        StageRun.objects.filter(pk=live.running.pk).update(
            progress=min(0.95, 0.1 + step * 0.05), message=f"frame {step}"
        )
    expect(page.locator('tr[data-stage="composition"] .c-message')).to_contain_text("frame")

    assert moved >= 4 and len(polls) >= 5, polls
    assert page.locator(f"#run-{live.failed.pk}-traceback").evaluate("d => d.open") is True
    assert video.evaluate("v => v.isConnected") is True
    assert page.evaluate("([v, id]) => document.getElementById(id) === v", [video, video_id]) is True
    assert video.evaluate("v => v.paused") is False
    assert video.evaluate("v => v.currentTime") > start + 3  # it played through the polls
    assert page.evaluate("window.__noReload") == "still here"
    shot(page, "live-job-running")
    page.goto(live_server.url + reverse("console:dashboard"))
    expect(page.locator("#dashboard-body")).to_have_attribute("data-polling", "on")
    expect(page.locator("#dashboard-body")).to_contain_text("frame")
    shot(page, "live-dashboard")


def test_a_status_change_brings_the_new_attempt_and_rest_stops_the_polls(page, live_server, theme):  # noqa: F811
    live = running_job(theme)
    polls = open_page(page, live_server.url, live)
    assert page.get_attribute("#job-progress", "data-polling") == "on"
    # nothing moved yet: the page's poll, sending what it shows (hx-vals), gets an empty answer
    assert page.wait_for_event("response", predicate=is_poll).status == 204
    audio = page.locator(f"#artifact-{live.voice.artifacts.get().pk}").element_handle()

    # the running composition fails; its retry is queued: both appear without a reload
    now = timezone.now()
    StageRun.objects.filter(pk=live.running.pk).update(
        status=RS.FAILED,
        finished_at=now,
        error_kind="transient",
        error_message="encoder died",
        error_traceback="Traceback (most recent call last):\nOSError: encoder died",
    )
    retry = StageRun.objects.create(
        job=live.job, stage="composition", attempt=3, status=RS.QUEUED, reason="retry 1 of 3", queued_at=now
    )
    expect(page.locator(f"#run-{retry.pk}")).to_be_attached()
    expect(page.locator(f"#run-{live.running.pk}")).to_have_attribute("data-status", "failed")
    assert page.locator("#attempt-list > details").first.get_attribute("id") == f"run-{retry.pk}"
    expect(page.locator(f"#run-{live.running.pk}-traceback")).to_be_attached()
    # what did not change stayed: the open traceback, the voice's player
    assert page.locator(f"#run-{live.failed.pk}-traceback").evaluate("d => d.open") is True
    assert audio.evaluate("a => a.isConnected") is True
    expect(page.locator('tr[data-stage="composition"]')).to_have_attribute("data-status", "queued")

    # the job fails: the header says so and the page stops polling
    StageRun.objects.filter(pk=retry.pk).update(status=RS.CANCELLED, finished_at=timezone.now())
    Job.objects.filter(pk=live.job.pk).update(
        status=Job.Status.FAILED, error_stage="composition", error_kind="transient", error_message="encoder died"
    )
    expect(page.locator("#job-error")).to_contain_text("encoder died")
    expect(page.locator("#job-status")).to_have_text("Failed")
    expect(page.locator("#job-progress")).to_have_attribute("data-polling", "off")
    shot(page, "live-job-failed")
    at_rest = len(polls)
    t0 = page.evaluate("performance.now()")
    page.wait_for_timeout(2500)  # an observation window: a polling page would have asked twice
    assert page.evaluate("performance.now()") - t0 >= 2500 and len(polls) == at_rest, polls

    # an action restarts it (a response with HX-Trigger: job-changed): polling resumes
    Job.objects.filter(pk=live.job.pk).update(status=Job.Status.RUNNING)
    page.evaluate("htmx.trigger(document.body, 'job-changed')")
    expect(page.locator("#job-progress")).to_have_attribute("data-polling", "on")
    expect(page.locator("#job-status")).to_have_text("Running")
    assert page.evaluate("window.__noReload") == "still here"
