"""The cost ledger in the console: the job page's cost table, the job API's usage and cost, the
dashboard's spend chart (with data, with many themes, and empty), and a screenshot of it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from console import costs
from console.tests.test_api import token  # noqa: F401 - the token fixture
from console.tests.test_browser import ARTIFACTS, browser, login, make_user, shot  # noqa: F401 - the browser fixture
from console.tests.test_browser import page as page  # noqa: F401 - a fixture
from console.tests.test_views import staff
from jobs.models import Job, StageRun, Theme, utc_midnight
from jobs.orchestrator import clock

pytestmark = pytest.mark.django_db(transaction=True)
SPEND = {
    "trend_collection": {"feed": {"api_calls": 4}},
    "script_generation": {
        "openai/gpt-4o-mini": {"llm_tokens_in": 2400, "llm_tokens_out": 900},
        "openai": {"api_calls": 1},
    },
    "scene_generation": {"pexels": {"api_calls": 6}},
    "voiceover": {"elevenlabs": {"tts_characters": 780, "api_calls": 7}},
    "composition": {"local": {"render_cpu_seconds": 41.5}},
    "publish": {"youtube": {"api_calls": 3, "upload_bytes": 14_500_000}},
}


def spend(job: Job, when, *, scale: float = 1.0, failed_voice: bool = False) -> None:
    """Attempts for each stage with the usage above, priced by the default table."""
    from jobs import prices

    for stage, usage in SPEND.items():
        usage = {p: {m: v * scale for m, v in c.items()} for p, c in usage.items()}
        attempts = 2 if failed_voice and stage == "voiceover" else 1
        for attempt in range(1, attempts + 1):
            StageRun.objects.create(
                job=job,
                stage=stage,
                attempt=attempt,
                status="failed" if attempt < attempts else "succeeded",
                finished_at=when,
                usage=usage,
                cost=prices.cost_of(usage),
            )


def fleet(days: int = 14) -> list[Theme]:
    """Four themes with a fortnight of jobs of different sizes (some days without any)."""
    themes = [
        Theme.objects.create(name=name, slug=name.lower().replace(" ", "-"))
        for name in ("Tech pulse", "Money minute", "Space daily", "Retro games")
    ]
    noon = utc_midnight() + timedelta(hours=12)
    for day in range(days):
        for i, theme in enumerate(themes):
            if (day + i) % 5 == 3:
                continue
            job = Job.objects.create(theme=theme, status=Job.Status.COMPLETED)
            spend(job, noon - timedelta(days=day), scale=(1 + i) * (1 + (day * 7 + i * 3) % 6) * 3)
    return themes


def test_the_job_page_shows_the_cost_per_stage_and_metric(client, theme):
    job = Job.objects.create(theme=theme, status=Job.Status.AWAITING_REVIEW)
    spend(job, clock.now(), failed_voice=True)
    client.force_login(staff("view_job"))
    html = client.get(reverse("console:job_detail", args=[job.pk])).content.decode()
    assert 'id="job-cost-table"' in html
    cost = costs.job_cost(job)
    voice = next(s for s in cost["stages"] if s["stage"] == "voiceover")
    assert voice["attempts"] == 2  # the failed attempt's spend counts
    assert voice["cost"] == Decimal("0.468")  # 2 x 780 characters at $300 per 1M
    assert {(line["provider"], line["metric"], line["amount"]) for line in voice["lines"]} == {
        ("elevenlabs", "TTS characters", "1,560"),
        ("elevenlabs", "API calls", "14"),
    }
    publish = next(s for s in cost["stages"] if s["stage"] == "publish")
    assert [line["amount"] for line in publish["lines"]] == ["3", "14.5 MB"]
    assert cost["total"] == job.runs.cost_total() == Job.objects.with_cost().get(pk=job.pk).total_cost
    assert cost["total"] == Decimal("0.469419")  # voice $0.468, tokens $0.0009, render CPU $0.000519
    assert 'id="job-cost-total">$0.47<' in html and "14.5 MB" in html and "LLM tokens in" in html
    assert "$0.000519" in html  # a small line keeps its significant digits


def test_a_job_without_usage_says_so(client, theme):
    job = Job.objects.create(theme=theme)
    client.force_login(staff("view_job"))
    html = client.get(reverse("console:job_detail", args=[job.pk])).content.decode()
    assert 'id="job-cost-empty"' in html


def test_the_job_api_has_usage_and_cost_per_run_and_the_total(client, token, theme):  # noqa: F811
    job = Job.objects.create(theme=theme, status=Job.Status.AWAITING_REVIEW)
    spend(job, clock.now(), failed_voice=True)
    body = client.get(f"/api/jobs/{job.pk}", headers={"Authorization": f"Bearer {token}"}).json()
    voice = [r for r in body["runs"] if r["stage"] == "voiceover"]
    assert [r["usage"] for r in voice] == [{"elevenlabs": {"tts_characters": 780.0, "api_calls": 7.0}}] * 2
    assert [r["cost"] for r in voice] == ["0.234000", "0.234000"]
    assert body["cost"]["total"] == str(job.runs.cost_total())
    assert body["cost"]["by_stage"]["voiceover"] == "0.468000"


def test_the_dashboard_chart_has_a_bar_per_day_a_colour_per_theme_and_totals(client):
    themes = fleet()
    client.force_login(staff("view_job"))
    html = client.get(reverse("console:dashboard")).content.decode()
    assert 'id="cost-chart"' in html and "cost-chart-empty" not in html
    chart = costs.cost_chart()
    assert len(chart["bars"]) == 14 and len(chart["labels"]) == 14
    assert {e["slug"] for e in chart["legend"]} == {t.slug for t in themes}
    assert len({e["colour"] for e in chart["legend"]}) == 4
    assert chart["total"] == StageRun.objects.cost_total()
    assert chart["legend"][0]["total"] >= chart["legend"][-1]["total"]  # biggest spender first
    top = max(s["y"] for b in chart["bars"] for s in b["segments"])  # every segment inside the plot
    assert (
        all(s["y"] >= costs.PAD_T - 0.5 for b in chart["bars"] for s in b["segments"])
        and top <= chart["axis"]["bottom"]
    )
    for theme in themes:
        assert theme.name in html


def test_more_themes_than_colours_share_other(client):
    noon = utc_midnight() + timedelta(hours=12)
    for i in range(10):
        theme = Theme.objects.create(name=f"T{i}", slug=f"t{i}")
        StageRun.objects.create(job=Job.objects.create(theme=theme), stage="voiceover", finished_at=noon, cost=i + 1)
    chart = costs.cost_chart()
    assert len(chart["legend"]) == costs.COLOURS
    assert chart["legend"][-1]["name"] == "3 other themes" and chart["legend"][-1]["total"] == Decimal(6)


def test_the_chart_says_when_nothing_was_spent(client, theme):
    StageRun.objects.create(
        job=Job.objects.create(theme=theme), stage="voiceover", finished_at=clock.now() - timedelta(days=20), cost=3
    )
    client.force_login(staff("view_job"))
    html = client.get(reverse("console:dashboard")).content.decode()
    assert 'id="cost-chart-empty"' in html and '<svg class="tr-chart cost-chart"' not in html


@pytest.mark.browser
def test_the_dashboard_chart_in_a_browser(page, live_server):
    fleet()
    make_user("operator", "view_job")
    login(page, live_server.url, "operator")
    page.goto(live_server.url + reverse("console:dashboard"))
    chart = page.locator("#cost-chart svg.cost-chart")
    chart.wait_for()
    assert chart.bounding_box()["width"] > 500
    assert page.locator("#cost-legend li").count() == 4
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#cost-chart").screenshot(path=str(ARTIFACTS / "cost-chart.png"))
    shot(page, "dashboard-costs")


@pytest.mark.browser
def test_the_job_cost_table_and_the_lineage_panel_in_a_browser(page, live_server):
    from console.tests.test_lineage import OUTPUTS

    theme = Theme.objects.create(name="Tech pulse", slug="tech-pulse")
    job = Job.objects.create(theme=theme, status=Job.Status.AWAITING_REVIEW)
    spend(job, clock.now(), failed_voice=True)
    for stage, output in OUTPUTS.items():
        job.runs.filter(stage=stage, status="succeeded").update(output=output)
    make_user("operator", "view_job")
    login(page, live_server.url, "operator")
    page.goto(live_server.url + reverse("console:job_detail", args=[job.pk]))
    table = page.locator("#job-cost-table")
    table.wait_for()
    assert page.locator("#job-cost-table tbody.cost-stage").count() == len(SPEND)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#job-cost").screenshot(path=str(ARTIFACTS / "job-cost.png"))
    page.goto(live_server.url + reverse("console:review", args=[job.pk]))
    page.locator("#lineage").wait_for()
    assert "ThisIsEngineering" in page.locator("#lineage").inner_text()
    page.locator("#lineage").screenshot(path=str(ARTIFACTS / "lineage.png"))
