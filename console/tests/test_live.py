"""The job page's poll answers only what changed (console/live.py): nothing (204) when the page is up
to date, the stage table when only progress moved, and out of band only the attempts whose status
changed (never a player or a traceback of another attempt); it stops at rest. The dashboard too."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from console.tests.livejob import running_job
from jobs.models import Job, StageRun

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status


@pytest.fixture
def operator(client):
    user = User.objects.create_user("op", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_job", "change_job"]))
    client.force_login(user)
    return client


def poll_vals(page: str, element: str = "job-progress") -> dict:
    """The hx-vals the page's polling element sends with its next request."""
    tag = re.search(rf'<div[^>]*id="{element}"[^>]*>', page, re.S).group(0)
    return json.loads(html.unescape(re.search(r'hx-vals="([^"]*)"', tag).group(1)))


def poll(client, job: Job, vals: dict):
    return client.get(reverse("console:job_live", args=[job.pk]), vals, headers={"HX-Request": "true"})


def polling(page: str, element: str = "job-progress") -> str:
    return re.search(rf'id="{element}"[^>]*data-polling="(on|off)"', page, re.S).group(1)


def test_a_poll_that_has_seen_everything_gets_204(operator, theme):
    live = running_job(theme)
    page = operator.get(reverse("console:job_detail", args=[live.job.pk])).content.decode()
    vals = poll_vals(page)
    assert vals["status"] == "running" and f"{live.failed.pk}:failed" in vals["runs"]
    assert polling(page) == "on"
    for _ in range(3):  # nothing moved: nothing to swap
        resp = poll(operator, live.job, vals)
        assert resp.status_code == 204 and resp.content == b""


def test_progress_alone_sends_the_stage_table_alone(operator, theme):
    live = running_job(theme)
    vals = poll_vals(operator.get(reverse("console:job_detail", args=[live.job.pk])).content.decode())
    StageRun.objects.filter(pk=live.running.pk).update(progress=0.55, message="scene 4 of 7")
    resp = poll(operator, live.job, vals)
    assert resp.status_code == 200
    fragment = resp.content.decode()
    assert 'id="stage-table"' in fragment and "scene 4 of 7" in fragment
    assert "hx-swap-oob" not in fragment  # no header, no attempts, no players, no tracebacks
    assert "<video" not in fragment and "<audio" not in fragment and "Traceback" not in fragment
    again = poll_vals(fragment)
    assert again["table"] != vals["table"] and again["runs"] == vals["runs"]
    assert poll(operator, live.job, again).status_code == 204


def test_a_status_change_sends_only_the_attempts_it_touched(operator, theme):
    live = running_job(theme)
    vals = poll_vals(operator.get(reverse("console:job_detail", args=[live.job.pk])).content.decode())
    now = timezone.now()
    StageRun.objects.filter(pk=live.running.pk).update(
        status=RS.FAILED, finished_at=now, error_kind="transient", error_message="encoder died"
    )
    retry = StageRun.objects.create(
        job=live.job, stage="composition", attempt=3, status=RS.QUEUED, reason="retry 1 of 3", queued_at=now
    )
    fragment = poll(operator, live.job, vals).content.decode()
    # the stage table, the changed attempt in place, the new one on top of the list
    assert 'id="job-progress"' in fragment
    assert re.search(rf'<details[^>]*id="run-{live.running.pk}"[^>]*hx-swap-oob="true"', fragment)
    new = fragment[fragment.index('hx-swap-oob="afterbegin:#attempt-list"') :]
    assert f'id="run-{retry.pk}"' in new
    assert 'id="job-timeline" hx-swap-oob="true"' in fragment and 'id="job-records" hx-swap-oob="true"' in fragment
    # nothing else: the job's status did not change, the other attempts (their players, their
    # tracebacks) are not sent
    assert 'id="job-header"' not in fragment
    for other in (live.failed, live.voice, live.video):
        assert f'id="run-{other.pk}"' not in fragment
    assert "<video" not in fragment and "<audio" not in fragment and "voice went quiet" not in fragment
    assert poll(operator, live.job, poll_vals(fragment)).status_code == 204


def test_the_page_stops_polling_at_rest_and_the_header_follows_the_status(operator, theme):
    live = running_job(theme)
    vals = poll_vals(operator.get(reverse("console:job_detail", args=[live.job.pk])).content.decode())
    StageRun.objects.filter(pk=live.running.pk).update(status=RS.SUCCEEDED, finished_at=timezone.now(), progress=1)
    Job.objects.filter(pk=live.job.pk).update(status=Job.Status.AWAITING_REVIEW)
    fragment = poll(operator, live.job, vals).content.decode()
    assert 'id="job-header" hx-swap-oob="true"' in fragment and 'id="review-link"' in fragment
    assert polling(fragment) == "off"
    tag = re.search(r'<div[^>]*id="job-progress"[^>]*>', fragment, re.S).group(0)
    assert "every" not in tag and 'hx-trigger="job-changed from:body"' in tag  # an action can wake it
    page = operator.get(reverse("console:job_detail", args=[live.job.pk])).content.decode()
    assert polling(page) == "off"


def test_a_poll_without_a_state_gets_everything(operator, theme):
    live = running_job(theme)
    fragment = poll(operator, live.job, {}).content.decode()
    for part in ("job-header", "job-timeline", "job-attempts", "job-records", "job-analysis-slot"):
        assert f'id="{part}" hx-swap-oob="true"' in fragment, part
    assert fragment.count("<video") == 1 and "voice went quiet" in fragment
    bad = poll(operator, live.job, {"status": "running", "runs": "x:y", "table": "z"})
    assert bad.status_code == 200 and 'id="job-attempts" hx-swap-oob="true"' in bad.content.decode()


def test_the_dashboard_answers_204_while_nothing_changed(operator, theme):
    live = running_job(theme)
    page = operator.get(reverse("console:dashboard")).content.decode()
    assert polling(page, "dashboard-body") == "on"
    vals = poll_vals(page, "dashboard-body")
    url = reverse("console:dashboard_live")
    assert operator.get(url, vals, headers={"HX-Request": "true"}).status_code == 204
    StageRun.objects.filter(pk=live.running.pk).update(progress=0.8, message="muxing")
    resp = operator.get(url, vals, headers={"HX-Request": "true"})
    assert resp.status_code == 200 and "muxing" in resp.content.decode()
    assert poll_vals(resp.content.decode(), "dashboard-body") != vals
    Job.objects.filter(pk=live.job.pk).update(status=Job.Status.FAILED)
    rest = operator.get(url, vals, headers={"HX-Request": "true"}).content.decode()
    assert polling(rest, "dashboard-body") == "off" and 'id="dashboard-body" hx-get' not in rest
