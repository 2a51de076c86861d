"""The analytics pull: every platform's numbers read on a schedule into a time series per
Publication, one platform's failure never stopping the others; tested against the platform fakes."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from jobs import analytics, tasks
from jobs.models import Job, Publication, PublicationMetrics, Theme
from jobs.tests.conftest import wait_for
from stages.tests.fakeplatforms import FakeInstagram, FakeTikTok, FakeYouTube
from stages.tests.fakeserver import FakeServer, Reply

YT_TOKEN, TT_TOKEN, IG_TOKEN, IG_USER = (
    "ya29.youtube-test",
    "act.tiktok-test",
    "EAAG-instagram-test",
    "17841400000000001",
)


@pytest.fixture
def platforms(settings):
    """The three fakes on their own local servers, with one video each that has numbers."""
    settings.TRENDREEL_FETCH_ALLOW = ["127.0.0.1"]
    settings.TRENDREEL_PROVIDER_HOSTS = []
    with ExitStack() as stack:
        yt_srv, tt_srv, ig_srv = (stack.enter_context(FakeServer()) for _ in range(3))
        yt, tt, ig = FakeYouTube(yt_srv), FakeTikTok(tt_srv), FakeInstagram(ig_srv)
        yt.videos["vid00000001"] = {
            "statistics": {"viewCount": "1520", "likeCount": "88", "commentCount": "9"},
            "analytics": {"shares": 14, "averageViewDuration": 23},
            "status": {},
        }
        tt.videos["7300000000000000001"] = {
            "view_count": 4100,
            "like_count": 390,
            "comment_count": 31,
            "share_count": 57,
        }
        ig.media["18000000000000001"] = {
            "caption": "x",
            "permalink": "https://www.instagram.com/reel/C1/",
            "insights": {"views": 2200, "likes": 140, "comments": 12, "shares": 20, "ig_reels_avg_watch_time": 17400},
        }
        yield {"youtube": (yt_srv, yt), "tiktok": (tt_srv, tt), "instagram": (ig_srv, ig)}


def theme_for(platforms, slug: str = "tech") -> Theme:
    yt_srv, tt_srv, ig_srv = (platforms[n][0] for n in ("youtube", "tiktok", "instagram"))
    return Theme.objects.create(
        name=slug.title(),
        slug=slug,
        settings={
            "publish": {
                "destinations": ["outbox", "youtube", "tiktok", "instagram"],
                "youtube": {"access_token": YT_TOKEN, "base_url": yt_srv.url(), "analytics_url": yt_srv.url()},
                "tiktok": {"access_token": TT_TOKEN, "base_url": tt_srv.url()},
                "instagram": {"access_token": IG_TOKEN, "user_id": IG_USER, "graph_url": ig_srv.url()},
            }
        },
    )


def published(theme: Theme, *, days_ago: float = 1) -> Job:
    when = timezone.now() - timedelta(days=days_ago)
    job = Job.objects.create(theme=theme, status=Job.Status.COMPLETED, created=when)
    rows = [
        ("outbox", str(job.pk), {"video": "/x/video.mp4"}),
        ("youtube", "vid00000001", {"video_id": "vid00000001", "url": "https://www.youtube.com/watch?v=vid00000001"}),
        ("tiktok", "7300000000000000001", {"publish_id": "v_pub_file~v2-1.1", "post_id": "7300000000000000001"}),
        ("instagram", "18000000000000001", {"media_id": "18000000000000001"}),
    ]
    for destination, external_id, meta in rows:
        Publication.objects.create(
            job=job,
            destination=destination,
            external_id=external_id,
            created=when,
            meta={"state": "published", "title": "Fjord-2B on a Pi", **meta, "patterns": {"hook": "subject"}},
        )
    return job


def readings(job: Job) -> dict[str, PublicationMetrics]:
    return {m.publication.destination: m for m in PublicationMetrics.objects.filter(publication__job=job)}


@pytest.mark.django_db
def test_a_pull_reads_every_platform_into_a_reading_each(platforms):
    job = published(theme_for(platforms))
    report = analytics.pull_metrics()
    assert dict(report.read) == {"instagram": 1, "tiktok": 1, "youtube": 1} and report.failures == []

    got = readings(job)
    assert set(got) == {"youtube", "tiktok", "instagram"}  # the outbox and webhook have no numbers
    yt, tt, ig = got["youtube"], got["tiktok"], got["instagram"]
    assert (yt.views, yt.likes, yt.comments, yt.shares, yt.avg_view_seconds) == (1520, 88, 9, 14, 23.0)
    assert (tt.views, tt.likes, tt.comments, tt.shares, tt.avg_view_seconds) == (4100, 390, 31, 57, None)
    assert (ig.views, ig.likes, ig.comments, ig.shares, ig.avg_view_seconds) == (2200, 140, 12, 20, 17.4)

    yt_srv = platforms["youtube"][0]
    stats = next(r for r in yt_srv.requests if r.path == "/youtube/v3/videos")
    assert "part=statistics" in stats.query and stats.headers["authorization"] == f"Bearer {YT_TOKEN}"
    report_call = next(r for r in yt_srv.requests if r.path == "/v2/reports")
    assert "ids=channel%3D%3DMINE" in report_call.query and "filters=video%3D%3Dvid00000001" in report_call.query
    tt_call = next(r for r in platforms["tiktok"][0].requests if r.path == "/v2/video/query/")
    assert tt_call.json() == {"filters": {"video_ids": ["7300000000000000001"]}}

    # A second pull adds to the series, never rewrites it.
    platforms["tiktok"][1].videos["7300000000000000001"]["view_count"] = 9000
    analytics.pull_metrics()
    assert list(
        PublicationMetrics.objects.filter(publication__job=job, publication__destination="tiktok")
        .order_by("fetched_at", "id")
        .values_list("views", flat=True)
    ) == [4100, 9000]


@pytest.mark.django_db
def test_one_platform_failing_never_stops_the_others(platforms):
    job = published(theme_for(platforms))
    platforms["tiktok"][1].fail["video_query"].append(FakeTikTok.answer(401, code="access_token_invalid"))
    report = analytics.pull_metrics()
    assert set(readings(job)) == {"youtube", "instagram"}
    (failure,) = report.failures
    assert failure["destination"] == "tiktok" and failure["kind"] == "permanent" and failure["theme"] == "tech"
    assert "access_token_invalid" in failure["error"] and "TIKTOK_ACCESS_TOKEN" in failure["hint"]
    assert "tiktok@tech failed" in report.summary()


@pytest.mark.django_db
def test_a_reader_crashing_unexpectedly_is_reported_and_the_rest_still_read(platforms, monkeypatch):
    from stages.providers.instagram import InstagramMetrics

    job = published(theme_for(platforms))
    monkeypatch.setattr(InstagramMetrics, "read", lambda self, pubs: 1 / 0)
    report = analytics.pull_metrics()
    assert set(readings(job)) == {"youtube", "tiktok"}
    assert [(f["destination"], f["kind"]) for f in report.failures] == [("instagram", "unexpected")]


@pytest.mark.django_db
def test_each_theme_reads_with_its_own_credentials(platforms):
    good = published(theme_for(platforms, "good"))
    bad_theme = theme_for(platforms, "bad")
    bad_theme.settings["publish"]["youtube"]["access_token"] = "ya29.revoked"
    bad_theme.save()
    bad = published(bad_theme)
    report = analytics.pull_metrics()
    assert "youtube" in readings(good) and "youtube" not in readings(bad)
    assert [(f["destination"], f["theme"]) for f in report.failures] == [("youtube", "bad")]


@pytest.mark.django_db
def test_only_recent_finished_posts_are_read(platforms, settings):
    settings.TRENDREEL_ANALYTICS_DAYS = 30
    theme = theme_for(platforms)
    old = published(theme, days_ago=40)
    uploading = published(theme)
    Publication.objects.filter(job=uploading, destination="instagram").update(
        meta={"state": "uploading", "session": {"container": "1"}}
    )
    analytics.pull_metrics()
    assert readings(old) == {}
    assert set(readings(uploading)) == {"youtube", "tiktok"}


@pytest.mark.django_db
def test_youtube_numbers_count_without_the_analytics_api(platforms):
    job = published(theme_for(platforms))
    platforms["youtube"][1].fail["analytics"].append(
        FakeYouTube.error(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
    )
    analytics.pull_metrics()
    yt = readings(job)["youtube"]
    assert (yt.views, yt.shares, yt.avg_view_seconds) == (1520, None, None)
    assert "403" in yt.raw["analytics_error"]


@pytest.mark.django_db
def test_a_tiktok_post_id_that_arrived_after_moderation_is_learnt(platforms):
    job = published(theme_for(platforms))
    tt_srv, tt = platforms["tiktok"]
    tt.posts["v_pub_file~v2-1.1"] = {
        "n": 1, "post_info": {"privacy_level": "PUBLIC_TO_EVERYONE"}, "size": 3, "chunk": 3, "count": 1,
        "data": bytearray(b"abc"), "status": "PUBLISH_COMPLETE", "polls": 0, "expired": False,
        "fail_reason": None, "post_id": "7300000000000000001",
    }  # fmt: skip
    row = Publication.objects.get(job=job, destination="tiktok")
    row.external_id, row.meta = "v_pub_file~v2-1.1", {**row.meta, "post_id": None, "username": "trendreel"}
    row.save()
    analytics.pull_metrics()
    row.refresh_from_db()
    assert row.external_id == "7300000000000000001" and row.meta["post_id"] == "7300000000000000001"
    assert row.location == "https://www.tiktok.com/@trendreel/video/7300000000000000001"
    assert readings(job)["tiktok"].views == 4100


@pytest.mark.django_db
def test_video_results_sum_a_jobs_platforms_and_carry_its_patterns(platforms):
    theme = theme_for(platforms)
    job = published(theme)
    analytics.pull_metrics()
    (result,) = analytics.video_results(theme_id=theme.pk)
    assert result.job_id == job.pk and result.views == 1520 + 4100 + 2200
    assert result.destinations == {"youtube": 1520, "tiktok": 4100, "instagram": 2200}
    assert result.patterns == {"hook": "subject"} and result.title == "Fjord-2B on a Pi"
    # view-weighted across the platforms that report it (TikTok does not)
    assert result.avg_view_seconds == pytest.approx((23 * 1520 + 17.4 * 2200) / (1520 + 2200))


@pytest.mark.django_db
def test_the_schedule_is_kept_by_migrate_and_can_be_switched_off(settings):
    schedule = Schedule.objects.get(name=analytics.SCHEDULE_NAME)  # written by post_migrate
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "jobs.tasks.pull_metrics",
        Schedule.MINUTES,
        60,
        -1,
    )
    settings.TRENDREEL_ANALYTICS_MINUTES = 15
    analytics.ensure_schedule()
    assert Schedule.objects.get(name=analytics.SCHEDULE_NAME).minutes == 15
    settings.TRENDREEL_ANALYTICS_MINUTES = 0
    analytics.ensure_schedule()
    assert not Schedule.objects.filter(name=analytics.SCHEDULE_NAME).exists()


@pytest.mark.django_db
def test_the_task_says_what_it_read(platforms):
    published(theme_for(platforms))
    assert tasks.pull_metrics() == "instagram=1; tiktok=1; youtube=1"


@pytest.mark.cluster
def test_a_plain_qcluster_pulls_on_schedule(start_worker, platforms, transactional_db):
    job = published(theme_for(platforms))
    Schedule.objects.filter(name=analytics.SCHEDULE_NAME).update(next_run=timezone.now())
    worker = start_worker("qcluster", extra_env={"TRENDREEL_FETCH_ALLOW": "127.0.0.1"})
    wait_for(
        lambda: PublicationMetrics.objects.filter(publication__job=job).count() == 3,
        timeout=90,
        what="the scheduled analytics pull",
        log=worker.log,
    )
    assert readings(job)["instagram"].views == 2200


def test_reply_helpers_are_the_documented_shapes():
    """The fakes' error shapes, as the providers parse them (a guard against drifting fakes)."""
    assert FakeTikTok.answer(429, code="rate_limit_exceeded").json["error"]["code"] == "rate_limit_exceeded"
    assert FakeInstagram.error(400, 4, "x").json["error"]["code"] == 4
    assert isinstance(FakeYouTube.error(403, "quotaExceeded"), Reply)
