"""The hot path's statements are prepared once per PostgreSQL session (``DB_PREPARED``).

Planning the claim, the record and the review gate's question cost PostgreSQL more than running
them (bench/RESULTS.md); prepared, each is planned once per session. A prepared statement that
went stale (dropped by ``DISCARD ALL``/``DEALLOCATE``, as a pooler may do) is prepared again, so
no work stops. On SQLite the same code runs with Django's plain cursor.
"""

from __future__ import annotations

import pytest
from django.db import connection

from jobs import orchestrator
from jobs.models import StageRun
from jobs.orchestrator import statements
from jobs.tests.test_orchestrator import start
from stages import pipeline

RS = StageRun.Status
CLAIM = "WITH r AS (UPDATE"


def prepared_claims() -> int | None:
    """How many prepared statements of this session are the claim (None: not PostgreSQL)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [CLAIM + "%"])
        return cur.fetchone()[0]


def run_next(job) -> str:
    return orchestrator.execute_run(job.runs.get(status=RS.QUEUED).pk)


@pytest.mark.django_db(transaction=True)
def test_the_claim_is_prepared_once_and_reused(engine, theme, call_log, tmp_path):
    engine.DB_PREPARED = True
    job = start(theme, call_log, tmp_path)
    for _ in range(3):
        assert run_next(job) == "succeeded"
    assert job.runs.get(stage=pipeline.STAGE_KEYS[3]).status == RS.QUEUED
    assert prepared_claims() in (None, 1)  # PostgreSQL: one statement for three claims
    if connection.vendor == "postgresql":
        with statements.sql().cursor() as cur:
            assert type(cur.cursor).__name__ == "PreparedCursor"


@pytest.mark.django_db(transaction=True)
def test_nothing_is_prepared_when_turned_off(engine, theme, call_log, tmp_path):
    engine.DB_PREPARED = False
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("DEALLOCATE ALL")
    job = start(theme, call_log, tmp_path)
    for _ in range(2):
        assert run_next(job) == "succeeded"
    assert prepared_claims() in (None, 0)
    with statements.sql().cursor() as cur:
        assert type(cur.cursor).__name__ != "PreparedCursor"


@pytest.mark.django_db(transaction=True)
def test_a_statement_dropped_behind_our_back_is_prepared_again(engine, theme, call_log, tmp_path, caplog):
    """A pooler or ``DISCARD ALL`` drops the session's statements while psycopg still knows their
    names: the next claim fails once with "prepared statement does not exist", the statements
    are dropped on both sides and the claim is prepared and run again; nothing is lost."""
    engine.DB_PREPARED = True
    job = start(theme, call_log, tmp_path)
    assert run_next(job) == "succeeded"
    if connection.vendor == "postgresql":
        assert prepared_claims() == 1
        with connection.cursor() as cur:
            cur.execute("SELECT name FROM pg_prepared_statements")
            names = [name for (name,) in cur.fetchall()]
            for name in names:  # one by one: psycopg clears its own cache only on DEALLOCATE ALL
                cur.execute(f'DEALLOCATE "{name}"')
        assert prepared_claims() == 0
    assert run_next(job) == "succeeded"  # the claim ran after preparing again
    stale = [r for r in caplog.records if "went stale (26000)" in r.getMessage()]
    assert len(stale) == (1 if connection.vendor == "postgresql" else 0)
    assert run_next(job) == "succeeded"
    assert prepared_claims() in (None, 1)
    assert [r.status for r in job.runs.order_by("id")][:3] == [RS.SUCCEEDED] * 3
