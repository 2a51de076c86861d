"""The console's time maths: a job's timeline bars, its stage table, the dashboard's stage chart.

Plain functions over rows the views already loaded (no queries here, except the cached stage
statistics): the views only choose what to load and which template to render.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache

from jobs.models import StageRun
from stages import pipeline

RS = StageRun.Status
STATS_KEY = "console:stage-stats"
STATS_TTL = 60  # seconds: the stage chart does not need to move every poll


def place_bars(runs: list[StageRun], *, since: datetime, now: datetime) -> float:
    """Give each run ``bar_left`` and ``bar_width`` (percent of the job's span); return the span in s.

    The span runs from the first start (or ``since``, the job's creation, for a job with no run) to
    the last finish, a running attempt ending ``now``; it is at least one second.
    """
    start = min((r.started_at or r.queued_at for r in runs), default=since)
    end = max([r.finished_at or now for r in runs] + [start + timedelta(seconds=1)])
    span = (end - start).total_seconds() or 1.0
    for run in runs:
        begin = run.started_at or run.queued_at
        stop = run.finished_at or (now if run.status in (RS.RUNNING, RS.WAITING) else begin)
        run.bar_left = (begin - start).total_seconds() / span * 100
        run.bar_width = max(0.6, (stop - begin).total_seconds() / span * 100)
    return span


def latest_per_stage(runs: list[StageRun]) -> list[dict]:
    """The stage table: every stage of the pipeline with its latest attempt (``None`` before the first)."""
    latest: dict[str, StageRun] = {}
    for run in runs:
        latest[run.stage] = run
    return [{"spec": spec, "run": latest.get(spec.key)} for spec in pipeline.STAGES]


@dataclass(frozen=True)
class StageRow:
    stage: str
    label: str
    total: int
    succeeded: int
    median: float | None

    @property
    def rate(self) -> float | None:
        return (self.succeeded / self.total) if self.total else None


def stage_chart(now: datetime) -> list[dict]:
    """The dashboard's chart: per stage (gates left out), the 24 h and 7 day success rate and median
    duration, with bar widths relative to the longest median. Cached for ``STATS_TTL`` seconds (the
    live part of the dashboard polls every 2 s; the chart needs not)."""
    cached = cache.get(STATS_KEY)
    if cached is not None:
        return cached
    raw = StageRun.objects.stage_stats(now - timedelta(days=1), now - timedelta(days=7))

    def row(spec, label: str) -> StageRow:
        total, ok, median = raw.get(spec.key, {}).get(label) or (0, 0, None)
        return StageRow(spec.key, spec.label, total, ok, float(median) if median is not None else None)

    specs = [s for s in pipeline.STAGES if not s.gate]
    day, week = [row(s, "day") for s in specs], [row(s, "week") for s in specs]
    longest = max([r.median or 0 for r in day + week] + [0.001])
    chart = [
        {
            "stage": d.stage,
            "label": d.label,
            "total": d.total,
            "rate": d.rate,
            "median": d.median,
            "week": {"total": w.total, "rate": w.rate, "median": w.median},
            "day_width": (d.median or 0) / longest * 100,
            "week_width": (w.median or 0) / longest * 100,
        }
        for d, w in zip(day, week, strict=True)
    ]
    cache.set(STATS_KEY, chart, STATS_TTL)
    return chart
