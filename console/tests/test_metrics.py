"""Published videos' numbers in the console and the API: the job page's chart and the skipped
stories, the dashboard's best videos, ``GET /api/jobs/{id}/metrics`` and ``/analysis``."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from console.models import ApiToken
from jobs.models import Job, Publication, PublicationMetrics, StageRun, Theme

pytestmark = pytest.mark.django_db


def staff(name: str, *codenames: str) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def measured() -> Job:
    """A completed job on three platforms with two readings each, and an analysis that skipped a story."""
    theme = Theme.objects.create(name="Tech pulse", slug="tech-metrics")
    start = timezone.now() - timedelta(hours=30)
    job = Job.objects.create(theme=theme, status=Job.Status.COMPLETED, created=start)
    StageRun.objects.create(
        job=job,
        stage="trend_analysis",
        attempt=1,
        status=StageRun.Status.SUCCEEDED,
        finished_at=start,
        output={
            "topic": {"trend_id": 7, "title": "Fjord-2B runs on a Raspberry Pi", "angle": "breaking", "score": 0.8},
            "skipped": [{"trend_id": 3, "title": "Robot bartender pours a perfect pint", "reason": "used by job 41"}],
            "patterns": {"active": False, "reason": "3 measured videos of this theme are needed", "chosen": {}},
        },
    )
    numbers = {"youtube": (800, 1520), "tiktok": (2100, 4100), "instagram": (900, 2200)}
    for destination, (first, second) in numbers.items():
        pub = Publication.objects.create(
            job=job,
            destination=destination,
            external_id=f"{destination}-1",
            created=start,
            meta={
                "state": "published",
                "title": "Fjord-2B runs on a Raspberry Pi",
                "url": f"https://{destination}.example/v/1",
                "patterns": {"hook": "subject", "caption_style": "title", "length": 30, "keywords": ["ai", "pi"]},
            },
        )
        PublicationMetrics.objects.create(
            publication=pub, fetched_at=start + timedelta(hours=6), views=first, likes=first // 20
        )
        PublicationMetrics.objects.create(
            publication=pub,
            fetched_at=start + timedelta(hours=24),
            views=second,
            likes=second // 20,
            comments=9,
            shares=14,
            avg_view_seconds=None if destination == "tiktok" else 21.5,
        )
    Publication.objects.create(job=job, destination="outbox", external_id=str(job.pk), meta={"state": "published"})
    return job


def test_the_job_page_draws_views_over_time_and_tells_skipped_stories(client, measured):
    client.force_login(staff("viewer", "view_job"))
    page = client.get(reverse("console:job_detail", args=[measured.pk])).content.decode()
    chart = page[page.index('id="job-metrics"') :]
    assert chart.count('<polyline class="line d-') == 3  # one line per platform, outbox has none
    points = re.search(r'class="line d-tiktok" points="([^"]+)"', chart).group(1).split()
    assert len(points) == 3  # published at 0, then two readings
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[0] > ys[1] > ys[2]  # growing views go up the chart
    assert "<script" not in page[page.index('id="job-metrics"') :] and 'style="' not in chart.split("</svg>")[0]
    table = chart[chart.index('id="metrics-table"') :]
    assert '<td class="num">4100</td>' in table and "21.5 s" in table and "2 readings" in table
    assert "Robot bartender pours a perfect pint" in page and "used by job 41" in page
    assert 'id="skipped-topics"' in page and "3 measured videos of this theme are needed" in page
    assert "console/metrics.css" in page


def test_the_live_job_fragment_tells_skipped_stories_too(client, measured):
    client.force_login(staff("viewer", "view_job"))
    fragment = client.get(reverse("console:job_live", args=[measured.pk])).content.decode()
    assert 'id="skipped-topics"' in fragment and 'id="job-metrics"' not in fragment


def test_a_job_without_numbers_says_so(client):
    theme = Theme.objects.create(name="Quiet", slug="quiet")
    job = Job.objects.create(theme=theme, status=Job.Status.COMPLETED)
    Publication.objects.create(job=job, destination="tiktok", external_id="1", meta={"state": "published"})
    client.force_login(staff("viewer", "view_job"))
    page = client.get(reverse("console:job_detail", args=[job.pk])).content.decode()
    assert "no numbers yet: the analytics pull reads them every 60 minutes" in page


def test_the_dashboard_shows_the_best_videos_by_theme_and_by_pattern(client, measured):
    other = Theme.objects.create(name="Gadgets", slug="gadgets")
    low = Job.objects.create(theme=other, status=Job.Status.COMPLETED)
    pub = Publication.objects.create(
        job=low, destination="youtube", external_id="g1", meta={"state": "published", "title": "A quiet gadget",
        "patterns": {"hook": "plain", "caption_style": "title", "length": 30}}
    )  # fmt: skip
    PublicationMetrics.objects.create(publication=pub, views=40)
    client.force_login(staff("viewer", "view_job"))
    page = client.get(reverse("console:dashboard")).content.decode()
    panel = page[page.index('id="best-videos"') :]
    assert panel.index("Tech pulse") < panel.index("Gadgets")  # the theme with the best video first
    assert f'href="/console/jobs/{measured.pk}/"' in panel and 'title="7820 views"' in panel and "7.8k" in panel
    patterns = panel[panel.index('id="best-patterns"') :]
    assert patterns.index("subject") < patterns.index("plain")  # the better hook first
    assert "Topic keyword" in patterns and "<script" not in panel


def test_the_metrics_api_returns_every_reading_with_totals(client, measured):
    _, raw = ApiToken.issue(staff("reader", "view_job"), "tests")
    resp = client.get(f"/api/jobs/{measured.pk}/metrics", headers={"Authorization": f"Bearer {raw}"})
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["job_id"] == measured.pk
    assert body["totals"] == {"views": 7820, "likes": 76 + 205 + 110, "comments": 27, "shares": 42}
    by = {p["destination"]: p for p in body["publications"]}
    assert set(by) == {"youtube", "tiktok", "instagram"}
    assert [r["views"] for r in by["tiktok"]["series"]] == [2100, 4100] and by["tiktok"]["latest"]["views"] == 4100
    assert by["tiktok"]["latest"]["avg_view_seconds"] is None and by["youtube"]["latest"]["avg_view_seconds"] == 21.5
    assert by["instagram"]["url"] == "https://instagram.example/v/1"


def test_the_analysis_api_says_which_stories_were_skipped(client, measured):
    _, raw = ApiToken.issue(staff("reader", "view_job"), "tests")
    body = client.get(f"/api/jobs/{measured.pk}/analysis", headers={"Authorization": f"Bearer {raw}"}).json()
    assert body["skipped"] == [
        {"trend_id": 3, "title": "Robot bartender pours a perfect pint", "reason": "used by job 41"}
    ]
    assert body["topic"]["title"] == "Fjord-2B runs on a Raspberry Pi" and body["patterns"]["active"] is False


@pytest.mark.parametrize("path", ["metrics", "analysis"])
def test_the_new_endpoints_need_view_job_and_a_known_job(client, measured, path):
    _, nobody = ApiToken.issue(staff("nobody"), "tests")
    _, reader = ApiToken.issue(staff("reader", "view_job"), "tests")
    assert client.get(f"/api/jobs/{measured.pk}/{path}").status_code == 401
    assert (
        client.get(f"/api/jobs/{measured.pk}/{path}", headers={"Authorization": f"Bearer {nobody}"}).status_code == 403
    )
    missing = client.get(f"/api/jobs/{measured.pk + 999}/{path}", headers={"Authorization": f"Bearer {reader}"})
    assert missing.status_code == 404 and "no job" in missing.json()["detail"]
