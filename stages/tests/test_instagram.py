"""publish -> instagram: a Reel through the Graph API's resumable upload against a local fake that
follows the documented flow, limits and errors; exactly once per job."""

from __future__ import annotations

import json

import pytest

from jobs.models import Publication
from stages import publish
from stages.base import PermanentStageError, TransientStageError
from stages.tests.fakeplatforms import FakeInstagram
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.test_webhook import SCRIPT, publish_ctx

TOKEN = "EAAG-instagram-test"
USER = "17841400000000001"
V = "/v21.0"


def ig_settings(srv: FakeServer, **extra) -> dict:
    return {
        "destinations": ["instagram"],
        "instagram": {
            "access_token": TOKEN,
            "user_id": USER,
            "graph_url": srv.url(),
            "upload_url": srv.url(),
            "poll_interval": 0,
            "timeout": 5,
            **extra,
        },
    }


def steps(srv: FakeServer) -> list[str]:
    """What the client asked, in order, by Graph step."""
    names = []
    for r in srv.requests:
        if r.path.startswith("/ig-api-upload/"):
            names.append("upload")
        elif r.path.endswith("/content_publishing_limit"):
            names.append("limit")
        elif r.path.endswith("/media_publish"):
            names.append("publish")
        elif r.path == f"{V}/{USER}/media":
            names.append("create" if r.method == "POST" else "list")
        else:
            names.append("read")
    return names


@pytest.mark.django_db
def test_it_publishes_a_reel_following_the_documented_flow(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        out = publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv))).output

    assert steps(srv) == ["limit", "create", "upload", "read", "read", "publish", "read"]
    create = next(r for r in srv.requests if r.method == "POST" and r.path == f"{V}/{USER}/media")
    form = dict(p.split("=", 1) for p in create.body.decode().split("&"))
    assert form["media_type"] == "REELS" and form["upload_type"] == "resumable" and form["share_to_feed"] == "true"
    upload = next(r for r in srv.requests if r.path.startswith("/ig-api-upload/"))
    assert upload.headers["authorization"] == f"OAuth {TOKEN}"
    assert upload.headers["offset"] == "0" and upload.headers["file_size"] == "2573"
    assert all("access_token" not in r.query for r in srv.requests)  # tokens travel in headers only
    (container,) = fake.containers.values()
    assert container["data"] == (composed / "video.mp4").read_bytes()
    assert container["caption"] == f"{SCRIPT['title']}\n\n#AI #RaspberryPi #OpenSource"

    (media_id,) = fake.media
    ig = out["destinations"]["instagram"]
    assert ig["video_id"] == media_id and ig["url"] == fake.media[media_id]["permalink"]
    assert ig["already_published"] is False and ig["resumed"] is False
    row = Publication.objects.get(job=job, destination="instagram")
    assert row.meta["state"] == "published" and row.meta["found_by"] == "publish" and "session" not in row.meta
    assert TOKEN not in json.dumps(out)


@pytest.mark.django_db
def test_a_crash_after_the_upload_publishes_the_same_container(tmp_path, job, composed, monkeypatch):
    from stages.providers.instagram import InstagramPublisher

    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        monkeypatch.setattr(InstagramPublisher, "wait_finished", lambda *a: (_ for _ in ()).throw(SystemExit(9)))
        with pytest.raises(SystemExit):
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
        monkeypatch.undo()
        session = Publication.objects.get(job=job, destination="instagram").meta["session"]
        assert session["uploaded"] is True and "publish_asked" not in session

        srv.requests.clear()
        out = publish.run(publish_ctx(tmp_path / "retry", job, composed, ig_settings(srv))).output
    assert steps(srv) == ["read", "read", "publish", "read"]  # no new container, no second upload
    assert len(fake.containers) == 1 and len(fake.media) == 1
    assert out["destinations"]["instagram"]["resumed"] is True


