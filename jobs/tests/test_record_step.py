"""Recording is part of the attempt: it heartbeats until the record commits, and a failure while
recording is that attempt's failure (with its traceback), never a run left "running"."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from jobs import orchestrator
from jobs.models import Job, StageRun
from jobs.orchestrator import clock, lifecycle, runner
from jobs.tests.conftest import params, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status


def start(theme, call_log, tmp_path, **behave) -> Job:
    return orchestrator.start_job(theme, params=params(call_log, tmp_path, **behave))


def attempt_dirs(engine, job: Job, stage: str) -> list[str]:
    folder = engine.MEDIA_ROOT / "jobs" / str(job.pk) / stage
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_an_output_that_is_not_json_fails_its_attempt_with_a_traceback(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, trend_analysis=["badoutput"])
    job = orchestrator.run_inline(job.pk)  # never raises, never hangs on a run left "running"
    assert job.status == Job.Status.FAILED
    runs = list(job.runs.filter(stage="trend_analysis").order_by("attempt"))
    assert [r.status for r in runs] == [RS.FAILED, RS.FAILED]  # unexpected: once more, then permanent
    for run in runs:
        assert run.error_kind == "unexpected"
        assert "recording" in run.error_message and "JSON" in run.error_message
        assert "Traceback" in run.error_traceback and "TypeError" in run.error_traceback
    assert job.error_stage == "trend_analysis"
    assert attempt_dirs(engine, job, "trend_analysis") == []  # files of attempts never recorded are gone


def test_a_duplicate_artifact_fails_its_attempt_and_leaves_no_files(engine, theme, call_log, tmp_path):
    engine.TRENDREEL_STAGE_POLICY["script_generation"]["max_attempts"] = 1
    job = orchestrator.run_inline(start(theme, call_log, tmp_path, script_generation=["dupartifact"]).pk)
    run = job.runs.get(stage="script_generation")
    assert (run.status, run.error_kind) == (RS.FAILED, "unexpected")
    assert "Traceback" in run.error_traceback
    assert not run.artifacts.exists()
    assert attempt_dirs(engine, job, "script_generation") == []
    assert job.status == Job.Status.FAILED


@pytest.fixture
def slow_record(monkeypatch):
    """Hold the record step (checksumming the artifacts) until released."""
    entered, release = threading.Event(), threading.Event()
    real = runner.checksum

    def held(path):
        entered.set()
        assert release.wait(30)
        return real(path)

    monkeypatch.setattr(runner, "checksum", held)
    yield entered, release
    release.set()


def run_in_thread(run_id: int) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def work() -> None:
        try:
            with orchestrator.inline_mode():
                out["result"] = orchestrator.execute_run(run_id)
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread, out


def test_a_slow_record_keeps_heartbeating_and_is_never_swept(engine, theme, call_log, tmp_path, slow_record):
    entered, release = slow_record
    job = start(theme, call_log, tmp_path)
    run = job.runs.get()
    thread, out = run_in_thread(run.pk)
    assert entered.wait(30)
    # the stage is done and its files are being checksummed: the attempt must still heartbeat, past
    # the time after which the sweeper would take a silent attempt for a dead worker...
    stale_by = clock.now() + timedelta(seconds=engine.TRENDREEL_STALE_SECONDS)
    wait_for(
        lambda: StageRun.objects.get(pk=run.pk).heartbeat_at > stale_by,
        timeout=10,
        what="a heartbeat while recording, later than the stale threshold",
    )
    # ...so a sweep now leaves the finished render alone
    assert run.pk not in orchestrator.sweep().crashed
    release.set()
    thread.join(30)
    assert out["result"] == "succeeded"
    run.refresh_from_db()
    assert run.status == RS.SUCCEEDED and run.output_dir
    assert (engine.MEDIA_ROOT / run.output_dir / "out.json").exists()


def test_a_run_cancelled_while_recording_leaves_no_files(engine, theme, call_log, tmp_path, slow_record):
    entered, release = slow_record
    job = start(theme, call_log, tmp_path)
    run = job.runs.get()
    thread, out = run_in_thread(run.pk)
    assert entered.wait(30)
    orchestrator.cancel_job(job.pk)
    release.set()
    thread.join(30)
    assert out["result"] == "discarded"
    run.refresh_from_db()
    assert run.status == RS.CANCELLED and not run.output_dir
    assert attempt_dirs(engine, job, "trend_collection") == []


def test_a_record_arriving_after_its_run_was_swept_moves_nothing(engine, theme, call_log, tmp_path, slow_record):
    """The job is still running (the sweeper queued a retry) but this attempt is no longer
    running: its record must leave the job where it was, start no next stage and leave no files;
    the retry is the attempt that counts. (On PostgreSQL the record is one statement: the job's
    move in it must come undone with the run's.)"""
    entered, release = slow_record
    job = start(theme, call_log, tmp_path)
    run = job.runs.get()
    thread, out = run_in_thread(run.pk)
    assert entered.wait(30)
    assert lifecycle.end_attempt(run.pk, event="crash", kind="crashed", message="swept for the test")
    release.set()
    thread.join(30)
    assert out["result"] == "discarded"
    job.refresh_from_db()
    assert (job.status, job.current_stage) == (Job.Status.RUNNING, "trend_collection")
    runs = list(job.runs.order_by("id").values_list("stage", "attempt", "status", "output_dir"))
    assert runs == [("trend_collection", 1, RS.CRASHED, ""), ("trend_collection", 2, RS.QUEUED, "")]
    assert attempt_dirs(engine, job, "trend_collection") == []
    assert orchestrator.run_inline(job.pk).status == Job.Status.AWAITING_REVIEW  # the retry carries on


def test_a_record_for_a_job_that_moved_away_is_kept_and_starts_nothing(engine, theme, call_log, tmp_path, slow_record):
    """The job left ``running`` while its attempt was still running (here set by hand: no
    operator action does that without ending the attempt): the work is recorded, under the job's
    lock, and nothing follows it."""
    entered, release = slow_record
    job = start(theme, call_log, tmp_path)
    run = job.runs.get()
    thread, out = run_in_thread(run.pk)
    assert entered.wait(30)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    release.set()
    thread.join(30)
    assert out["result"] == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.current_stage) == (Job.Status.FAILED, "trend_collection")
    run.refresh_from_db()
    assert run.status == RS.SUCCEEDED and (engine.MEDIA_ROOT / run.output_dir / "out.json").exists()
    assert list(job.runs.values_list("stage", flat=True)) == ["trend_collection"]
