"""What the console shows of the cost ledger: a job's cost table (per stage, provider and metric)
and the dashboard's chart of spend per theme per UTC day. Server-rendered SVG geometry (no
script, no inline style: colours come from ``console.css``'s ``.cost-c0``..``.cost-c7``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from console.metrics import _ticks
from jobs import prices
from jobs.models import Job, StageRun, utc_midnight
from stages import pipeline

CHART_DAYS = 14
CHART_W, CHART_H, PAD_L, PAD_R, PAD_T, PAD_B = 720, 240, 58, 10, 22, 34
COLOURS = 8  # .cost-c0 .. .cost-c7; more themes than that share the last one as "other themes"
METRIC_LABELS = {
    "llm_tokens_in": "LLM tokens in",
    "llm_tokens_out": "LLM tokens out",
    "tts_characters": "TTS characters",
    "api_calls": "API calls",
    "upload_bytes": "uploaded",
    "render_cpu_seconds": "render CPU",
}


def amount(metric: str, value: float) -> str:
    """A usage amount for people: ``12,345``, ``3.2 MB``, ``41.5 s``."""
    if metric == "upload_bytes":
        for size, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if value >= size:
                return f"{value / size:.1f} {unit}"
        return f"{value:.0f} B"
    if metric == "render_cpu_seconds":
        return f"{value:,.1f} s"
    return f"{value:,.0f}"


def job_cost(job: Job) -> dict[str, Any]:
    """The job page's cost table: per stage its recorded cost and what its attempts used.

    Stage costs and the total are the database's sums of the recorded ``cost`` (the price table
    of the time each attempt ended); a line's cost is its amount at today's table, None when the
    table has no price for it (it cost nothing).
    """
    runs = job.runs.all()
    by_stage = runs.cost_by_stage()
    used: dict[str, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    attempts: dict[str, int] = defaultdict(int)
    for stage, usage in runs.exclude(usage={}).values_list("stage", "usage"):
        attempts[stage] += 1
        for provider, counts in (usage or {}).items():
            for metric, value in (counts or {}).items():
                if metric in METRIC_LABELS and isinstance(value, int | float):
                    used[stage][(provider, metric)] += value
    table = prices.table()
    stages = []
    for key in pipeline.STAGE_KEYS:
        if key not in used and not by_stage.get(key):
            continue
        lines = [
            {
                "provider": provider,
                "metric": METRIC_LABELS[metric],
                "amount": amount(metric, value),
                "cost": prices.line_cost(provider, metric, value, table),
                "unit": prices.UNITS[metric][1],
            }
            for (provider, metric), value in sorted(used[key].items())
        ]
        stages.append(
            {
                "stage": key,
                "label": pipeline.spec(key).label,
                "cost": by_stage.get(key, Decimal(0)),
                "attempts": attempts[key],
                "lines": lines,
            }
        )
    return {"stages": stages, "total": sum(by_stage.values(), Decimal(0))}


def short_money(value: Decimal) -> str:
    """A bar's label: ``$123``, ``$1.20``, ``$0.42``, ``<$0.01``."""
    if value >= 100:
        return f"${value:,.0f}"
    if value >= Decimal("0.01"):
        return f"${value:.2f}"
    return "<$0.01" if value > 0 else ""


def _money_tick(value: float, top: float) -> str:
    return f"${value:,.0f}" if top >= 10 else f"${value:,.2f}"


def cost_chart(days: int = CHART_DAYS, now=None) -> dict[str, Any]:
    """The dashboard's stacked bars: per UTC day the spend of each theme, last ``days`` days."""
    now = now or timezone.now()
    rows = StageRun.objects.cost_by_theme_day(days, now=now)
    first: date = (utc_midnight(now) - timedelta(days=days - 1)).date()
    day_list = [first + timedelta(days=i) for i in range(days)]
    totals: dict[str, Decimal] = defaultdict(Decimal)
    names: dict[str, str] = {}
    for row in rows:
        totals[row["theme"]] += row["total"]
        names[row["theme"]] = row["name"]
    ranked = sorted(totals, key=lambda slug: (-totals[slug], slug))
    shown = ranked if len(ranked) <= COLOURS else ranked[: COLOURS - 1]
    colour = {slug: i for i, slug in enumerate(shown)}
    legend = [{"name": names[s], "slug": s, "total": totals[s], "colour": colour[s]} for s in shown]
    if len(ranked) > len(shown):
        rest = ranked[len(shown) :]
        legend.append(
            {
                "name": f"{len(rest)} other themes",
                "slug": "",
                "total": sum((totals[s] for s in rest), Decimal(0)),
                "colour": COLOURS - 1,
            }
        )
    per_day: dict[date, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in rows:
        per_day[row["day"]][colour.get(row["theme"], COLOURS - 1)] += row["total"]
    day_totals = {d: sum(per_day[d].values(), Decimal(0)) for d in day_list}
    chart: dict[str, Any] = {
        "width": CHART_W,
        "height": CHART_H,
        "days": days,
        "legend": legend,
        "total": sum(day_totals.values(), Decimal(0)),
        "today": day_totals[day_list[-1]],
        "bars": [],
        "grid": [],
        "labels": [],
    }
    if not rows:
        return chart
    top_value = float(max(day_totals.values()))
    grid = _ticks(top_value)
    top = grid[-1] or 1.0
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    bottom = PAD_T + plot_h
    slot = plot_w / days
    bar_w = round(slot * 0.64, 1)

    def height(value: Decimal) -> float:
        return float(value) / top * plot_h

    chart["grid"] = [{"y": round(bottom - v / top * plot_h, 1), "label": _money_tick(v, top)} for v in grid]
    chart["axis"] = {"left": PAD_L, "right": CHART_W - PAD_R, "bottom": bottom, "tick_x": PAD_L - 6}
    for i, day in enumerate(day_list):
        centre = PAD_L + slot * (i + 0.5)
        x = round(centre - bar_w / 2, 1)
        y = float(bottom)
        segments = []
        for c in sorted(per_day[day]):
            h = height(per_day[day][c])
            y -= h
            name = next((e["name"] for e in legend if e["colour"] == c), "")
            segments.append(
                {
                    "x": x,
                    "y": round(y, 1),
                    "w": bar_w,
                    "h": round(max(h, 0.5), 1),
                    "colour": c,
                    "title": f"{name}, {day:%b %-d}: {prices.money(per_day[day][c])}",
                }
            )
        label = {"x": round(centre, 1), "day": f"{day:%-d}", "y": bottom + 14}
        if i == 0 or day.day == 1:
            label["month"] = f"{day:%b}"
            label["month_y"] = bottom + 27
        chart["labels"].append(label)
        chart["bars"].append(
            {
                "segments": segments,
                "total": short_money(day_totals[day]),
                "total_x": round(centre, 1),
                "total_y": round(y - 4, 1),
                "today": i == days - 1,
            }
        )
    return chart
