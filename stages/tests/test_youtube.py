"""publish -> youtube: the resumable upload protocol against a local server, exactly once per job."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import pytest

from jobs.models import Publication
from stages import publish
from stages.base import PermanentStageError, TransientStageError
from stages.providers.youtube import build_body
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.test_webhook import SECRET, publish_ctx

TOKEN = "ya29.test-access-token"
START = "/upload/youtube/v3/videos"
SESSION = "/upload/youtube/v3/videos/session-1"
SIZE = 2573  # the `composed` video
DONE = {
    "kind": "youtube#video",
    "id": "dQw4w9WgXcQ",
    "status": {"uploadStatus": "uploaded", "privacyStatus": "unlisted"},
}


def yt_settings(srv: FakeServer, destinations=("youtube",), **extra) -> dict:
    return {
        "destinations": list(destinations),
        "youtube": {
            "access_token": TOKEN,
            "base_url": srv.url(),
            "privacy": "unlisted",
            "chunk_bytes": 1000,
            "timeout": 2,
            **extra,
        },
    }


def started(srv: FakeServer) -> Reply:
    return Reply(200, headers={"Location": srv.url(SESSION + "?upload_id=xyz")})


def puts(srv: FakeServer):
    return [r for r in srv.requests if r.method == "PUT"]


def posts(srv: FakeServer, path: str = START):
    return [r for r in srv.requests if r.method == "POST" and r.path == path]


def reassemble(requests, size: int) -> bytes:
    """The file as the server would hold it: each chunk written at its Content-Range offset."""
    data = bytearray(size)
    for r in requests:
        spec = r.headers["content-range"].split()[1]
        if spec.startswith("*"):
            assert r.body == b""
            continue
        start = int(spec.split("-")[0])
        data[start : start + len(r.body)] = r.body
    return bytes(data)


@pytest.mark.django_db
def test_it_uploads_in_chunks_and_follows_a_partial_ack(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", START, started(srv))
        srv.route(
            "PUT",
            SESSION,
            [
                Reply(308, headers={"Range": "bytes=0-999"}),
                Reply(308, headers={"Range": "bytes=0-1499"}),  # took only half of the second chunk
                Reply(308, headers={"Range": "bytes=0-2499"}),
                Reply(201, json=DONE),
            ],
        )
        out = publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv))).output

    start = posts(srv)[0]
    assert parse_qs(start.query) == {"uploadType": ["resumable"], "part": ["snippet,status"]}
    assert start.headers["authorization"] == f"Bearer {TOKEN}"
    assert start.headers["x-upload-content-length"] == str(SIZE)
    assert start.headers["x-upload-content-type"] == "video/mp4"
    body = start.json()
    assert body["snippet"]["title"] == "A whole AI model on a €80 computer"
    assert body["snippet"]["tags"] == ["AI", "RaspberryPi", "OpenSource"] and body["snippet"]["categoryId"] == "28"
    assert body["status"] == {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": False}

    ranges = [r.headers["content-range"] for r in puts(srv)]
    assert ranges == ["bytes 0-999/2573", "bytes 1000-1999/2573", "bytes 1500-2499/2573", "bytes 2500-2572/2573"]
    assert all(r.headers["content-type"] == "video/mp4" for r in puts(srv))
    assert reassemble(puts(srv), SIZE) == (composed / "video.mp4").read_bytes()

    yt = out["destinations"]["youtube"]
    assert yt["video_id"] == "dQw4w9WgXcQ" and yt["url"] == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert yt["privacy"] == "unlisted" and yt["already_published"] is False and yt["resumed"] is False
    row = Publication.objects.get(job=job, destination="youtube")
    assert row.external_id == "dQw4w9WgXcQ" and row.meta["state"] == "published" and "session" not in row.meta
    assert TOKEN not in json.dumps(out) and "upload_id" not in json.dumps(out)


@pytest.mark.django_db
def test_a_retry_after_a_crash_resumes_the_same_session(tmp_path, job, composed):
    class Crash(Exception):
        pass

    def crash_after_first_chunk(fraction, message):
        if message.startswith("Uploaded"):
            raise Crash("worker killed")

    with FakeServer() as srv:
        srv.route("POST", START, started(srv))
        srv.route("PUT", SESSION, Reply(308, headers={"Range": "bytes=0-999"}))
        ctx = publish_ctx(tmp_path, job, composed, yt_settings(srv))
        ctx.report = crash_after_first_chunk
        with pytest.raises(Crash):
            publish.run(ctx)
        row = Publication.objects.get(job=job, destination="youtube")
        assert row.meta["state"] == "uploading" and row.meta["session"].endswith("upload_id=xyz")
        assert row.external_id == ""

        srv.requests.clear()
        srv.route(
            "PUT",
            SESSION,
            [
                Reply(308, headers={"Range": "bytes=0-999"}),  # the status query
                Reply(308, headers={"Range": "bytes=0-1999"}),
                Reply(200, json=DONE),
            ],
        )
        out = publish.run(publish_ctx(tmp_path / "retry", job, composed, yt_settings(srv))).output

    assert posts(srv) == []  # no second session
    ranges = [r.headers["content-range"] for r in puts(srv)]
    assert ranges == ["bytes */2573", "bytes 1000-1999/2573", "bytes 2000-2572/2573"]
    assert puts(srv)[0].query == "upload_id=xyz"
    assert out["destinations"]["youtube"]["resumed"] is True
    row.refresh_from_db()
    assert row.external_id == "dQw4w9WgXcQ" and row.meta["state"] == "published"


@pytest.mark.django_db
def test_a_retry_after_the_upload_completed_only_reads_the_id(tmp_path, job, composed, monkeypatch):
    with FakeServer() as srv:
        srv.route("POST", START, started(srv))
        srv.route("PUT", SESSION, Reply(201, json=DONE))
        # The process dies after YouTube has the whole video, before the id is recorded.
        monkeypatch.setattr(
            publish.PublicationSessionStore, "complete", lambda self, **kw: (_ for _ in ()).throw(SystemExit(9))
        )
        with pytest.raises(SystemExit):
            publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv, chunk_bytes=8 * 1024 * 1024)))
        monkeypatch.undo()
        srv.requests.clear()

        out = publish.run(publish_ctx(tmp_path / "retry", job, composed, yt_settings(srv))).output
        again = publish.run(publish_ctx(tmp_path / "again", job, composed, yt_settings(srv))).output

    assert posts(srv) == []
    assert [r.headers["content-range"] for r in puts(srv)] == ["bytes */2573"]  # asked, sent no byte
    assert out["destinations"]["youtube"]["video_id"] == "dQw4w9WgXcQ"
    assert again["destinations"]["youtube"]["already_published"] is True
    assert Publication.objects.filter(job=job, destination="youtube").count() == 1


@pytest.mark.django_db
def test_an_expired_session_starts_a_new_one(tmp_path, job, composed):
    with FakeServer() as srv:
        Publication.objects.create(
            job=job, destination="youtube", meta={"state": "uploading", "session": srv.url("/gone")}
        )
        srv.route("POST", START, started(srv))
        srv.route("PUT", "/gone", Reply(404))
        srv.route("PUT", SESSION, Reply(200, json=DONE))
        out = publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv, chunk_bytes=4096))).output
    assert [r.path for r in srv.requests] == ["/gone", START, SESSION]
    assert srv.requests[0].headers["content-range"] == "bytes */2573"
    assert out["destinations"]["youtube"]["video_id"] == "dQw4w9WgXcQ"


@pytest.mark.django_db
def test_a_429_with_retry_after_then_success(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", START, [Reply(429, headers={"Retry-After": "0"}), started(srv)])
        srv.route("PUT", SESSION, Reply(200, json=DONE))
        out = publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv, chunk_bytes=4096))).output
    assert len(posts(srv)) == 2 and len(puts(srv)) == 1
    assert out["destinations"]["youtube"]["video_id"] == "dQw4w9WgXcQ"


@pytest.mark.django_db
def test_a_500_mid_upload_asks_the_session_and_continues(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", START, started(srv))
        srv.route(
            "PUT",
            SESSION,
            [
                Reply(308, headers={"Range": "bytes=0-999"}),
                Reply(500, body=b"backend error"),  # second chunk
                Reply(308, headers={"Range": "bytes=0-1199"}),  # status query: it kept a little of it
                Reply(308, headers={"Range": "bytes=0-2199"}),
                Reply(201, json=DONE),
            ],
        )
        out = publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv))).output
    ranges = [r.headers["content-range"] for r in puts(srv)]
    assert ranges == [
        "bytes 0-999/2573",
        "bytes 1000-1999/2573",
        "bytes */2573",
        "bytes 1200-2199/2573",
        "bytes 2200-2572/2573",
    ]
    assert len(posts(srv)) == 1
    assert out["destinations"]["youtube"]["video_id"] == "dQw4w9WgXcQ"


@pytest.mark.django_db
def test_a_401_is_permanent_and_names_the_token(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", START, Reply(401, json={"error": {"code": 401, "message": f"Invalid Credentials {TOKEN}"}}))
        with pytest.raises(PermanentStageError) as exc:
            publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv)))
    assert "YOUTUBE_ACCESS_TOKEN" in exc.value.hint and TOKEN not in exc.value.message
    assert len(srv.requests) == 1
    assert not Publication.objects.filter(job=job, destination="youtube").exists()


@pytest.mark.django_db
def test_quota_exceeded_waits_for_the_pacific_midnight_reset(tmp_path, job, composed):
    error = {
        "error": {
            "code": 403,
            "message": "The request cannot be completed because you have exceeded your "
            '<a href="/youtube/v3/getting-started#quota">quota</a>.' + " " * 400,
            "errors": [{"domain": "youtube.quota", "reason": "quotaExceeded", "message": "quota"}],
        }
    }
    with FakeServer() as srv:
        srv.route("POST", START, Reply(403, json=error))
        with pytest.raises(TransientStageError, match="quotaExceeded") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv)))
    assert "quota" in exc.value.hint and "YOUTUBE_ACCESS_TOKEN" not in exc.value.hint
    assert len(srv.requests) == 1  # not retried in the call: the quota resets at midnight Pacific time
    pacific = datetime.now(ZoneInfo("America/Los_Angeles"))
    midnight = (pacific + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs(exc.value.retry_after - ((midnight - pacific).total_seconds() + 60)) < 30


@pytest.mark.django_db
def test_the_channels_upload_limit_waits_an_hour(tmp_path, job, composed):
    error = {"error": {"code": 400, "message": "limit", "errors": [{"reason": "uploadLimitExceeded"}]}}
    with FakeServer() as srv:
        srv.route("POST", START, Reply(400, json=error))
        with pytest.raises(TransientStageError, match="uploadLimitExceeded") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv)))
    assert exc.value.retry_after == 3600 and not Publication.objects.filter(job=job, destination="youtube").exists()


@pytest.mark.django_db
def test_a_timeout_is_transient(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", START, Reply(200, delay=1.0, headers={"Location": srv.url(SESSION)}))
        with pytest.raises(TransientStageError, match="timed out"):
            publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv, timeout=0.2)))
    assert puts(srv) == []
    assert not Publication.objects.filter(job=job, destination="youtube").exists()


@pytest.mark.django_db
def test_a_malformed_final_answer_is_permanent_and_a_rerun_does_not_upload_again(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", START, started(srv))
        srv.route("PUT", SESSION, Reply(200, body=b"<html>proxy says hi</html>"))
        with pytest.raises(PermanentStageError, match="not a JSON object") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv, chunk_bytes=4096)))
        assert "YouTube Studio" in exc.value.hint
        assert Publication.objects.get(job=job, destination="youtube").meta["state"] == "uploading"

        srv.requests.clear()
        srv.route("PUT", SESSION, Reply(200, json=DONE))
        out = publish.run(publish_ctx(tmp_path / "rerun", job, composed, yt_settings(srv))).output
    assert posts(srv) == [] and [r.headers["content-range"] for r in puts(srv)] == ["bytes */2573"]
    assert out["destinations"]["youtube"]["video_id"] == "dQw4w9WgXcQ"


@pytest.mark.django_db
def test_a_start_without_a_session_location_is_permanent(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", START, Reply(200, json={}))
        with pytest.raises(PermanentStageError, match="without a session Location"):
            publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv)))


@pytest.mark.django_db
def test_the_refresh_flow_gets_a_fresh_token(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", "/token", Reply(200, json={"access_token": "ya29.fresh", "expires_in": 3599}))
        srv.route("POST", START, started(srv))
        srv.route("PUT", SESSION, Reply(201, json=DONE))
        cfg = yt_settings(
            srv,
            chunk_bytes=4096,
            access_token="",
            refresh_token="1//refresh",
            client_id="cid",
            client_secret="csecret",
            token_url=srv.url("/token"),
        )
        out = publish.run(publish_ctx(tmp_path, job, composed, cfg)).output
    token_call = posts(srv, "/token")[0]
    assert b"grant_type=refresh_token" in token_call.body and b"refresh_token=1%2F%2Frefresh" in token_call.body
    assert all(r.headers["authorization"] == "Bearer ya29.fresh" for r in srv.requests if r.path != "/token")
    assert out["destinations"]["youtube"]["video_id"] == "dQw4w9WgXcQ"


@pytest.mark.django_db
def test_a_refused_refresh_token_is_permanent(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", "/token", Reply(400, json={"error": "invalid_grant"}))
        cfg = yt_settings(
            srv,
            access_token="",
            refresh_token="1//old",
            client_id="cid",
            client_secret="csecret",
            token_url=srv.url("/token"),
        )
        with pytest.raises(PermanentStageError, match="invalid_grant") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, cfg))
    assert "YOUTUBE_REFRESH_TOKEN" in exc.value.hint
    assert posts(srv) == []


@pytest.mark.django_db
def test_missing_credentials_fail_before_anything_is_delivered(tmp_path, job, composed, monkeypatch):
    for name in ("YOUTUBE_ACCESS_TOKEN", "YOUTUBE_REFRESH_TOKEN", "YOUTUBE_CLIENT_ID", "YOUTUBE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PermanentStageError, match="missing access_token") as exc:
        publish.run(publish_ctx(tmp_path, job, composed, {"destinations": ["outbox", "youtube"]}))
    assert "YOUTUBE_ACCESS_TOKEN" in exc.value.hint
    assert not Publication.objects.filter(job=job).exists()


@pytest.mark.django_db
def test_every_destination_is_attempted_and_a_retry_only_does_the_missing_one(tmp_path, job, composed):
    with FakeServer() as srv:
        srv.route("POST", START, Reply(503, body=b"unavailable"))
        srv.route("POST", "/hook", Reply(200))
        cfg = yt_settings(srv, destinations=("outbox", "youtube", "webhook"), chunk_bytes=4096)
        cfg["webhook"] = {"url": srv.url("/hook"), "secret": SECRET}
        with pytest.raises(TransientStageError, match="youtube") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, cfg))
        assert "delivered, not repeated on retry: outbox, webhook" in exc.value.message
        assert set(Publication.objects.filter(job=job).values_list("destination", flat=True)) == {"outbox", "webhook"}
        assert "youtube" not in posts(srv, "/hook")[0].json()["published"]

        srv.requests.clear()
        srv.route("POST", START, started(srv))
        srv.route("PUT", SESSION, Reply(201, json=DONE))
        out = publish.run(publish_ctx(tmp_path / "retry", job, composed, cfg)).output
    assert posts(srv, "/hook") == []  # never sent twice
    assert len(posts(srv)) == 1
    assert {n: d["already_published"] for n, d in out["destinations"].items()} == {
        "outbox": True,
        "youtube": False,
        "webhook": True,
    }
    assert out["destination"] == "outbox" and out["already_published"] is False


def test_the_metadata_fits_youtube_limits():
    body = build_body(
        {
            "title": "<b>" + "x" * 150,
            "description": "a > b",
            "hashtags": ["#AI", "#AI", "#Open Source"],
            "sources": [{"url": "https://example.com/a"}],
        },
        privacy="private",
        category_id="22",
    )
    assert len(body["snippet"]["title"]) == 100 and "<" not in body["snippet"]["title"]
    assert body["snippet"]["tags"] == ["AI", "Open Source"]
    assert body["snippet"]["description"] == "a  b\n\n#AI #AI #Open Source\n\nSources:\nhttps://example.com/a"
    assert body["status"]["privacyStatus"] == "private" and body["snippet"]["categoryId"] == "22"


@pytest.mark.django_db
@pytest.mark.parametrize(("value", "declared"), [(True, True), ("false", False)])
def test_the_audience_is_declared_on_every_upload(tmp_path, job, composed, value, declared):
    with FakeServer() as srv:
        srv.route("POST", START, started(srv))
        srv.route("PUT", SESSION, Reply(201, json=DONE))
        out = publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv, made_for_kids=value))).output
    assert posts(srv)[0].json()["status"]["selfDeclaredMadeForKids"] is declared
    assert Publication.objects.get(job=job, destination="youtube").meta["made_for_kids"] is declared
    assert out["destinations"]["youtube"]["video_id"] == "dQw4w9WgXcQ"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "message"),
    [({"made_for_kids": "maybe"}, "made_for_kids must be true or false"), ({"category_id": "tech"}, "category_id")],
)
def test_bad_audience_or_category_settings_fail_before_any_request(tmp_path, job, composed, extra, message):
    with FakeServer() as srv, pytest.raises(PermanentStageError, match=message):
        publish.run(publish_ctx(tmp_path, job, composed, yt_settings(srv, **extra)))
    assert srv.requests == []
