"""What the console shows of published videos' numbers: the job page's chart and the dashboard's
"best videos" panel. Server-rendered SVG geometry (no script, no inline style: a
Content-Security-Policy allows neither; colours come from ``console/static/console/metrics.css``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from jobs import analytics

BEST_TTL = 60  # seconds: the pull runs hourly; the dashboard needs not count on every load
CHART_W, CHART_H, PAD_L, PAD_B, PAD_T, PAD_R = 600, 180, 54, 24, 10, 12
DIMENSION_LABELS = {
    "hook": "Hook",
    "length": "Length (s)",
    "caption_style": "Caption opens with",
    "voice": "Voice",
    "keywords": "Topic keyword",
}


def compact(n: float | int | None) -> str:
    """1520 -> "1.5k", 2_300_000 -> "2.3M"; "–" for nothing."""
    if n is None:
        return "–"
    n = float(n)
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
    return f"{n:.0f}"


def _ticks(top: float) -> list[float]:
    """Round gridlines from 0 to the first one at or above ``top`` (at most four of them)."""
    if top <= 0:
        return [0.0, 1.0]
    step = 10 ** math.floor(math.log10(top))
    for factor in (1, 2, 5, 10):
        if math.ceil(top / (step * factor)) <= 3:
            step *= factor
            break
    return [step * i for i in range(math.ceil(top / step) + 1)]


def job_chart(job_id: int) -> dict[str, Any]:
    """The job page's views-over-time chart and latest numbers, per platform."""
    series = analytics.job_series(job_id)
    for s in series:
        s["latest"] = s["readings"][-1] if s["readings"] else None
    readings = [r for s in series for r in s["readings"]]
    chart: dict[str, Any] = {"series": series, "width": CHART_W, "height": CHART_H, "lines": [], "grid": []}
    if not readings:
        return chart
    start = min([s["published"] for s in series] + [r.fetched_at for r in readings])
    end = max(r.fetched_at for r in readings)
    span = max((end - start).total_seconds(), 3600.0)
    grid = _ticks(max([r.views or 0 for r in readings] + [1]))
    top = grid[-1] or 1
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def x(when) -> float:
        return PAD_L + (when - start).total_seconds() / span * plot_w

    def y(value: float) -> float:
        return PAD_T + plot_h - value / top * plot_h

    chart["grid"] = [{"y": round(y(v), 1), "label": compact(v)} for v in grid]
    chart["axis"] = {"left": PAD_L, "right": CHART_W - PAD_R, "bottom": PAD_T + plot_h, "label_y": CHART_H - 6}
    chart["start"], chart["end"] = start, end
    for s in series:
        latest = s["latest"]
        if latest is None:
            continue
        points = [(x(s["published"]), y(0))] + [(x(r.fetched_at), y(r.views or 0)) for r in s["readings"]]
        chart["lines"].append(
            {
                "destination": s["destination"],
                "points": " ".join(f"{px:.1f},{py:.1f}" for px, py in points),
                "dots": [{"x": round(px, 1), "y": round(py, 1)} for px, py in points[1:]],
                "label": f"{s['destination']} {compact(latest.views)}",
            }
        )
    return chart


def best_videos(limit: int = 5) -> dict[str, Any]:
    """The dashboard's panel: per theme its most-viewed recent videos; per pattern the options'
    average views (what the feedback loop learns from). Cached ``BEST_TTL`` seconds."""
    key = "console:best-videos"
    cached = cache.get(key)
    if cached is not None:
        return cached
    since = timezone.now() - timedelta(days=max(90, settings.TRENDREEL_ANALYTICS_DAYS))
    results = analytics.video_results(since=since)
    by_theme: dict[str, list[analytics.VideoResult]] = defaultdict(list)
    for video in results:
        by_theme[video.theme].append(video)
    top = max([v.views for v in results] + [1])
    themes = []
    for theme, videos in sorted(by_theme.items(), key=lambda kv: -max(v.views for v in kv[1])):
        best = sorted(videos, key=lambda v: (-v.views, -v.job_id))[:limit]
        themes.append(
            {
                "theme": theme,
                "videos": [
                    {
                        "job_id": v.job_id,
                        "title": v.title,
                        "views": v.views,
                        "shown_views": compact(v.views),
                        "likes": compact(v.likes),
                        "avg": None if v.avg_view_seconds is None else round(v.avg_view_seconds, 1),
                        "bar": round(v.views / top * 100, 1),
                        "destinations": sorted(v.destinations),
                    }
                    for v in best
                ],
                "count": len(videos),
            }
        )
    data = {"themes": themes[:6], "patterns": pattern_table(results), "videos": len(results)}
    cache.set(key, data, BEST_TTL)
    return data


def pattern_table(results: list[analytics.VideoResult], per_dimension: int = 3) -> list[dict[str, Any]]:
    """Per pattern dimension, its best options by average views (with how many videos had them)."""
    groups: dict[str, dict[Any, list[int]]] = defaultdict(lambda: defaultdict(list))
    for video in results:
        for name, value in video.patterns.items():
            values = value if name == "keywords" and isinstance(value, list) else [value]
            for v in values:
                if v not in (None, "", []) and isinstance(v, str | int):
                    groups[name][v].append(video.views)
    rows = []
    top = max([sum(v) / len(v) for d in groups.values() for v in d.values()] + [1])
    for name in DIMENSION_LABELS:
        options = groups.get(name)
        if not options:
            continue
        ranked = sorted(options.items(), key=lambda kv: (-sum(kv[1]) / len(kv[1]), str(kv[0])))[:per_dimension]
        rows.append(
            {
                "dimension": DIMENSION_LABELS[name],
                "options": [
                    {
                        "value": value,
                        "videos": len(views),
                        "mean": compact(sum(views) / len(views)),
                        "bar": round(sum(views) / len(views) / top * 100, 1),
                    }
                    for value, views in ranked
                ],
            }
        )
    return rows
