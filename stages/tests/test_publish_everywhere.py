"""publish to all five destinations (outbox, webhook, YouTube, TikTok, Instagram) in one run against
the local fakes; a failure in any one of them fails the stage, and the retry does only what is missing."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from jobs.models import Publication
from stages import publish
from stages.base import TransientStageError
from stages.tests.fakeplatforms import FakeInstagram, FakeTikTok, FakeYouTube
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.test_webhook import SECRET, publish_ctx, verify

ORDER = ["outbox", "youtube", "tiktok", "instagram", "webhook"]


@pytest.fixture
def world():
    """One local server per platform, each with its fake (the webhook is a plain receiver)."""
    with ExitStack() as stack:
        servers = {name: stack.enter_context(FakeServer()) for name in ("youtube", "tiktok", "instagram", "webhook")}
        fakes = {
            "youtube": FakeYouTube(servers["youtube"]),
            "tiktok": FakeTikTok(servers["tiktok"]),
            "instagram": FakeInstagram(servers["instagram"]),
        }
        servers["webhook"].route("POST", "/hook", Reply(200, json={"ok": True}))
        yield servers, fakes


def everywhere(servers) -> dict:
    return {
        "destinations": ORDER,
        "youtube": {"access_token": "ya29.youtube-test", "base_url": servers["youtube"].url(), "chunk_bytes": 1024},
        "tiktok": {
            "access_token": "act.tiktok-test",
            "base_url": servers["tiktok"].url(),
            "privacy_level": "PUBLIC_TO_EVERYONE",
            "poll_interval": 0,
        },
        "instagram": {
            "access_token": "EAAG-instagram-test",
            "user_id": "17841400000000001",
            "graph_url": servers["instagram"].url(),
            "upload_url": servers["instagram"].url(),
            "poll_interval": 0,
        },
        "webhook": {"url": servers["webhook"].url("/hook"), "secret": SECRET},
    }


@pytest.mark.django_db
def test_a_job_publishes_to_all_five_destinations_in_one_run(tmp_path, job, composed, world, settings):
    servers, fakes = world
    out = publish.run(publish_ctx(tmp_path, job, composed, everywhere(servers))).output

    assert list(out["destinations"]) == ORDER
    assert all(not d["already_published"] and not d.get("error") for d in out["destinations"].values())
    rows = {p.destination: p for p in Publication.objects.filter(job=job)}
    assert set(rows) == set(ORDER) and all(p.meta["state"] == "published" for p in rows.values())

    video = (composed / "video.mp4").read_bytes()
    assert (Path(settings.OUTBOX_DIR) / str(job.pk) / "video.mp4").read_bytes() == video
    (session,) = fakes["youtube"].sessions.values()
    assert session["data"] == video and session["body"]["status"]["selfDeclaredMadeForKids"] is False
    (post,) = fakes["tiktok"].posts.values()
    assert bytes(post["data"]) == video
    (container,) = fakes["instagram"].containers.values()
    assert container["data"] == video and container["status_code"] == "PUBLISHED"

    (hook,) = servers["webhook"].requests
    verify(hook)
    links = hook.json()["published"]
    assert set(links) == {"outbox", "youtube", "tiktok", "instagram"}  # the webhook goes last: it has every link
    assert links["youtube"]["video_id"] == rows["youtube"].external_id
    assert links["tiktok"]["url"] == f"https://www.tiktok.com/@trendreel/video/{post['post_id']}"
    assert links["instagram"]["url"].startswith("https://www.instagram.com/reel/")


def break_one(name: str, servers, fakes, settings, tmp_path) -> None:
    """Make exactly one destination fail transiently, the way it fails in life."""
    if name == "outbox":
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("x")
        settings.OUTBOX_DIR = blocker / "outbox"  # a disk that will not take the files
    elif name == "webhook":
        servers["webhook"].route("POST", "/hook", Reply(503, body=b"receiver down"))
    elif name == "youtube":
        fakes["youtube"].fail["start"] += [Reply(503, body=b"backend error")] * 3
    elif name == "tiktok":
        fakes["tiktok"].fail["init"].append(FakeTikTok.answer(429, code="rate_limit_exceeded"))
    elif name == "instagram":
        fakes["instagram"].fail["create"].append(FakeInstagram.error(400, 4, "Application request limit reached"))


def requests_by_destination(servers) -> dict[str, int]:
    return {name: len(srv.requests) for name, srv in servers.items()}


@pytest.mark.django_db
@pytest.mark.parametrize("broken", ORDER)
def test_a_retry_after_one_destination_failed_does_only_what_is_missing(
    tmp_path, job, composed, world, settings, broken
):
    servers, fakes = world
    outbox = settings.OUTBOX_DIR
    break_one(broken, servers, fakes, settings, tmp_path)
    with pytest.raises(TransientStageError, match=broken) as exc:
        publish.run(publish_ctx(tmp_path, job, composed, everywhere(servers)))
    others = [n for n in ORDER if n != broken]
    assert f"delivered, not repeated on retry: {', '.join(others)}" in exc.value.message
    done = {p.destination: (p.pk, p.external_id, p.created) for p in Publication.objects.filter(job=job)}
    assert set(done) == set(others)

    # The cause goes away; the retry delivers the missing one and touches nothing else.
    settings.OUTBOX_DIR = outbox
    servers["webhook"].route("POST", "/hook", Reply(200, json={"ok": True}))
    for srv in servers.values():
        srv.requests.clear()
    out = publish.run(publish_ctx(tmp_path / "retry", job, composed, everywhere(servers))).output

    assert {n: d["already_published"] for n, d in out["destinations"].items()} == {n: n != broken for n in ORDER}
    asked = requests_by_destination(servers)
    assert all(asked[n] == 0 for n in servers if n != broken), asked
    if broken in servers:
        assert asked[broken] > 0
    after = {p.destination: (p.pk, p.external_id, p.created) for p in Publication.objects.filter(job=job)}
    assert {n: after[n] for n in others} == {n: done[n] for n in others}  # the delivered ones are untouched
    assert len(fakes["youtube"].videos) == 1 and len(fakes["tiktok"].posts) == 1
    assert len(fakes["instagram"].media) == 1
