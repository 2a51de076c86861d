"""The analytics pull: how each published video did, read from its platform on a schedule and kept
as a time series (``PublicationMetrics``); and the read side the console, the API and the feedback
loop (``stages.feedback``) share.

The schedule is kept like the sweeper's: ``ensure_schedule()`` writes a django-q2 schedule
(``SCHEDULE_NAME``, every ``TRENDREEL_ANALYTICS_MINUTES``; none at 0), connected to
``post_migrate`` (``jobs/apps.py``) and called by ``manage.py worker`` at start, so every
deployment's clusters pull, whichever process they run in. ``manage.py pull_metrics`` pulls once,
for operators.

A pull reads every Publication of a destination with a reader (``stages.analytics.READERS``:
YouTube, TikTok, Instagram) that was published in the last ``TRENDREEL_ANALYTICS_DAYS`` days,
grouped by destination and theme (a theme's settings hold its credentials), and adds one reading
per video. One platform (or one theme's credentials) failing never stops the others: the report
names it, the log has it, and the next pull tries again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from jobs.models import Publication, PublicationMetrics, Theme
from stages import analytics
from stages.base import StageError
from stages.payload import json_safe
from stages.publish import is_done

log = logging.getLogger("trendreel.analytics")
SCHEDULE_NAME = "trendreel-analytics"
TASK = "jobs.tasks.pull_metrics"
NUMBERS = ("views", "likes", "comments", "shares", "avg_view_seconds")


def ensure_schedule() -> None:
    """The django-q2 schedule of the pull (connected to ``post_migrate``; ``manage.py worker`` calls it)."""
    from django_q.models import Schedule

    minutes = settings.TRENDREEL_ANALYTICS_MINUTES
    if not minutes:
        Schedule.objects.filter(name=SCHEDULE_NAME).delete()
        return
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": TASK, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
    )


@dataclass
class PullReport:
    read: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # destination -> readings stored
    failures: list[dict[str, str]] = field(default_factory=list)  # {destination, theme, kind, error, hint}

    def summary(self) -> str:
        parts = [f"{name}={n}" for name, n in sorted(self.read.items())]
        parts += [f"{f['destination']}@{f['theme']} failed ({f['kind']}): {f['error']}" for f in self.failures]
        return "; ".join(parts) or "nothing published to read"


def readable(since: datetime) -> QuerySet[Publication]:
    """Publications a reader can read: of a platform with numbers, published since ``since``."""
    return (
        Publication.objects.filter(destination__in=list(analytics.READERS), created__gte=since)
        .exclude(external_id="")
        .select_related("job__theme")
        .order_by("id")
    )


def pull_metrics(*, now: datetime | None = None) -> PullReport:
    """Read every recent video's numbers once and store them (see the module docstring)."""
    now = now or timezone.now()
    groups: dict[tuple[str, int], list[Publication]] = defaultdict(list)
    themes: dict[int, Theme] = {}
    for publication in readable(now - timedelta(days=settings.TRENDREEL_ANALYTICS_DAYS)):
        if is_done(publication):  # an upload still in progress is no video yet
            groups[(publication.destination, publication.job.theme_id)].append(publication)
            themes[publication.job.theme_id] = publication.job.theme
    report = PullReport()
    for (destination, theme_id), publications in sorted(groups.items()):
        theme = themes[theme_id]
        try:
            reader = analytics.build(destination, analytics.context_for(theme.as_input()))
            readings = reader.read(publications)
        except StageError as exc:
            report.failures.append(
                {
                    "destination": destination,
                    "theme": theme.slug,
                    "kind": exc.kind,
                    "error": exc.message,
                    "hint": exc.hint,
                }
            )
            log.warning("analytics: %s for theme %s failed (%s): %s", destination, theme.slug, exc.kind, exc.message)
            continue
        except Exception as exc:  # noqa: BLE001 - one platform's bug must not stop the others' readings
            log.exception("analytics: %s for theme %s failed unexpectedly", destination, theme.slug)
            report.failures.append(
                {
                    "destination": destination,
                    "theme": theme.slug,
                    "kind": "unexpected",
                    "error": str(exc)[:300],
                    "hint": "",
                }
            )
            continue
        known = {p.pk for p in publications}
        rows = [
            PublicationMetrics(
                publication_id=pk,
                fetched_at=now,
                views=r.views,
                likes=r.likes,
                comments=r.comments,
                shares=r.shares,
                avg_view_seconds=r.avg_view_seconds,
                raw=json_safe(r.raw),
            )
            for pk, r in readings.items()
            if pk in known
        ]
        PublicationMetrics.objects.bulk_create(rows)
        report.read[destination] += len(rows)
    return report


