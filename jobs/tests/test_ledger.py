"""The cost ledger: each attempt's usage and cost (failed ones too), the calls counted through
stages.http, render CPU, the price table, and the database's cost sums."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

from jobs import orchestrator, prices
from jobs.models import Job, StageRun, Theme, utc_midnight
from jobs.tests.conftest import ROOT, TEST_FUNCTIONS, params
from stages.tests.fakeserver import FakeServer, Reply

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status
LEDGER_FUNCTIONS = {key: "jobs.tests.ledgerfns.run" for key in TEST_FUNCTIONS}
PRICES = {
    "openai/gpt-4o-mini": {"llm_tokens_in": "0.15", "llm_tokens_out": "0.60"},
    "elevenlabs": {"tts_characters": "300"},
    "fake": {"api_calls": "0.01", "upload_bytes": "1000"},
    "local": {"render_cpu_seconds": "36"},
}


@pytest.fixture
def ledger(engine):
    engine.TRENDREEL_STAGE_FUNCTIONS = LEDGER_FUNCTIONS
    engine.TRENDREEL_PRICES = PRICES
    engine.TRENDREEL_FETCH_ALLOW = ["127.0.0.1"]
    return engine


def start(theme, call_log, tmp_path, *, spend=None, calls=None, cpu=None, **behave) -> Job:
    p = params(call_log, tmp_path, **behave) | {"spend": spend or {}, "calls": calls or [], "cpu": cpu}
    return orchestrator.start_job(theme, params=p)


SPEND = {
    "openai/gpt-4o-mini": {"llm_tokens_in": 1_000_000, "llm_tokens_out": 500_000},
    "elevenlabs": {"tts_characters": 1000},
}


def test_usage_and_cost_are_recorded_on_every_attempt_failed_ones_too(ledger, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, spend=SPEND, script_generation=["transient", "ok"])
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    failed, succeeded = job.runs.filter(stage="script_generation").order_by("attempt")
    assert (failed.status, succeeded.status) == (RS.FAILED, RS.SUCCEEDED)
    # 1M tokens in at $0.15 + 0.5M out at $0.60 + 1000 characters at $300 per 1M = $0.75
    for run in (failed, succeeded):
        assert run.usage["openai/gpt-4o-mini"] == {"llm_tokens_in": 1_000_000, "llm_tokens_out": 500_000}
        assert run.usage["elevenlabs"] == {"tts_characters": 1000}
        assert run.cost == Decimal("0.750000")
    # every attempt spent the same: 7 attempts of the 6 stages before review (the gate spends nothing)
    assert job.runs.count() == 8
    assert job.runs.cost_total() == Decimal("5.25")
    assert Job.objects.with_cost().get(pk=job.pk).total_cost == Decimal("5.25")
    assert job.runs.cost_by_stage()["script_generation"] == Decimal("1.5")


def test_a_permanent_failure_records_its_usage_too(ledger, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, spend=SPEND, trend_collection=["permanent"])
    job = orchestrator.run_inline(job.pk)
    run = job.runs.get()
    assert (job.status, run.status) == (Job.Status.FAILED, RS.FAILED)
    assert run.cost == Decimal("0.75") and run.usage["elevenlabs"]["tts_characters"] == 1000


def test_a_timed_out_attempt_keeps_its_usage(ledger, theme, call_log, tmp_path):
    ledger.TRENDREEL_STAGE_POLICY["trend_collection"].update(time_limit=0.5, max_attempts=1)
    job = orchestrator.run_inline(start(theme, call_log, tmp_path, spend=SPEND, trend_collection=["sleep:5"]).pk)
    run = job.runs.get()
    assert (run.status, run.error_kind) == (RS.FAILED, "timeout")
    assert run.usage["elevenlabs"] == {"tts_characters": 1000} and run.cost == Decimal("0.75")


def test_requests_through_stages_http_count_as_api_calls_and_upload_bytes(ledger, theme, call_log, tmp_path):
    with FakeServer() as srv:
        srv.route("POST", "/v1/x", [Reply(503), Reply(200, json={"ok": True})])
        job = start(theme, call_log, tmp_path, calls=[srv.url("/v1/x"), srv.url("/v1/x")])
        job = orchestrator.run_inline(job.pk)
    run = job.runs.get(stage="trend_collection")
    # three requests sent (the 503 was retried in-call), each with a 1000-byte body
    assert len(srv.requests) == 3
    assert run.usage["fake"] == {"api_calls": 3, "upload_bytes": 3000}
    assert run.cost == Decimal("0.033")  # 3 calls at 1 cent, 3000 bytes at $1000 a GB


def test_children_cpu_is_render_cpu_of_the_attempt(ledger, theme, call_log, tmp_path):
    job = orchestrator.run_inline(start(theme, call_log, tmp_path, cpu=300_000).pk)
    run = job.runs.get(stage="trend_collection")
    cpu = run.usage["local"]["render_cpu_seconds"]
    assert cpu > 0.05
    assert run.cost == (Decimal(str(cpu)) * Decimal("0.01")).quantize(prices.QUANTUM)  # $36 a CPU hour
    assert "local" not in job.runs.get(stage="trend_analysis").usage  # no child: no render CPU


def test_an_attempt_that_spent_nothing_costs_nothing(ledger, theme, call_log, tmp_path):
    job = orchestrator.run_inline(start(theme, call_log, tmp_path).pk)
    run = job.runs.get(stage="trend_analysis")
    assert (run.usage, run.cost) == ({}, Decimal(0))


# --- prices -----------------------------------------------------------------------------------


def test_prices_match_the_longest_key_at_a_boundary():
    table = prices.parse({"openai/gpt-4o": {"llm_tokens_in": 2.5}, "openai/gpt-4o-mini": {"llm_tokens_in": 0.15}})
    assert prices.unit_price("openai/gpt-4o-mini-2024-07-18", "llm_tokens_in", table) == Decimal("0.15") / 10**6
    assert prices.unit_price("openai/gpt-4o", "llm_tokens_in", table) == Decimal("2.5") / 10**6
    assert prices.unit_price("openai/gpt-4oX", "llm_tokens_in", table) is None  # not at a boundary
    assert prices.unit_price("localhost:11434/llama3.1:8b", "llm_tokens_in", table) is None
    usage = {"openai/gpt-4o-mini": {"llm_tokens_in": 2_000_000}, "localhost:11434/llama3": {"llm_tokens_in": 10**9}}
    assert prices.cost_of(usage, table) == Decimal("0.30")  # the self-hosted model is free


def test_the_default_table_prices_the_providers_and_render_cpu(settings):
    table = prices.parse(settings.TRENDREEL_PRICES)
    assert prices.unit_price("openai/gpt-4o-mini", "llm_tokens_out", table) == Decimal("0.6") / 10**6
    assert prices.line_cost("local", "render_cpu_seconds", 3600, table) == Decimal("0.045")
    assert prices.line_cost("piper", "tts_characters", 10**6, table) == 0
    assert prices.line_cost("youtube", "upload_bytes", 10**9, table) == 0


@pytest.mark.parametrize(
    "raw, message",
    [
        ([1, 2], "must be a JSON object"),
        ({"openai": 3}, "['openai'] must be an object"),
        ({"openai": {"tokens": 1}}, "['openai']['tokens'] is not a usage metric"),
        ({"openai": {"api_calls": -1}}, "must be between 0"),
        ({"openai": {"api_calls": "NaN"}}, "must be between 0"),
        ({"openai": {"api_calls": "cheap"}}, "must be a number"),
        ({"openai": {"api_calls": True}}, "must be a number"),
        ({"": {"api_calls": 1}}, "non-empty"),
    ],
)
def test_a_malformed_price_table_is_refused_saying_where(raw, message):
    with pytest.raises(prices.PriceError) as exc:
        prices.parse(raw)
    assert message in str(exc.value)


def manage(prices_json: str, *args: str) -> subprocess.CompletedProcess:
    """``manage.py args`` in a fresh process with ``TRENDREEL_PRICES=prices_json``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")} | {"TRENDREEL_PRICES": prices_json}
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_malformed_price_table_stops_start_up():
    result = manage('{"openai/gpt-4o-mini": {"llm_tokens": 1}}', "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured: TRENDREEL_PRICES: ['openai/gpt-4o-mini']['llm_tokens'] is not a usage metric" in (
        result.stderr
    )


def test_the_environment_table_is_merged_over_the_defaults():
    code = "from django.conf import settings as s; p = s.TRENDREEL_PRICES; print(p['openai/gpt-4o-mini'], p['mine'], p['local'])"
    result = manage(
        '{"openai/gpt-4o-mini": {"llm_tokens_in": 0.2}, "mine": {"api_calls": "0.001"}}', "shell", "-c", code
    )
    assert result.returncode == 0, result.stderr
    assert (
        "{'llm_tokens_in': '0.2', 'llm_tokens_out': '0.6'} {'api_calls': '0.001'} {'render_cpu_seconds': '0.045'}"
        in result.stdout
    )


# --- sums -------------------------------------------------------------------------------------


def _run(job, stage, cost, finished, attempt=1):
    return StageRun.objects.create(
        job=job, stage=stage, attempt=attempt, status=RS.SUCCEEDED, finished_at=finished, cost=Decimal(cost)
    )


def test_cost_per_theme_and_utc_day_is_summed_by_the_database(django_assert_num_queries):
    now = utc_midnight() + timedelta(hours=12)
    a, b = Theme.objects.create(name="A", slug="a"), Theme.objects.create(name="B", slug="b")
    ja, jb = Job.objects.create(theme=a), Job.objects.create(theme=b)
    _run(ja, "script_generation", "0.10", now)
    _run(ja, "voiceover", "0.25", now - timedelta(hours=1))
    _run(ja, "voiceover", "1.00", now - timedelta(days=1), attempt=2)
    _run(jb, "composition", "0.05", now - timedelta(days=1))
    _run(jb, "publish", "9.99", now - timedelta(days=20))  # outside the 14 days
    _run(jb, "review", "0", now)  # nothing spent: no point
    with django_assert_num_queries(1):
        rows = StageRun.objects.cost_by_theme_day(14, now=now)
    today, yesterday = now.date(), (now - timedelta(days=1)).date()
    assert [(r["theme"], r["day"], r["total"]) for r in rows] == [
        ("a", yesterday, Decimal("1")),
        ("b", yesterday, Decimal("0.05")),
        ("a", today, Decimal("0.35")),
    ]
    with django_assert_num_queries(1):
        assert a.spent_today(now) == Decimal("0.35")
    assert b.spent_today(now) == 0