@pytest.mark.django_db
def test_a_crash_after_publishing_finds_the_reel_instead_of_posting_again(tmp_path, job, composed, monkeypatch):
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        monkeypatch.setattr(
            publish.PublicationSessionStore, "complete", lambda self, **kw: (_ for _ in ()).throw(SystemExit(9))
        )
        with pytest.raises(SystemExit):
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
        monkeypatch.undo()
        srv.requests.clear()
        out = publish.run(publish_ctx(tmp_path / "retry", job, composed, ig_settings(srv))).output
        again = publish.run(publish_ctx(tmp_path / "again", job, composed, ig_settings(srv))).output

    assert steps(srv) == ["read", "list", "read"]  # status PUBLISHED -> the account's latest posts -> its link
    (media_id,) = fake.media
    assert out["destinations"]["instagram"]["video_id"] == media_id
    assert Publication.objects.get(job=job, destination="instagram").meta["found_by"] == "status"
    assert again["destinations"]["instagram"]["already_published"] is True


@pytest.mark.django_db
def test_an_upload_that_never_answered_is_sent_again_into_the_same_container(tmp_path, job, composed):
    busy = Reply(503, json={"debug_info": {"retriable": True, "type": "ServiceUnavailable", "message": "busy"}})
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        fake.fail["upload"] = [busy, busy, busy]
        with pytest.raises(TransientStageError, match="busy"):
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
        srv.requests.clear()
        publish.run(publish_ctx(tmp_path / "retry", job, composed, ig_settings(srv)))
    assert steps(srv)[:2] == ["read", "upload"] and "create" not in steps(srv)
    (container,) = fake.containers.values()
    assert container["data"] == (composed / "video.mp4").read_bytes() and len(fake.media) == 1


@pytest.mark.django_db
def test_a_processing_error_is_permanent_with_metas_reason_and_a_rerun_starts_over(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        original = fake.create

        def create_broken(parts, params):
            reply = original(parts, params)
            for c in fake.containers.values():
                c["error"] = c["error"] or "2207026: unsupported video format"
            return reply

        fake.create = create_broken
        with pytest.raises(PermanentStageError, match="unsupported video format"):
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
        assert Publication.objects.get(job=job, destination="instagram").meta["session"] is None
        fake.create = original
        publish.run(publish_ctx(tmp_path / "rerun", job, composed, ig_settings(srv)))
    assert len(fake.containers) == 2 and len(fake.media) == 1


@pytest.mark.django_db
def test_an_expired_container_is_replaced(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        fake.containers["17900000000000999"] = {
            "caption": "old", "size": 2573, "data": b"", "status_code": "EXPIRED", "uploaded": True,
            "polls": 0, "error": None, "media_id": None, "share_to_feed": "true",
        }  # fmt: skip
        Publication.objects.create(
            job=job,
            destination="instagram",
            meta={"state": "uploading", "session": {"container": "17900000000000999", "uri": "x", "uploaded": True}},
        )
        out = publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv))).output
    assert steps(srv)[:3] == ["read", "limit", "create"]
    assert out["destinations"]["instagram"]["video_id"] in fake.media


@pytest.mark.django_db
def test_a_rate_limit_waits_as_long_as_meta_says(tmp_path, job, composed):
    usage = json.dumps({USER: [{"type": "instagram", "call_count": 100, "estimated_time_to_regain_access": 7}]})
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        fake.fail["create"].append(
            FakeInstagram.error(
                400,
                80002,
                "There have been too many calls to this Instagram account.",
                **{"X-Business-Use-Case-Usage": usage},
            )
        )
        with pytest.raises(TransientStageError, match="80002") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
    assert exc.value.retry_after == 420
    assert not Publication.objects.filter(job=job, destination="instagram").exists()


