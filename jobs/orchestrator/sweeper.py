"""The sweeper: repairs what a dead worker or a lost wake-up left behind.

It runs in every deployment: as a loop inside each ``manage.py worker`` and as a django-q2
schedule (``SCHEDULE_NAME``, kept by ``migrate`` and by the worker) that any plain ``qcluster``
runs. Only one sweeper acts at a time (``exclusive``); the others skip their turn. Its writes are
conditional anyway, so even two at once could not double anything.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from jobs.models import StageRun
from jobs.orchestrator import clock, lifecycle, routing
from stages import pipeline
from stages.base import kill_recorded

log = logging.getLogger("trendreel.orchestrator")
RS = StageRun.Status
EK = StageRun.ErrorKind
SCHEDULE_NAME = "trendreel-sweep"
_ADVISORY_KEY = 0x7472_656E_6472_6C  # "trendrl": the PostgreSQL advisory lock of the sweeper


@dataclass
class SweepReport:
    crashed: list[int] = field(default_factory=list)  # running attempts whose worker died
    pushed: list[int] = field(default_factory=list)  # queued attempts pushed (due, or their push was lost)
    released: list[int] = field(default_factory=list)  # ORM tasks held by a cluster that did not run them
    skipped: bool = False  # another sweeper was at work

    def __bool__(self) -> bool:
        return bool(self.crashed or self.pushed or self.released)


def ensure_schedule() -> None:
    """The django-q2 schedule that lets any ``qcluster`` sweep (connected to ``post_migrate``)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "jobs.tasks.sweep", "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )


@contextlib.contextmanager
def exclusive() -> Iterator[bool]:
    """Yields True to the one sweeper that may act now (on any host), False to the others.

    PostgreSQL: a session advisory lock; SQLite (one host): an flock beside the database file.
    Both are released if the holder dies.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [_ADVISORY_KEY])
            mine = bool(cur.fetchone()[0])
        try:
            yield mine
        finally:
            if mine:
                with connection.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", [_ADVISORY_KEY])
        return
    import fcntl

    path = Path(str(connection.settings_dict["NAME"]) + ".sweep-lock")
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sweep(now: datetime | None = None, *, requeue_all: bool = False) -> SweepReport:
    """Repair what a dead worker or a lost push left behind. Safe to run anywhere, concurrently.

    1. Running attempts with a stale heartbeat are marked ``crashed`` (or timed out), their
       recorded child processes on this host are killed, and the next attempt is scheduled,
       counted against the stage's max attempts.
    2. Queued attempts whose backoff is over are pushed. Those pushed more than
       ``TRENDREEL_REQUEUE_SECONDS`` ago (all, with ``requeue_all``) and still queued are looked
       up in their queue: still waiting there, they are left alone; held by a cluster (ORM), the
       task is released to the queue; gone (a lost Redis push, tasks a killed cluster took), they
       are pushed again. A duplicate push is harmless: the claim is conditional.
    """
    with exclusive() as mine:
        if not mine:
            return SweepReport(skipped=True)
        return _sweep(now or clock.now(), requeue_all)


def _sweep(now: datetime, requeue_all: bool) -> SweepReport:
    report = SweepReport()
    stale_before = now - timedelta(seconds=settings.TRENDREEL_STALE_SECONDS)
    host = socket.gethostname()
    stale = StageRun.objects.filter(status=RS.RUNNING, heartbeat_at__lt=stale_before)
    for run in stale.only("pk", "stage", "started_at", "worker", "processes"):
        limit = pipeline.spec(run.stage).policy.time_limit
        over = limit > 0 and run.started_at and (now - run.started_at).total_seconds() > limit
        moved = lifecycle.end_attempt(
            run.pk,
            event="crash",
            kind=EK.TIMEOUT if over else EK.CRASHED,
            message=f"worker {run.worker or '?'} stopped heartbeating" + (" after the time limit" if over else ""),
            hint="the attempt is retried automatically; a stage that keeps crashing its worker fails the job",
            where={"heartbeat_at__lt": stale_before},  # judged again under the job's lock
        )
        if moved:
            report.crashed.append(run.pk)
            if run.worker.rsplit(":", 1)[0] == host and run.processes:
                killed = kill_recorded(run.processes)
                if killed:
                    log.warning("run %s crashed: killed its process groups %s", run.pk, killed)

    due = StageRun.objects.filter(status=RS.QUEUED, enqueued_at__isnull=True).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now)
    )
    for run in due.only("pk", "stage", "job_id", "attempt", "enqueued_at"):
        if _push_again(run, now):
            report.pushed.append(run.pk)

    requeue_before = now if requeue_all else now - timedelta(seconds=settings.TRENDREEL_REQUEUE_SECONDS)
    overdue = list(
        StageRun.objects.filter(status=RS.QUEUED, enqueued_at__lt=requeue_before).only(
            "pk", "stage", "job_id", "attempt", "enqueued_at"
        )
    )
    by_queue: dict[str, list[StageRun]] = {}
    for run in overdue:
        by_queue.setdefault(routing.queue_of(run.stage), []).append(run)
    for queue, runs in by_queue.items():
        state = routing.queue_state(queue, now)
        held = []
        for run in runs:
            where, handle = state.get(run.pk, (None, None))
            if where == routing.WAITING:
                continue  # still in the queue: a push would only add a second copy
            if where == routing.HELD:
                held.append((run, handle))
            elif _push_again(run, now):
                report.pushed.append(run.pk)
        if held:
            with transaction.atomic():
                routing.release([handle for _, handle in held], now)
                for run, _ in held:
                    StageRun.objects.filter(pk=run.pk, status=RS.QUEUED).update(enqueued_at=now)
                    report.released.append(run.pk)
    return report


def _push_again(run: StageRun, now: datetime) -> bool:
    """Push ``run`` unless another sweeper just did (the stamp is the compare-and-set)."""
    with transaction.atomic():
        if StageRun.objects.filter(pk=run.pk, status=RS.QUEUED, enqueued_at=run.enqueued_at).update(enqueued_at=now):
            routing.push(run)
            return True
    return False


def stalled(
    now: datetime | None = None,
    window: float | None = None,
    workers: Callable[[], Collection[str] | None] | None = None,
    cluster: str | None = None,
) -> tuple[str, ...]:
    """Due runs of ``cluster``'s stages were pushed more than ``window`` seconds ago and nothing of
    that cluster was claimed since: the stages of those runs (empty, i.e. false, when not stalled).

    The signature of a wedged cluster (a SIGKILLed idle django-q2 worker leaves the shared task
    queue's read lock held, so every other worker waits forever) or of no cluster at all.
    ``workers`` gives ``host:pid`` of one cluster's worker processes (asked only when runs are
    waiting) to ask about that cluster alone: with several clusters on one database a wedged one
    is found while the others are busy. Runs routed to another cluster (renders waiting for the
    render workers) are that cluster's business.
    """
    now = now or clock.now()
    since = now - timedelta(seconds=window if window is not None else settings.TRENDREEL_STALL_SECONDS)
    stages = pipeline.stages_of_cluster(cluster)
    waiting = StageRun.objects.filter(status=RS.QUEUED, stage__in=stages, enqueued_at__lt=since).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now)
    )
    waiting_stages = tuple(sorted(set(waiting.values_list("stage", flat=True)[:100])))
    if not waiting_stages:
        return ()
    names = workers() if workers is not None else None
    ours = StageRun.objects.filter(stage__in=stages)
    if names is not None:
        ours = ours.filter(worker__in=list(names))
    # busy workers (long renders) are not a stall: only idle-and-not-claiming is
    if ours.filter(status=RS.RUNNING).exists():
        return ()
    return () if ours.filter(started_at__gte=since).exists() else waiting_stages
