"""publish -> webhook: a signed JSON POST, recorded once per job, against a local server."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from jobs.models import Job, Publication
from jobs.tests.factories import approved
from stages import publish
from stages.base import PermanentStageError, TransientStageError
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context

SECRET = "whsec-test-0123456789"
SCRIPT = {
    "title": "A whole AI model on a €80 computer",
    "description": "Fjord-2B runs on a Raspberry Pi 5 — no cloud needed.",
    "hashtags": ["#AI", "#RaspberryPi", "#OpenSource"],
}
TOPIC = {"trend_id": 7, "title": "Nordlys Fjord-2B", "url": "https://thecircuit.example/fjord", "source": "thecircuit"}


def publish_ctx(tmp_path: Path, job: Job, composed: Path, settings: dict | None = None, *, log=None):
    ctx = make_context(
        tmp_path,
        "publish",
        theme={"slug": "tech-pulse-net-publish", "settings": {"publish": settings or {}}},
        upstream={
            "composition": {
                "video": "video.mp4",
                "thumbnail": "thumbnail.jpg",
                "duration": 21.5,
                "qc": {"width": 1080, "height": 1920},
            },
            "trend_analysis": {"topic": TOPIC},
            "script_generation": SCRIPT,
        },
        upstream_dirs={"composition": composed},
        progress_log=log,
    )
    ctx.job_id = job.pk
    return ctx


def hook_settings(srv: FakeServer, **extra) -> dict:
    return {
        "destinations": ["outbox", "webhook"],
        "webhook": {"url": srv.url("/hooks/trendreel?token=abc123"), "secret": SECRET, **extra},
    }


def verify(seen) -> None:
    expected = "sha256=" + hmac.new(SECRET.encode(), seen.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(seen.headers["x-trendreel-signature"], expected)


@pytest.mark.django_db
def test_it_posts_a_signed_payload_and_records_it(tmp_path, job, composed, settings):
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", Reply(202, json={"ok": True}))
        out = publish.run(
            publish_ctx(tmp_path, job, composed, hook_settings(srv, video_url="https://cdn.example/{job_id}/video.mp4"))
        ).output

    assert len(srv.requests) == 1
    seen = srv.requests[0]
    verify(seen)
    delivery = hashlib.sha256(f"{job.pk}:webhook".encode()).hexdigest()
    assert seen.headers["x-trendreel-delivery"] == delivery
    assert seen.headers["content-type"].startswith("application/json")
    assert seen.query == "token=abc123"
    body = seen.json()
    assert body["delivery_id"] == delivery and body["job_id"] == job.pk and body["event"] == "video.published"
    assert body["title"] == SCRIPT["title"] and body["description"] == SCRIPT["description"]
    assert body["hashtags"] == SCRIPT["hashtags"] and body["duration"] == 21.5
    assert [s["url"] for s in body["sources"]] == [TOPIC["url"]]
    outbox_folder = Path(settings.OUTBOX_DIR) / str(job.pk)
    assert body["video"]["path"] == str(outbox_folder / "video.mp4")  # the outbox copy, delivered first
    assert body["video"]["url"] == f"https://cdn.example/{job.pk}/video.mp4"
    assert body["video"]["bytes"] == 2573 and len(body["video"]["sha256"]) == 64
    assert body["thumbnail"]["path"] == str(outbox_folder / "thumbnail.jpg")
    assert body["published"]["outbox"]["location"] == str(outbox_folder)

    row = Publication.objects.get(job=job, destination="webhook")
    assert row.meta["status_code"] == 202 and row.meta["state"] == "published" and row.external_id == delivery
    assert "abc123" not in row.location  # query strings may carry tokens
    assert out["destinations"]["webhook"]["already_published"] is False
    assert out["destinations"]["webhook"]["status_code"] == 202
    assert out["destination"] == "outbox" and out["files_present"] is True  # the old keys still describe the outbox
    receipt = (tmp_path / "publish" / "attempt-1.partial" / "publication.json").read_text()
    assert SECRET not in receipt and SECRET not in json.dumps(out)


@pytest.mark.django_db
def test_a_second_run_sends_nothing(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", Reply(200))
        publish.run(publish_ctx(tmp_path, job, composed, hook_settings(srv)))
        again = publish.run(publish_ctx(tmp_path / "retry", job, composed, hook_settings(srv))).output
    assert len(srv.requests) == 1
    assert again["already_published"] is True
    assert again["destinations"]["webhook"]["already_published"] is True
    assert again["destinations"]["outbox"]["already_published"] is True


@pytest.mark.django_db
def test_settings_may_come_from_the_environment(tmp_path, job, composed, monkeypatch):
    with FakeServer() as srv:
        srv.route("POST", "/in", Reply(204))
        monkeypatch.setenv("TRENDREEL_WEBHOOK_URL", srv.url("/in"))
        monkeypatch.setenv("TRENDREEL_WEBHOOK_SECRET", SECRET)
        out = publish.run(publish_ctx(tmp_path, job, composed, {"destinations": ["webhook"]})).output
    verify(srv.requests[0])
    assert out["destination"] == "webhook" and out["destinations"]["webhook"]["status_code"] == 204
    assert srv.requests[0].json()["video"]["path"] == str(composed / "video.mp4")  # no outbox: the checkpoint file
    assert not Publication.objects.filter(job=job, destination="outbox").exists()


@pytest.mark.django_db
def test_a_429_with_retry_after_is_retried_with_the_same_delivery(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", [Reply(429, headers={"Retry-After": "0"}), Reply(200)])
        publish.run(publish_ctx(tmp_path, job, composed, hook_settings(srv)))
    assert len(srv.requests) == 2
    first, second = srv.requests
    assert first.body == second.body
    assert first.headers["x-trendreel-delivery"] == second.headers["x-trendreel-delivery"]
    verify(second)


@pytest.mark.django_db
def test_a_long_retry_after_fails_transient_and_the_retry_skips_the_outbox(tmp_path, job, composed, settings):
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", [Reply(429, headers={"Retry-After": "90"}), Reply(200)])
        with pytest.raises(TransientStageError, match="webhook") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, hook_settings(srv)))
        assert exc.value.retry_after == 90
        assert "delivered, not repeated on retry: outbox" in exc.value.message
        assert Publication.objects.filter(job=job, destination="outbox").exists()
        assert not Publication.objects.filter(job=job, destination="webhook").exists()
        folder = Path(settings.OUTBOX_DIR) / str(job.pk)
        before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

        out = publish.run(publish_ctx(tmp_path / "retry", job, composed, hook_settings(srv))).output
    assert len(srv.requests) == 2
    assert out["destinations"]["outbox"]["already_published"] is True
    assert out["destinations"]["webhook"]["already_published"] is False
    assert out["already_published"] is False
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


@pytest.mark.django_db
def test_a_500_then_success(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", [Reply(500, body=b"oops"), Reply(200)])
        out = publish.run(publish_ctx(tmp_path, job, composed, hook_settings(srv))).output
    assert len(srv.requests) == 2 and out["destinations"]["webhook"]["status_code"] == 200


@pytest.mark.django_db
def test_a_401_is_permanent_and_names_the_secret(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", Reply(401, json={"error": f"bad signature for {SECRET}"}))
        with pytest.raises(PermanentStageError) as exc:
            publish.run(publish_ctx(tmp_path, job, composed, hook_settings(srv)))
    assert len(srv.requests) == 1
    assert "TRENDREEL_WEBHOOK_SECRET" in exc.value.hint
    assert SECRET not in exc.value.message
    assert not Publication.objects.filter(job=job, destination="webhook").exists()
    assert Publication.objects.filter(job=job, destination="outbox").exists()  # attempted and kept


@pytest.mark.django_db
def test_a_timeout_is_transient(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", Reply(200, delay=1.0))
        with pytest.raises(TransientStageError, match="timed out"):
            publish.run(publish_ctx(tmp_path, job, composed, hook_settings(srv, timeout=0.2)))
    assert not Publication.objects.filter(job=job, destination="webhook").exists()


@pytest.mark.django_db
def test_a_2xx_with_a_malformed_body_still_counts_but_a_redirect_does_not(tmp_path, job, composed):
    # The contract is the status code: receivers answer whatever they like.
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", Reply(200, body=b"{not json"))
        out = publish.run(publish_ctx(tmp_path, job, composed, hook_settings(srv))).output
    assert out["destinations"]["webhook"]["status_code"] == 200

    other = approved(Job.objects.create(theme=job.theme))
    with FakeServer() as srv:
        srv.route("POST", "/hooks/trendreel", Reply(302, headers={"Location": "https://elsewhere.example/"}))
        with pytest.raises(PermanentStageError, match="HTTP 302") as exc:
            publish.run(publish_ctx(tmp_path / "other", other, composed, hook_settings(srv)))
    assert len(srv.requests) == 1 and "url" in exc.value.hint
    assert not Publication.objects.filter(job=other, destination="webhook").exists()


@pytest.mark.django_db
def test_a_missing_secret_fails_before_anything_is_delivered(tmp_path, job, composed, monkeypatch, settings):
    monkeypatch.delenv("TRENDREEL_WEBHOOK_SECRET", raising=False)
    with pytest.raises(PermanentStageError, match="missing secret") as exc:
        publish.run(
            publish_ctx(
                tmp_path,
                job,
                composed,
                {"destinations": ["outbox", "webhook"], "webhook": {"url": "http://127.0.0.1:9/x"}},
            )
        )
    assert "TRENDREEL_WEBHOOK_SECRET" in exc.value.hint
    assert not Publication.objects.filter(job=job).exists()
    assert not (Path(settings.OUTBOX_DIR) / str(job.pk)).exists()


@pytest.mark.django_db
def test_an_unknown_destination_is_refused_up_front(tmp_path, job, composed):
    with pytest.raises(PermanentStageError, match="provider 'myspace' is unknown"):
        publish.run(publish_ctx(tmp_path, job, composed, {"destinations": ["outbox", "myspace"]}))
    assert not Publication.objects.filter(job=job).exists()