@pytest.mark.django_db
def test_an_app_rate_limit_without_a_time_waits_a_minute(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        fake.fail["limit"].append(FakeInstagram.error(400, 4, "Application request limit reached"))
        with pytest.raises(TransientStageError) as exc:
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
    assert exc.value.retry_after == 60


@pytest.mark.django_db
def test_a_used_up_publishing_limit_waits_before_making_a_container(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeInstagram(srv, quota_total=0)
        with pytest.raises(TransientStageError, match="0 of 0 posts") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
    assert exc.value.retry_after == 3600 and fake.containers == {}


@pytest.mark.django_db
def test_the_limit_reached_at_publish_keeps_the_container_for_the_retry(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        fake.fail["publish"].append(FakeInstagram.error(403, 9, "Application request limit reached", subcode=2207042))
        with pytest.raises(TransientStageError, match="2207042") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
        assert exc.value.retry_after == 3600
        srv.requests.clear()
        publish.run(publish_ctx(tmp_path / "retry", job, composed, ig_settings(srv)))
    assert steps(srv) == ["read", "read", "publish", "read"]
    assert len(fake.containers) == 1 and len(fake.media) == 1


@pytest.mark.django_db
def test_an_expired_token_is_permanent_and_names_the_setting(tmp_path, job, composed):
    with FakeServer() as srv:
        FakeInstagram(srv, token="EAAG-another")
        with pytest.raises(PermanentStageError, match="190") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv)))
    assert "INSTAGRAM_ACCESS_TOKEN" in exc.value.hint and TOKEN not in exc.value.message


@pytest.mark.django_db
def test_the_token_is_exchanged_for_a_fresh_one_with_the_app_credentials(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        publish.run(publish_ctx(tmp_path, job, composed, ig_settings(srv, app_id="123", app_secret="s3cret")))
    exchange = srv.requests[0]
    assert exchange.path == f"{V}/oauth/access_token" and "grant_type=fb_exchange_token" in exchange.query
    assert {r.headers["authorization"] for r in srv.requests[1:]} == {"OAuth EAAG-exchanged-1"}
    assert len(fake.media) == 1


@pytest.mark.django_db
def test_the_caption_fits_instagrams_limits(tmp_path, job, composed):
    script = {
        **SCRIPT,
        "title": ("Big news for @maker " * 30) + "x" * 2000,
        "hashtags": [f"#Tag{i}" for i in range(40)],
    }
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        ctx = publish_ctx(tmp_path, job, composed, ig_settings(srv))
        ctx.upstream["script_generation"] = script
        publish.run(ctx)
    caption = next(iter(fake.containers.values()))["caption"]
    assert len(caption) <= 2200 and caption.count("#Tag") == 30 and caption.count("@") <= 20
    assert caption.split("\n\n")[0].endswith("…")


@pytest.mark.django_db
def test_the_caption_style_chosen_by_analysis_opens_the_caption(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeInstagram(srv)
        ctx = publish_ctx(tmp_path, job, composed, ig_settings(srv))
        ctx.upstream["script_generation"] = {**SCRIPT, "hook": "Wait, a whole AI model on a Pi?"}
        ctx.upstream["trend_analysis"]["patterns"] = {"chosen": {"caption_style": "hook"}}
        publish.run(ctx)
    assert next(iter(fake.containers.values()))["caption"].startswith("Wait, a whole AI model on a Pi?\n\n#AI")
    assert Publication.objects.get(job=job, destination="instagram").meta["patterns"]["caption_style"] == "hook"


@pytest.mark.django_db
def test_a_video_too_long_for_a_reel_fails_before_anything_is_sent(tmp_path, job, composed):
    with FakeServer() as srv:
        FakeInstagram(srv)
        ctx = publish_ctx(tmp_path, job, composed, ig_settings(srv))
        ctx.upstream["composition"]["duration"] = 1200.0
        with pytest.raises(PermanentStageError, match="3 to 900 s"):
            publish.run(ctx)
    assert srv.requests == []


@pytest.mark.django_db
def test_missing_account_settings_fail_before_anything_is_delivered(tmp_path, job, composed, monkeypatch):
    monkeypatch.delenv("INSTAGRAM_USER_ID", raising=False)
    monkeypatch.delenv("INSTAGRAM_ACCESS_TOKEN", raising=False)
    with pytest.raises(PermanentStageError, match="missing user_id") as exc:
        publish.run(publish_ctx(tmp_path, job, composed, {"destinations": ["outbox", "instagram"]}))
    assert "INSTAGRAM_USER_ID" in exc.value.hint
    assert not Publication.objects.filter(job=job).exists()
