"""How published videos did, in a real browser: a job published to all five destinations against
the local platform fakes, its numbers read by the scheduled pull of a real ``qcluster``, shown on
the dashboard (best videos by theme and pattern) and on the job page (views over time, skipped
stories, chosen patterns). Screenshots land in test-artifacts/."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from console.tests.test_browser import browser, login, make_user, page, shot  # noqa: F401
from jobs import analytics
from jobs.models import Job, PublicationMetrics, StageRun, Theme
from jobs.tests.conftest import wait_for
from jobs.tests.factories import approved
from stages import pipeline, publish, trend_analysis
from stages.tests.fakeplatforms import FakeInstagram, FakeTikTok, FakeYouTube
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context
from stages.tests.test_feedback import video
from stages.tests.test_trend_analysis import make_job, trend

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]
SCRIPT = {
    "title": "A whole AI model on a €80 computer",
    "hook": "Nordlys just made a big move.",
    "description": "Fjord-2B runs on a Raspberry Pi 5, no cloud needed.",
    "hashtags": ["#AI", "#RaspberryPi", "#OpenSource"],
    "target_seconds": 30,
    "patterns": {"hook": "subject", "length": 30},
}


def run_stage(job: Job, stage: str, output: dict, when) -> StageRun:
    return StageRun.objects.create(
        job=job,
        stage=stage,
        attempt=1,
        status=StageRun.Status.SUCCEEDED,
        queued_at=when,
        started_at=when,
        finished_at=when + timedelta(seconds=2),
        progress=1.0,
        message="done",
        output=output,
    )


def test_the_dashboard_and_job_page_show_numbers_from_the_scheduled_pull(
    page,  # noqa: F811
    live_server,
    start_worker,
    settings,
    tmp_path,
):
    settings.TRENDREEL_FETCH_ALLOW = ["127.0.0.1"]
    with ExitStack() as stack:
        yt_srv, tt_srv, ig_srv, hook_srv = (stack.enter_context(FakeServer()) for _ in range(4))
        yt, tt, ig = FakeYouTube(yt_srv), FakeTikTok(tt_srv), FakeInstagram(ig_srv)
        hook_srv.route("POST", "/hook", Reply(200))
        theme = Theme.objects.create(
            name="Tech pulse",
            slug="tech-pulse",
            keywords=["ai", "robot"],
            settings={
                "publish": {
                    "destinations": ["outbox", "youtube", "tiktok", "instagram", "webhook"],
                    "youtube": {"access_token": "ya29.youtube-test", "base_url": yt_srv.url(), "analytics_url": yt_srv.url()},
                    "tiktok": {"access_token": "act.tiktok-test", "base_url": tt_srv.url(),
                               "privacy_level": "PUBLIC_TO_EVERYONE", "poll_interval": 0},
                    "instagram": {"access_token": "EAAG-instagram-test", "user_id": "17841400000000001",
                                  "graph_url": ig_srv.url(), "upload_url": ig_srv.url(), "poll_interval": 0},
                    "webhook": {"url": hook_srv.url("/hook"), "secret": "whsec-browser-0123"},
                }
            },
        )  # fmt: skip
        gadgets = Theme.objects.create(name="Gadget minute", slug="gadgets")
        # Earlier measured videos of both themes: what the feedback loop and the dashboard learn from.
        for i, (views, hook, caption) in enumerate(
            [(5200, "subject", "title"), (4300, "subject", "hook"), (380, "plain", "title"), (260, "plain", "summary")]
        ):
            video(theme, views, days_ago=3 + i, hook=hook, caption_style=caption, length=30, keywords=["robot", "ai"])
        video(gadgets, 900, days_ago=2, hook="plain", caption_style="title", length=45, keywords=["phone"])
        video(gadgets, 2400, days_ago=4, hook="subject", caption_style="hook", length=45, keywords=["laptop"])

        # This job's analysis: a story the theme told last week is skipped; the patterns are chosen.
        told = trend("wire", "Robot bartender pours a perfect pint", engagement=900)
        repost = trend("forum", "Robot bartender now pours perfect pints in Oslo", engagement=20, hours_ago=2)
        story = trend("wire", "Nordlys fits a whole AI model on an 80 euro Raspberry Pi", engagement=400, hours_ago=1)
        make_job(theme, Job.Status.COMPLETED, {"trend_id": told.id, "title": told.title})
        start = timezone.now() - timedelta(hours=26)
        job = Job.objects.create(theme=theme, status=Job.Status.COMPLETED, created=start, started=start)
        ctx = make_context(tmp_path / "analysis", "trend_analysis", theme=theme.as_input(),
                           upstream={"trend_collection": {"trend_ids": [told.id, repost.id, story.id]}})  # fmt: skip
        ctx.job_id = job.pk
        analysis = trend_analysis.run(ctx).output
        assert analysis["topic"]["trend_id"] == story.id and len(analysis["skipped"]) == 1  # the repost merged into it
        assert analysis["patterns"]["active"] is True

        # Published to all five destinations in one run (the real publish stage, the fakes).
        composed = tmp_path / "composition"
        composed.mkdir()
        (composed / "video.mp4").write_bytes(bytes(range(256)) * 40)
        (composed / "thumbnail.jpg").write_bytes(b"\xff\xd8\xff")
        outputs = {
            "trend_collection": {"trend_ids": [told.id, repost.id, story.id], "count": 3},
            "trend_analysis": analysis,
            "script_generation": SCRIPT,
            "scene_generation": {"scenes": []},
            "voiceover": {"voice": "en_US-joe-medium", "duration": 24.0},
        }
        for i, stage in enumerate(pipeline.STAGE_KEYS[:5]):
            run_stage(job, stage, outputs[stage], start + timedelta(seconds=10 * i))
        approved(job)
        ctx = make_context(tmp_path / "publish", "publish", theme=theme.as_input(),
                           upstream={**outputs, "composition": {"video": "video.mp4", "thumbnail": "thumbnail.jpg",
                                                                 "duration": 24.0, "qc": {"width": 1080, "height": 1920}}},
                           upstream_dirs={"composition": composed})  # fmt: skip
        ctx.job_id = job.pk
        published = publish.run(ctx).output
        assert all(not d.get("error") for d in published["destinations"].values())
        run_stage(job, "publish", published, start + timedelta(minutes=2))
        Job.objects.filter(pk=job.pk).update(finished=start + timedelta(minutes=3))
        # as it was: composed and published a day ago (the stage ran just now, in this test)
        job.runs.filter(stage="composition").update(
            queued_at=start + timedelta(seconds=50), started_at=start + timedelta(seconds=50),
            finished_at=start + timedelta(seconds=80), progress=1.0,
        )  # fmt: skip
        job.publications.update(created=start + timedelta(minutes=2))

        # The numbers: a first reading a day ago, then the schedule's pull in a real qcluster.
        (yt_id,) = yt.videos
        (tt_id,) = tt.videos
        (ig_id,) = ig.media
        yt.videos[yt_id]["statistics"] = {"viewCount": "900", "likeCount": "60", "commentCount": "4"}
        tt.videos[tt_id] = {"view_count": 2100, "like_count": 150, "comment_count": 12, "share_count": 20}
        ig.media[ig_id]["insights"] = {
            "views": 700,
            "likes": 40,
            "comments": 3,
            "shares": 5,
            "ig_reels_avg_watch_time": 15200,
        }
        analytics.pull_metrics(now=timezone.now() - timedelta(hours=20))
        yt.videos[yt_id]["statistics"] = {"viewCount": "3400", "likeCount": "210", "commentCount": "18"}
        yt.videos[yt_id]["analytics"] = {"shares": 31, "averageViewDuration": 19}
        tt.videos[tt_id] = {"view_count": 8800, "like_count": 610, "comment_count": 44, "share_count": 95}
        ig.media[ig_id]["insights"] = {"views": 2900, "likes": 180, "comments": 11, "shares": 26, "ig_reels_avg_watch_time": 16800}  # fmt: skip
        before = PublicationMetrics.objects.filter(publication__job=job).count()
        Schedule.objects.filter(name=analytics.SCHEDULE_NAME).update(next_run=timezone.now())
        worker = start_worker("qcluster", extra_env={"TRENDREEL_FETCH_ALLOW": "127.0.0.1"})
        wait_for(
            lambda: PublicationMetrics.objects.filter(publication__job=job).count() == before + 3,
            timeout=120,
            what="the scheduled analytics pull",
            log=worker.log,
        )
        latest = {m.publication.destination: m.views for m in PublicationMetrics.objects.filter(
            publication__job=job).order_by("fetched_at")}  # fmt: skip
        assert latest == {"youtube": 3400, "tiktok": 8800, "instagram": 2900}

        make_user("viewer", "view_job")
        base = live_server.url
        login(page, base, "viewer")
        page.goto(base + reverse("console:dashboard"))
        panel = page.wait_for_selector("#best-videos")
        text = panel.inner_text()
        assert "Tech pulse" in text and "Gadget minute" in text and f"Job {job.pk}" in text
        assert "15.1k" in text  # 3400 + 8800 + 2900 views, the theme's best video
        shot(page, "dashboard-best-videos")

        page.goto(base + reverse("console:job_detail", args=[job.pk]))
        page.wait_for_selector("#job-metrics svg.tr-chart")
        assert page.locator("#job-metrics polyline.line").count() == 3
        assert page.locator("#job-metrics circle.dot").count() == 6  # two readings per platform
        table = page.inner_text("#metrics-table")
        assert "8800" in table and "16.8 s" in table
        skipped = page.inner_text("#skipped-topics")
        assert "Robot bartender pours a perfect pint" in skipped and "used by job" in skipped
        assert "Thompson sampling" in page.inner_text("#patterns-model")
        # the stylesheet is a static file: the chart's colours come from it
        assert (
            page.evaluate("getComputedStyle(document.querySelector('#job-metrics polyline.d-tiktok')).fill") == "none"
        )
        page.locator("#job-metrics").scroll_into_view_if_needed()
        shot(page, "job-page-metrics")
        assert Path(__file__).resolve().parents[2].joinpath("test-artifacts", "job-page-metrics.png").exists()
