"""The engine through real django-q2 worker processes: delivery, crashes, cancel."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django_q.models import OrmQ

from jobs import orchestrator
from jobs.models import Job, StageRun
from jobs.tests.conftest import exited, gone, job_status, params, pidfd, wait_for
from jobs.tests.stagefns import calls
from jobs.tests.test_orchestrator import BEFORE_REVIEW

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]
RS = StageRun.Status


def test_it_runs_a_job_through_a_real_qcluster_to_review_and_completion(
    start_worker, theme, call_log, tmp_path, reviewer
):
    worker = start_worker("qcluster")
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    wait_for(
        lambda: job_status(job.pk) == Job.Status.AWAITING_REVIEW, timeout=60, what="awaiting_review", log=worker.log
    )
    assert [s for s, _ in calls(call_log)] == list(BEFORE_REVIEW)
    pids = {run.worker.rsplit(":", 1)[1] for run in job.runs.exclude(worker="")}
    assert str(os.getpid()) not in pids  # ran in the cluster's worker processes, not here

    orchestrator.review_job(job.pk, "approve", user=reviewer)
    wait_for(lambda: job_status(job.pk) == Job.Status.COMPLETED, timeout=30, what="completed", log=worker.log)
    assert [s for s, _ in calls(call_log)][-1] == "publish"
    assert not job.runs.exclude(status=RS.SUCCEEDED).exists()


def test_a_killed_worker_s_stage_is_run_again_and_the_job_finishes(start_worker, theme, call_log, tmp_path):
    worker = start_worker("worker")
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path, script_generation=["sleep:30", "ok"]))
    run = wait_for(
        lambda: job.runs.filter(stage="script_generation", status=RS.RUNNING, progress__gt=0).first(),
        timeout=60,
        what="script_generation running",
        log=worker.log,
    )
    pid = int(run.worker.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: job_status(job.pk) == Job.Status.AWAITING_REVIEW, timeout=60, what="awaiting_review", log=worker.log
    )
    runs = list(job.runs.filter(stage="script_generation").order_by("attempt"))
    assert [(r.status, r.error_kind) for r in runs] == [(RS.CRASHED, "crashed"), (RS.SUCCEEDED, "")]
    assert gone(pid)
    # exactly one succeeded attempt per stage
    for stage in BEFORE_REVIEW:
        assert job.runs.filter(stage=stage, status=RS.SUCCEEDED).count() == 1


def test_a_stage_that_kills_its_worker_every_time_fails_the_job_after_max_attempts(
    start_worker, theme, call_log, tmp_path
):
    worker = start_worker("worker")
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path, trend_analysis=["kill"]))
    wait_for(lambda: job_status(job.pk) == Job.Status.FAILED, timeout=60, what="failed", log=worker.log)
    job.refresh_from_db()
    runs = job.runs.filter(stage="trend_analysis")
    assert runs.count() == 3
    assert set(runs.values_list("status", flat=True)) == {RS.CRASHED}
    assert job.error_stage == "trend_analysis"
    assert "gave up after 3 attempts" in job.error_message
    time.sleep(2)  # nothing keeps looping after the job failed
    assert runs.count() == 3


def test_cancel_stops_a_running_stage_and_its_child_within_two_seconds(start_worker, theme, call_log, tmp_path):
    worker = start_worker("worker")
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path, trend_analysis=["child:60"]))
    pid_file = tmp_path / "child.pid"
    wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=60, what="child started", log=worker.log
    )
    child = pidfd(int(pid_file.read_text()))
    assert not exited(child)
    orchestrator.cancel_job(job.pk)
    assert exited(child, timeout=2), "the child outlived the cancel by 2 s"
    time.sleep(1)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert not job.runs.filter(status__in=StageRun.OPEN).exists()
    assert job.runs.filter(stage="trend_analysis").get().status == RS.CANCELLED
    assert not job.runs.filter(stage="script_generation").exists()
    assert OrmQ.objects.count() == 0


def _idle_workers(worker) -> list[int]:
    """The cluster's worker processes blocked reading django-q2's task queue (children of the sentinel)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                procs[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    sentinels = [p for p, parent in procs.items() if parent == worker.proc.pid]
    idle = []
    for pid, parent in procs.items():
        if parent in sentinels:
            try:
                if Path(f"/proc/{pid}/wchan").read_text().strip() == "anon_pipe_read":
                    idle.append(pid)
            except OSError:
                continue
    return idle


def test_killing_an_idle_worker_does_not_wedge_the_cluster(start_worker, theme, call_log, tmp_path, monkeypatch):
    """django-q2's workers share one multiprocessing queue whose read lock the idle worker holds
    while it waits: SIGKILL it and the other workers wait on that lock forever. The worker command
    notices that due runs are not being claimed and restarts its cluster."""
    worker = start_worker("worker", extra_env={"TRENDREEL_STALL_SECONDS": "3"})
    first = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    wait_for(lambda: job_status(first.pk) == Job.Status.AWAITING_REVIEW, timeout=60, what="first job", log=worker.log)
    victims = wait_for(lambda: _idle_workers(worker), timeout=10, what="an idle worker")
    os.kill(victims[0], signal.SIGKILL)
    time.sleep(1)
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    wait_for(
        lambda: job_status(job.pk) == Job.Status.AWAITING_REVIEW, timeout=45, what="job after the kill", log=worker.log
    )
