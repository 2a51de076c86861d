"""Targeted edits through the JSON API: 202 with the plan, 409 while running, 422 per edit, uploads."""

from __future__ import annotations

import io
import random

import pytest
from django.test import Client
from PIL import Image

from console.api import MAX_BODY
from console.models import ApiToken
from console.tests.test_api import ALL_PERMS, auth, make_user, post
from jobs import orchestrator
from jobs.models import Job, JobEdit, StageRun
from jobs.orchestrator import gate
from jobs.tests.conftest import params
from jobs.tests.stagefns import calls
from jobs.tests.test_edits import approve_and_fail_publish, assert_needs_a_new_review

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def in_review(engine, theme, call_log, tmp_path) -> Job:
    job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    call_log.write_text("")
    return job


@pytest.fixture
def tokens(db) -> dict[str, str]:
    return {perm: ApiToken.issue(make_user(f"u-{perm}", perm), perm)[1] for perm in ALL_PERMS}


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 70), (10, 200, 90)).save(buf, format="PNG")
    return buf.getvalue()


def upload(client: Client, job_id: int, raw: str, data: bytes, name: str = "scene.png"):
    return client.post(f"/api/jobs/{job_id}/uploads", {"file": _named(data, name)}, headers=auth(raw))


def _named(data: bytes, name: str):
    f = io.BytesIO(data)
    f.name = name
    return f


def test_an_edit_answers_202_with_the_plan_and_is_on_the_job(client, tokens, in_review, call_log):
    url = f"/api/jobs/{in_review.pk}/edits"
    body = {"edits": [{"kind": "caption", "index": 2, "text": "On screen"}], "notes": "clearer"}
    resp = post(client, url, body, tokens["change_job"])
    assert resp.status_code == 202, resp.content
    record = JobEdit.objects.get()
    assert resp.json() == {
        "job": in_review.pk,
        "edit": record.pk,
        "stages": ["composition"],
        "items": ["caption 2", "composition"],
    }
    assert (record.user.username, record.notes) == ("u-change_job", "clearer")

    # running now: a second edit is a conflict
    resp = post(client, url, body, tokens["change_job"])
    assert resp.status_code == 409 and "running" in resp.json()["detail"]

    job = orchestrator.run_inline(in_review.pk)
    assert job.status == Job.Status.AWAITING_REVIEW and calls(call_log) == [("composition", 2)]
    detail = client.get(f"/api/jobs/{job.pk}", headers=auth(tokens["view_job"])).json()
    (shown,) = detail["edits"]
    assert shown["by"] == "u-change_job" and shown["notes"] == "clearer" and shown["stages"] == ["composition"]
    assert shown["edits"] == [{"kind": "caption", "index": 2, "text": "On screen"}]


def test_invalid_edits_are_422_with_one_entry_each(client, tokens, in_review):
    url = f"/api/jobs/{in_review.pk}/edits"
    body = {
        "edits": [
            {"kind": "caption", "index": 7, "text": "x"},
            {"kind": "scene", "index": 1, "upload": "0123456789abcdef.png"},
            {"kind": "scene", "index": 2},
        ]
    }
    resp = post(client, url, body, tokens["change_job"])
    assert resp.status_code == 422
    errors = resp.json()["errors"]
    assert [(e["edit"], e["field"]) for e in errors] == [(1, "index"), (2, "upload"), (3, "")]
    assert "segments 1 to 3" in errors[0]["message"]
    # malformed items are refused by the schema (422 too), unknown fields included
    for bad in (
        {"kind": "font", "index": 1},
        {"kind": "caption", "index": 0, "text": "x"},
        {"kind": "caption", "index": 1, "text": "x", "size": 3},
    ):
        assert post(client, url, {"edits": [bad]}, tokens["change_job"]).status_code == 422
    assert post(client, url, {"edits": []}, tokens["change_job"]).status_code == 422
    assert not JobEdit.objects.exists() and Job.objects.get(pk=in_review.pk).status == Job.Status.AWAITING_REVIEW


def test_edits_need_change_job_and_a_known_job(client, tokens, in_review):
    body = {"edits": [{"kind": "caption", "index": 1, "text": "x"}]}
    for perm in ALL_PERMS:
        if perm != "change_job":
            resp = post(client, f"/api/jobs/{in_review.pk}/edits", body, tokens[perm])
            assert resp.status_code == 403 and "change_job" in resp.json()["detail"]
            resp = client.post(
                f"/api/jobs/{in_review.pk}/uploads", {"file": _named(png(), "a.png")}, headers=auth(tokens[perm])
            )
            assert resp.status_code == 403
    assert post(client, "/api/jobs/999999/edits", body, tokens["change_job"]).status_code == 404
    assert upload(client, 999999, tokens["change_job"], png()).status_code == 404
    assert not JobEdit.objects.exists()


def test_an_approval_before_an_api_edit_does_not_cover_it(client, tokens, engine, in_review, reviewer):
    job = approve_and_fail_publish(engine, in_review, reviewer)
    body = {"edits": [{"kind": "caption", "index": 1, "text": "x"}]}
    assert post(client, f"/api/jobs/{job.pk}/edits", body, tokens["change_job"]).status_code == 202
    assert_needs_a_new_review(job, reviewer)


def test_an_uploaded_scene_is_checked_then_named_by_an_edit(client, tokens, in_review, settings):
    raw = tokens["change_job"]
    resp = upload(client, in_review.pk, raw, png())
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["media"] == "image" and body["created"]
    assert upload(client, in_review.pk, raw, png()).status_code == 200  # the same content again
    # spoofed types: refused by content, whatever the name
    assert upload(client, in_review.pk, raw, b"plain text\n", "photo.png").status_code == 422
    html = upload(client, in_review.pk, raw, b"<html><body>hi</body></html>", "clip.mp4")
    assert html.status_code == 422 and "not an image or clip" in html.json()["detail"]
    assert upload(client, in_review.pk, raw, png()[:60], "cut.png").status_code == 422
    noise = io.BytesIO()
    Image.frombytes("RGB", (300, 300), random.Random(1).randbytes(270_000)).save(noise, "PNG")
    assert len(noise.getvalue()) > 4 * MAX_BODY  # the uploads' own cap, not the API's 64 KiB
    assert upload(client, in_review.pk, raw, noise.getvalue()).status_code == 201
    settings.TRENDREEL_UPLOAD_MB = 1
    big = upload(client, in_review.pk, raw, png() + b"\0" * (2 * 1024 * 1024))
    assert big.status_code == 413  # over the cap: refused before the body is read

    edit = {"kind": "scene", "index": 2, "upload": body["upload"]}
    resp = post(client, f"/api/jobs/{in_review.pk}/edits", {"edits": [edit]}, raw)
    assert resp.status_code == 202 and resp.json()["stages"] == ["scene_generation", "composition"]
    job = orchestrator.run_inline(in_review.pk)
    scenes = job.runs.get(stage="scene_generation", status=StageRun.Status.SUCCEEDED, superseded_at=None).output
    assert scenes["overrides"]["segments"]["2"]["scene"] == {
        "take": 1,
        "upload": f"jobs/{job.pk}/uploads/{body['upload']}",
        "media": "image",
    }
    assert gate.problem(job.pk) is not None  # the new composition waits for a review
