"""Times compared across hosts come from the database's clock, not each host's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs import orchestrator
from jobs.models import Job, StageRun
from jobs.orchestrator import clock
from jobs.tests.conftest import job_status, params, wait_for
from jobs.tests.stagefns import calls

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status


def database_now() -> datetime:
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT clock_timestamp()")
            return cur.fetchone()[0]
        cur.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")  # SQLite: the C library's clock
        return datetime.fromisoformat(cur.fetchone()[0]).replace(tzinfo=UTC)


def test_the_clock_follows_the_database_whatever_this_host_says(monkeypatch):
    real_now = timezone.now
    for skew in (-45.0, 30.0):
        monkeypatch.setattr(timezone, "now", lambda skew=skew: real_now() + timedelta(seconds=skew))
        clock.reset()
        assert abs((clock.now() - database_now()).total_seconds()) < 1.0
    monkeypatch.setattr(timezone, "now", real_now)
    clock.reset()


@pytest.mark.cluster
@pytest.mark.parametrize("skew", [-30.0, -4.0])
def test_a_worker_with_a_skewed_clock_neither_crashes_live_runs_nor_drops_due_retries(
    skew, start_worker, theme, call_log, tmp_path
):
    """A worker host whose clock is behind: its heartbeats looked stale to the sweeper of another
    host (threshold 1.5 s here) and its live runs were swept as crashed; the retries that sweeper
    pushed when due were refused by the worker ("not due yet") and dropped. Here this test process
    sweeps as that other host while a skewed worker runs a job with a backoff retry and a slow stage."""
    worker = start_worker("worker", skew=skew)
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path, script_generation=["transient", "sleep:2"]))

    def in_review() -> bool:
        orchestrator.sweep()  # another host's sweeper, on a correct clock
        return job_status(job.pk) == Job.Status.AWAITING_REVIEW

    wait_for(in_review, timeout=60, interval=0.2, what="review", log=worker.log)
    assert not job.runs.filter(status=RS.CRASHED).exists()
    runs = list(job.runs.filter(stage="script_generation").order_by("attempt"))
    assert [r.status for r in runs] == [RS.FAILED, RS.SUCCEEDED]
    assert runs[1].started_at >= runs[1].not_before  # due times kept, on the database's clock
    assert [s for s, _ in calls(call_log)].count("script_generation") == 2
