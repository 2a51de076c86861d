"""The sweeper: in every deployment, one at a time, re-pushing only what a broker can lose."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from jobs import orchestrator
from jobs.models import Job, StageRun
from jobs.orchestrator import sweeper
from jobs.tests.conftest import params, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status


def later(engine, times: int = 1):
    return timezone.now() + timedelta(seconds=times * (engine.TRENDREEL_REQUEUE_SECONDS + 1))


def test_a_run_still_in_the_orm_queue_is_never_pushed_twice(engine, theme, call_log, tmp_path):
    """A busy queue: the run waits behind others for a long time. Its task row is still there,
    so pushing it again only piles up rows (1, 2, 3, 4 before)."""
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    for k in range(1, 5):
        assert orchestrator.sweep(now=later(engine, k)).pushed == []
    assert OrmQ.objects.count() == 1
    assert job.runs.get().status == RS.QUEUED


def test_a_task_held_by_a_dead_cluster_is_released_not_duplicated(engine, theme, call_log, tmp_path):
    """A cluster prefetched the task (django-q2 locks the row for ``retry`` seconds, an hour) and
    was SIGKILLed: the row comes back to the queue at once instead of after the hour."""
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    OrmQ.objects.update(lock=timezone.now() + timedelta(hours=1))
    assert not orchestrator.sweep()  # held for a short while: a live cluster may run it yet
    when = later(engine)
    report = orchestrator.sweep(now=when)
    assert (report.released, report.pushed) == ([job.runs.get().pk], [])
    [row] = OrmQ.objects.all()
    assert row.lock <= when  # available again: any cluster may take it


def test_a_lost_orm_task_is_pushed_again(engine, theme, call_log, tmp_path):
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    OrmQ.objects.all().delete()  # e.g. acknowledged by a cluster that died before the claim committed
    assert orchestrator.sweep(now=later(engine)).pushed == [job.runs.get().pk]
    assert OrmQ.objects.count() == 1


def test_a_sweep_schedule_exists_without_manage_py_worker(db):
    """Deployments that run plain ``qcluster`` get the sweeper from the migration."""
    schedule = Schedule.objects.get(name=sweeper.SCHEDULE_NAME)
    assert schedule.func == "jobs.tasks.sweep" and schedule.repeats == -1


def test_one_sweeper_acts_at_a_time(engine, theme, call_log, tmp_path):
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    old = timezone.now() - timedelta(seconds=60)
    StageRun.objects.filter(job=job).update(status=RS.RUNNING, started_at=old, heartbeat_at=old, worker="gone:1")
    run = job.runs.get()
    held, release = threading.Event(), threading.Event()

    def other_sweeper() -> None:
        try:
            with sweeper.exclusive() as mine:
                assert mine
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_sweeper)
    thread.start()
    try:
        assert held.wait(30)
        report = orchestrator.sweep()
        assert report.skipped and not report.crashed
        assert job.runs.get().status == RS.RUNNING
    finally:
        release.set()
        thread.join(30)
    assert orchestrator.sweep().crashed == [run.pk]


@pytest.mark.cluster
def test_a_plain_qcluster_sweeps_a_crashed_run(start_worker, theme, call_log, tmp_path):
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path, trend_collection=["sleep:60"]))
    OrmQ.objects.all().delete()
    old = timezone.now() - timedelta(seconds=60)
    StageRun.objects.filter(job=job).update(status=RS.RUNNING, started_at=old, heartbeat_at=old, worker="gone:1")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)
    Schedule.objects.filter(name=sweeper.SCHEDULE_NAME).update(next_run=timezone.now())
    worker = start_worker("qcluster")
    run = job.runs.get()
    wait_for(
        lambda: StageRun.objects.get(pk=run.pk).status == RS.CRASHED,
        timeout=90,
        what="the schedule's sweep",
        log=worker.log,
    )
