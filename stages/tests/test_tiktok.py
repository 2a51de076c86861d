"""publish -> tiktok: the Content Posting API's direct post against a local fake that follows the
documented flow, chunk rules, errors and limits; exactly once per job."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from jobs.models import Publication
from stages import publish
from stages.base import PermanentStageError, TransientStageError
from stages.providers.tiktok import chunk_plan
from stages.tests.fakeplatforms import MB, FakeTikTok
from stages.tests.fakeserver import FakeServer
from stages.tests.test_webhook import SCRIPT, publish_ctx

TOKEN = "act.tiktok-test"


def tt_settings(srv: FakeServer, **extra) -> dict:
    return {
        "destinations": ["tiktok"],
        "tiktok": {
            "access_token": TOKEN,
            "base_url": srv.url(),
            "privacy_level": "PUBLIC_TO_EVERYONE",
            "poll_interval": 0,
            "timeout": 5,
            **extra,
        },
    }


@pytest.fixture
def big(tmp_path) -> Path:
    """A composition folder with a 16 MiB "video": three chunks of 5 MiB, the last one 6 MiB."""
    folder = tmp_path / "big-composition"
    folder.mkdir()
    (folder / "video.mp4").write_bytes(bytes(range(256)) * (16 * MB // 256))
    (folder / "thumbnail.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def calls(srv: FakeServer, path: str) -> list:
    return [r for r in srv.requests if r.path == path]


INIT = "/v2/post/publish/video/init/"
STATUS = "/v2/post/publish/status/fetch/"
CREATOR = "/v2/post/publish/creator_info/query/"


@pytest.mark.django_db
def test_it_posts_directly_following_the_documented_flow(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        out = publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv))).output

    assert [r.path for r in srv.requests] == [CREATOR, INIT, "/upload/", STATUS, STATUS]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in srv.requests if r.path != "/upload/")
    init = calls(srv, INIT)[0].json()
    post = init["post_info"]
    assert post["title"] == f"{SCRIPT['title']}\n\n#AI #RaspberryPi #OpenSource"
    assert post["privacy_level"] == "PUBLIC_TO_EVERYONE" and post["is_aigc"] is True
    # the creator turned duets off: a post never turns them back on
    assert post["disable_duet"] is True and post["disable_comment"] is False and post["disable_stitch"] is False
    assert init["source_info"] == {
        "source": "FILE_UPLOAD",
        "video_size": 2573,
        "chunk_size": 2573,
        "total_chunk_count": 1,
    }
    put = calls(srv, "/upload/")[0]
    assert put.headers["content-range"] == "bytes 0-2572/2573" and "authorization" not in put.headers
    (publish_id,) = fake.posts
    assert bytes(fake.posts[publish_id]["data"]) == (composed / "video.mp4").read_bytes()

    tt = out["destinations"]["tiktok"]
    post_id = fake.posts[publish_id]["post_id"]
    assert tt["video_id"] == post_id and tt["url"] == f"https://www.tiktok.com/@trendreel/video/{post_id}"
    assert tt["already_published"] is False and tt["resumed"] is False and tt["privacy"] == "PUBLIC_TO_EVERYONE"
    row = Publication.objects.get(job=job, destination="tiktok")
    assert row.meta["state"] == "published" and row.meta["publish_id"] == publish_id and "session" not in row.meta
    assert row.meta["patterns"]["caption_style"] == "title"
    assert TOKEN not in json.dumps(out) and "upload_token" not in json.dumps(out)


def test_the_chunk_plan_follows_the_media_transfer_rules():
    assert chunk_plan(2573, 10 * MB) == (2573, 1)  # under 5 MB: whole
    assert chunk_plan(16 * MB, 5 * MB) == (5 * MB, 3)  # the last chunk takes the remainder
    assert chunk_plan(16 * MB, 1) == (5 * MB, 3)  # never under 5 MB
    assert chunk_plan(200 * MB, 64 * MB) == (64 * MB, 3)
    with pytest.raises(PermanentStageError, match="chunk rules"):
        chunk_plan(6000 * MB, 5 * MB)  # 1200 chunks


@pytest.mark.django_db
def test_a_big_video_goes_in_ordered_chunks(tmp_path, job, big):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        publish.run(publish_ctx(tmp_path, job, big, tt_settings(srv, chunk_bytes=5 * MB)))
    ranges = [r.headers["content-range"] for r in calls(srv, "/upload/")]
    assert ranges == [
        f"bytes 0-{5 * MB - 1}/{16 * MB}",
        f"bytes {5 * MB}-{10 * MB - 1}/{16 * MB}",
        f"bytes {10 * MB}-{16 * MB - 1}/{16 * MB}",
    ]
    assert bytes(next(iter(fake.posts.values()))["data"]) == (big / "video.mp4").read_bytes()


@pytest.mark.django_db
def test_a_crash_mid_upload_resumes_from_the_last_whole_chunk(tmp_path, job, big):
    class Crash(Exception):
        pass

    def crash_after_first_chunk(fraction, message):
        if message.startswith("Uploaded"):
            raise Crash("worker killed")

    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        ctx = publish_ctx(tmp_path, job, big, tt_settings(srv, chunk_bytes=5 * MB))
        ctx.report = crash_after_first_chunk
        with pytest.raises(Crash):
            publish.run(ctx)
        row = Publication.objects.get(job=job, destination="tiktok")
        assert row.meta["state"] == "uploading" and row.meta["session"]["publish_id"] in fake.posts

        srv.requests.clear()
        out = publish.run(publish_ctx(tmp_path / "retry", job, big, tt_settings(srv, chunk_bytes=5 * MB))).output

    assert calls(srv, INIT) == [] and calls(srv, CREATOR) == []  # the same post, not a second one
    assert [r.headers["content-range"].split("/")[0] for r in calls(srv, "/upload/")] == [
        f"bytes {5 * MB}-{10 * MB - 1}",
        f"bytes {10 * MB}-{16 * MB - 1}",
    ]
    (post,) = fake.posts.values()
    assert bytes(post["data"]) == (big / "video.mp4").read_bytes()
    assert (
        out["destinations"]["tiktok"]["resumed"] is True
        and out["destinations"]["tiktok"]["video_id"] == post["post_id"]
    )


@pytest.mark.django_db
def test_a_retry_after_the_post_completed_only_reads_the_result(tmp_path, job, composed, monkeypatch):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        monkeypatch.setattr(
            publish.PublicationSessionStore, "complete", lambda self, **kw: (_ for _ in ()).throw(SystemExit(9))
        )
        with pytest.raises(SystemExit):
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv)))
        monkeypatch.undo()
        srv.requests.clear()
        out = publish.run(publish_ctx(tmp_path / "retry", job, composed, tt_settings(srv))).output
        again = publish.run(publish_ctx(tmp_path / "again", job, composed, tt_settings(srv))).output

    assert [r.path for r in srv.requests] == [STATUS]  # asked once; no init, no byte
    assert len(fake.posts) == 1
    assert out["destinations"]["tiktok"]["resumed"] is True
    assert again["destinations"]["tiktok"]["already_published"] is True


@pytest.mark.django_db
def test_still_processing_is_transient_and_the_retry_only_polls(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeTikTok(srv, processing_polls=3)
        with pytest.raises(TransientStageError, match="still processing") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv, publish_wait=0)))
        assert exc.value.retry_after == 30
        srv.requests.clear()
        publish.run(publish_ctx(tmp_path / "retry", job, composed, tt_settings(srv)))
    assert {r.path for r in srv.requests} == {STATUS} and len(fake.posts) == 1


@pytest.mark.django_db
def test_an_expired_incomplete_upload_starts_a_new_post(tmp_path, job, big):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        ctx = publish_ctx(tmp_path, job, big, tt_settings(srv, chunk_bytes=5 * MB))
        ctx.report = lambda f, m: (_ for _ in ()).throw(KeyboardInterrupt) if m.startswith("Uploaded") else None
        with pytest.raises(KeyboardInterrupt):
            publish.run(ctx)
        row = Publication.objects.get(job=job, destination="tiktok")
        old = row.meta["session"]["publish_id"]
        row.meta["session"]["started"] = (timezone.now() - timedelta(hours=2)).isoformat()  # the URL lived an hour
        row.save()
        fake.posts[old]["expired"] = True
        out = publish.run(publish_ctx(tmp_path / "retry", job, big, tt_settings(srv, chunk_bytes=5 * MB))).output

    assert len(fake.posts) == 2 and fake.posts[old]["status"] == "PROCESSING_UPLOAD"  # the old one never completes
    new = next(p for k, p in fake.posts.items() if k != old)
    assert out["destinations"]["tiktok"]["video_id"] == new["post_id"]


@pytest.mark.django_db
def test_a_failed_post_is_reported_and_forgotten(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        fake.fail["init"] = []
        original = fake.init

        def failing_init(seen):
            reply = original(seen)
            for post in fake.posts.values():
                post["fail_reason"] = post["fail_reason"] or "duration_check_failed"
            return reply

        srv.route("POST", INIT, failing_init)
        with pytest.raises(PermanentStageError, match="duration_check_failed") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv)))
        assert "fail_reason" in exc.value.hint
        assert Publication.objects.get(job=job, destination="tiktok").meta["session"] is None

        srv.route("POST", INIT, original)  # fixed: a re-run posts anew
        publish.run(publish_ctx(tmp_path / "rerun", job, composed, tt_settings(srv)))
    assert len(fake.posts) == 2


@pytest.mark.django_db
def test_a_privacy_level_the_account_does_not_offer_fails_before_init(tmp_path, job, composed):
    with FakeServer() as srv:
        FakeTikTok(srv, privacy_options=("SELF_ONLY",))
        with pytest.raises(PermanentStageError, match="does not offer privacy level PUBLIC_TO_EVERYONE") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv)))
    assert "privacy_level" in exc.value.hint
    assert calls(srv, INIT) == [] and not Publication.objects.filter(job=job, destination="tiktok").exists()


@pytest.mark.django_db
def test_a_video_longer_than_the_account_may_post_fails_before_init(tmp_path, job, composed):
    with FakeServer() as srv:
        FakeTikTok(srv, max_duration=15)  # the composed video says 21.5 s
        with pytest.raises(PermanentStageError, match="takes 1 to 15 s"):
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv)))
    assert calls(srv, INIT) == []


def test_an_unknown_privacy_level_is_refused_by_the_settings_check(tmp_path, job, composed):
    with FakeServer() as srv, pytest.raises(PermanentStageError, match="privacy_level 'EVERYONE'"):
        publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv, privacy_level="EVERYONE")))


@pytest.mark.django_db
def test_the_rate_limit_is_transient_with_its_wait(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        fake.fail["init"].append(FakeTikTok.answer(429, code="rate_limit_exceeded", message="Too many requests"))
        with pytest.raises(TransientStageError, match="rate_limit_exceeded") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv)))
        assert exc.value.retry_after == 60  # the limits are per minute; no Retry-After was sent
        assert not Publication.objects.filter(job=job, destination="tiktok").exists()

        fake.fail["init"].append(FakeTikTok.answer(429, code="rate_limit_exceeded", **{"Retry-After": "0"}))
        out = publish.run(publish_ctx(tmp_path / "again", job, composed, tt_settings(srv))).output
    assert out["destinations"]["tiktok"]["video_id"]  # waited the Retry-After in the call, then posted


@pytest.mark.django_db
def test_the_seventh_init_in_a_minute_hits_the_documented_limit(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        fake.hits["init"] = [__import__("time").monotonic()] * 6  # six posts this minute already
        with pytest.raises(TransientStageError) as exc:
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv)))
    assert exc.value.retry_after == 60


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("code", "status", "kind", "wait", "hint"),
    [
        ("spam_risk_too_many_posts", 403, TransientStageError, 3600, None),
        ("reached_active_user_cap", 403, TransientStageError, 3600, None),
        ("unaudited_client_can_only_post_to_private_accounts", 403, PermanentStageError, None, "SELF_ONLY"),
        ("spam_risk_user_banned_from_posting", 403, PermanentStageError, None, "stopped this account"),
        ("scope_not_authorized", 401, PermanentStageError, None, "TIKTOK_ACCESS_TOKEN"),
    ],
)
def test_documented_errors_are_mapped(tmp_path, job, composed, code, status, kind, wait, hint):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        fake.fail["init"].append(FakeTikTok.answer(status, code=code, message="refused"))
        with pytest.raises(kind, match=code) as exc:
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv)))
    assert type(exc.value) is kind
    assert exc.value.retry_after == wait
    if hint:
        assert hint in exc.value.hint
    assert len(calls(srv, INIT)) == 1  # never retried in the call


@pytest.mark.django_db
def test_the_daily_cap_of_the_fake_is_reached_like_the_real_one(tmp_path, job, composed):
    with FakeServer() as srv:
        FakeTikTok(srv, daily_cap=0)
        with pytest.raises(TransientStageError, match="spam_risk_too_many_posts") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, tt_settings(srv)))
    assert exc.value.retry_after == 3600


@pytest.mark.django_db
def test_the_refresh_flow_gets_a_fresh_token(tmp_path, job, composed):
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        cfg = tt_settings(
            srv,
            access_token="",
            refresh_token="rft.tiktok-test",
            client_key="ck",
            client_secret="cs",
            token_url=srv.url("/v2/oauth/token/"),
        )
        publish.run(publish_ctx(tmp_path, job, composed, cfg))
        token_call = calls(srv, "/v2/oauth/token/")[0]
        assert b"grant_type=refresh_token" in token_call.body and b"client_key=ck" in token_call.body
        assert {r.headers["authorization"] for r in srv.requests if r.path in (CREATOR, INIT, STATUS)} == {
            "Bearer act.refreshed-1"
        }
        assert len(fake.posts) == 1


@pytest.mark.django_db
def test_a_refused_refresh_token_is_permanent(tmp_path, job, composed):
    with FakeServer() as srv:
        FakeTikTok(srv)
        cfg = tt_settings(srv, access_token="", refresh_token="old", client_key="ck", client_secret="cs")
        with pytest.raises(PermanentStageError) as exc:
            publish.run(publish_ctx(tmp_path, job, composed, cfg))
    assert "TIKTOK_REFRESH_TOKEN" in exc.value.hint and calls(srv, INIT) == []


@pytest.mark.django_db
def test_the_caption_fits_2200_utf16_units(tmp_path, job, composed):
    long_title = "🚀 " * 1500  # 3 UTF-16 units each with the space: 4500 units
    with FakeServer() as srv:
        fake = FakeTikTok(srv)
        ctx = publish_ctx(tmp_path, job, composed, tt_settings(srv))
        ctx.upstream["script_generation"] = {**SCRIPT, "title": long_title}
        publish.run(ctx)
    title = next(iter(fake.posts.values()))["post_info"]["title"]
    assert len(title.encode("utf-16-le")) // 2 <= 2200 and title.endswith("#AI #RaspberryPi #OpenSource")


@pytest.mark.django_db
def test_missing_credentials_fail_before_anything_is_sent(tmp_path, job, composed, monkeypatch):
    for name in ("TIKTOK_ACCESS_TOKEN", "TIKTOK_REFRESH_TOKEN", "TIKTOK_CLIENT_KEY", "TIKTOK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PermanentStageError, match="missing access_token") as exc:
        publish.run(publish_ctx(tmp_path, job, composed, {"destinations": ["outbox", "tiktok"]}))
    assert "TIKTOK_ACCESS_TOKEN" in exc.value.hint
    assert not Publication.objects.filter(job=job).exists()