# -- reading back ----------------------------------------------------------------------------------
def with_latest(queryset: QuerySet[Publication]) -> QuerySet[Publication]:
    """Publications annotated with their latest reading's numbers (``latest_views``...; None before
    the first pull): one indexed subquery per number, no row per reading."""
    latest = PublicationMetrics.objects.filter(publication=OuterRef("pk")).order_by("-fetched_at", "-id")
    return queryset.annotate(
        latest_at=Subquery(latest.values("fetched_at")[:1]),
        **{f"latest_{name}": Subquery(latest.values(name)[:1]) for name in NUMBERS},
    )


@dataclass
class VideoResult:
    """A job's video across its platforms: the latest numbers summed, and how it was made."""

    job_id: int
    theme_id: int
    theme: str
    title: str
    published: datetime
    views: int
    likes: int
    comments: int
    shares: int
    avg_view_seconds: float | None
    destinations: dict[str, int]  # destination -> views
    patterns: dict[str, Any]


def video_results(*, theme_id: int | None = None, since: datetime | None = None) -> list[VideoResult]:
    """Every measured video (at least one reading), newest first, optionally of one theme and
    published since a time. The feedback loop's history and the dashboard's panel."""
    qs = with_latest(Publication.objects.all()).filter(latest_at__isnull=False).select_related("job__theme")
    if theme_id is not None:
        qs = qs.filter(job__theme_id=theme_id)
    if since is not None:
        qs = qs.filter(created__gte=since)
    by_job: dict[int, VideoResult] = {}
    watch: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for pub in qs.order_by("-created", "id"):
        views = pub.latest_views or 0
        result = by_job.get(pub.job_id)
        if result is None:
            meta = pub.meta or {}
            result = by_job[pub.job_id] = VideoResult(
                job_id=pub.job_id,
                theme_id=pub.job.theme_id,
                theme=pub.job.theme.name,
                title=str(meta.get("title") or f"Job {pub.job_id}"),
                published=pub.created,
                views=0,
                likes=0,
                comments=0,
                shares=0,
                avg_view_seconds=None,
                destinations={},
                patterns=dict(meta.get("patterns") or {}),
            )
        result.views += views
        result.likes += pub.latest_likes or 0
        result.comments += pub.latest_comments or 0
        result.shares += pub.latest_shares or 0
        result.destinations[pub.destination] = views
        result.published = min(result.published, pub.created)
        if pub.latest_avg_view_seconds is not None:
            watch[pub.job_id].append((pub.latest_avg_view_seconds, max(views, 1)))
        if not result.patterns and (pub.meta or {}).get("patterns"):
            result.patterns = dict(pub.meta["patterns"])
    for job_id, pairs in watch.items():  # a view-weighted mean across platforms
        by_job[job_id].avg_view_seconds = sum(s * w for s, w in pairs) / sum(w for _, w in pairs)
    return list(by_job.values())


def job_series(job_id: int) -> list[dict[str, Any]]:
    """A job's publications on platforms with numbers, each with its readings, oldest first."""
    publications = Publication.objects.filter(job_id=job_id, destination__in=list(analytics.READERS)).order_by(
        "destination"
    )
    readings = PublicationMetrics.objects.filter(publication__job_id=job_id).order_by("fetched_at", "id")
    series: dict[int, list[PublicationMetrics]] = defaultdict(list)
    for reading in readings:
        series[reading.publication_id].append(reading)
    return [
        {
            "destination": pub.destination,
            "external_id": pub.external_id,
            "url": (pub.meta or {}).get("url") or pub.location,
            "published": pub.created,
            "done": is_done(pub),
            "readings": series.get(pub.pk, []),
        }
        for pub in publications
    ]
