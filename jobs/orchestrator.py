"""The orchestrator: the only writer of Job and StageRun status.

Delivery from django-q2 is at-least-once, so every entry point is safe to call twice:

* a stage run is *claimed* with a conditional UPDATE (``queued -> running``); a duplicate
  delivery claims nothing and returns;
* the result is recorded with a conditional UPDATE (``running -> succeeded/failed``) inside one
  transaction that holds the Job row, creates the next StageRun and enqueues it. With the ORM
  broker on the same database the enqueue joins that transaction (pinned by a test); with Redis
  it happens on commit and the sweeper re-pushes anything queued but never claimed;
* retries, backoff, crash counting and time limits are decided here, never by django-q2
  (configured as a plain transport: ``max_attempts=1``, ``ack_failures=True``).

Stage functions run outside any transaction, with a watchdog thread that heartbeats, writes
progress, notices cancel or a lost run, and enforces the time limit (killing child process
groups).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import shutil
import socket
import threading
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from jobs.models import Artifact, Job, ReviewDecision, StageRun, Theme
from stages import pipeline
from stages.base import (
    AbortSignal,
    StageAborted,
    StageContext,
    StageError,
    normalise_result,
)

log = logging.getLogger("trendreel.orchestrator")
RS = StageRun.Status
JS = Job.Status
EK = StageRun.ErrorKind


class InvalidState(Exception):
    """The job's state does not allow this action (the API answers 409)."""


class UnknownStage(ValueError):
    pass


# --- broker ---------------------------------------------------------------------------------

_local = threading.local()


@contextlib.contextmanager
def inline_mode():
    """Run without a broker: nothing is pushed; ``run_inline`` executes queued runs itself."""
    previous = getattr(_local, "inline", False)
    _local.inline = True
    try:
        yield
    finally:
        _local.inline = previous


def _broker():
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    key = (Conf.ORM, str(Conf.REDIS), Conf.CLUSTER_NAME)
    cached = getattr(_local, "broker", None)
    if cached is None or cached[0] != key:
        cached = (key, get_broker())
        _local.broker = cached
    return cached[1]


def broker_joins_transaction(broker=None) -> bool:
    """True when enqueueing writes to our database inside the caller's transaction."""
    from django_q.brokers.orm import ORM
    from django_q.conf import Conf

    broker = broker or _broker()
    return isinstance(broker, ORM) and Conf.ORM == "default"


def _push(run: StageRun) -> None:
    """Hand a queued run to the broker (called inside the transaction that made it due)."""
    if getattr(_local, "inline", False):
        return
    from django_q.tasks import async_task

    policy = pipeline.spec(run.stage).policy
    broker = _broker()
    options: dict[str, Any] = {
        "task_name": f"job{run.job_id}-{run.stage}-{run.attempt}",
        "timeout": int(policy.time_limit + 30),
        "broker": broker,
    }
    if policy.cluster:
        options["cluster"] = policy.cluster

    def send() -> None:
        async_task("jobs.tasks.run_stage", run.pk, **options)

    if broker_joins_transaction(broker):
        send()  # joins the open transaction: a rollback removes the task too
    else:
        transaction.on_commit(send)  # never push a run another worker cannot see yet


def _new_run(job: Job, stage: str, *, retry_index: int = 0, delay: float = 0.0, reason: str = "", input: dict | None = None) -> StageRun:
    """Create the next attempt of ``stage``; push it now if it is due (else the sweeper will)."""
    now = timezone.now()
    last = job.runs.filter(stage=stage).aggregate(m=Max("attempt"))["m"] or 0
    spec = pipeline.spec(stage)
    if spec.gate:
        run = StageRun.objects.create(
            job=job, stage=stage, attempt=last + 1, status=RS.WAITING, reason=reason or "waiting for review",
            started_at=now, message="waiting for an operator's decision", input=input or {},
        )
        return run
    not_before = now + timedelta(seconds=delay) if delay > 0 else None
    run = StageRun.objects.create(
        job=job, stage=stage, attempt=last + 1, retry_index=retry_index, status=RS.QUEUED, reason=reason,
        queued_at=now, not_before=not_before, enqueued_at=None if not_before else now, input=input or {},
    )
    if not_before is None:
        _push(run)
    return run


def _status_for_stage(stage: str) -> str:
    gate = next((s.key for s in pipeline.STAGES if s.gate), None)
    if gate and pipeline.index(stage) > pipeline.index(gate):
        return JS.PUBLISHING
    if gate == stage:
        return JS.AWAITING_REVIEW
    return JS.RUNNING


def _enter_stage(job: Job, stage: str, **kwargs: Any) -> StageRun:
    run = _new_run(job, stage, **kwargs)
    job.current_stage = stage
    job.status = _status_for_stage(stage)
    job.updated = timezone.now()
    job.save(update_fields=["current_stage", "status", "updated"])
    return run


def _lock_job(job_id: int) -> Job:
    try:
        return Job.objects.select_for_update().get(pk=job_id)
    except Job.DoesNotExist:
        raise Job.DoesNotExist(f"no job with id {job_id}") from None


# --- operator actions -------------------------------------------------------------------------


def start_job(theme: Theme, *, params: dict | None = None, user=None, idempotency_key: str | None = None) -> Job:
    """Create a job and queue its first stage, atomically (enqueue included)."""
    with transaction.atomic():
        if idempotency_key:
            existing = Job.objects.filter(idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing
        job = Job.objects.create(
            theme=theme, params=params or {}, created_by=user if getattr(user, "pk", None) else None,
            idempotency_key=idempotency_key or None, status=JS.PENDING,
        )
        first = pipeline.STAGE_KEYS[0]
        _new_run(job, first, reason="job started")
        job.current_stage = first
        job.save(update_fields=["current_stage"])
    return job


def start_batch(theme: Theme, count: int, *, user=None) -> list[Job]:
    """N jobs for the theme's top N topics: job i asks trend analysis for the i-th best topic."""
    if not 1 <= count <= 20:
        raise ValueError("a batch is 1 to 20 jobs")
    batch = timezone.now().strftime("%Y%m%d%H%M%S") + f"-{random.randrange(16**4):04x}"
    with transaction.atomic():
        return [
            start_job(theme, params={"topic_rank": i, "batch": batch, "batch_size": count}, user=user)
            for i in range(count)
        ]


def resume_point(job: Job) -> str:
    """The first stage, in pipeline order, with no current checkpoint."""
    done = set(
        job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True).values_list("stage", flat=True)
    )
    for key in pipeline.STAGE_KEYS:
        if key not in done:
            return key
    return pipeline.STAGE_KEYS[-1]


def _validate_stage(stage: str) -> str:
    if stage not in pipeline.STAGE_KEYS:
        raise UnknownStage(f"unknown stage {stage!r}; stages are: {', '.join(pipeline.STAGE_KEYS)}")
    return stage


def retry_job(job_id: int, *, from_stage: str | None = None, user=None, notes: str = "") -> Job:
    """Resume a failed/cancelled job from its failed stage, or re-run from ``from_stage``.

    Stages with a current checkpoint are never run again unless they are at or after
    ``from_stage``; then their checkpoints are superseded (kept, marked), never deleted.
    """
    if from_stage is not None:
        _validate_stage(from_stage)
    with transaction.atomic():
        job = _lock_job(job_id)
        if from_stage is None:
            if job.status not in (JS.FAILED, JS.CANCELLED):
                raise InvalidState(f"job {job.pk} is {job.get_status_display().lower()}; only failed or cancelled jobs resume")
            stage = resume_point(job)
            reason = f"resumed by {_who(user)}"
        else:
            if job.status in (JS.PENDING, JS.RUNNING, JS.PUBLISHING):
                raise InvalidState(f"job {job.pk} is {job.get_status_display().lower()}; cancel it before re-running")
            stage = from_stage
            reason = f"re-run from {stage} by {_who(user)}"
        _rerun(job, stage, reason=reason, notes=notes)
    return job


def _rerun(job: Job, stage: str, *, reason: str, notes: str = "") -> None:
    now = timezone.now()
    later = pipeline.stages_from(stage)
    job.runs.filter(stage__in=later, status=RS.SUCCEEDED, superseded_at__isnull=True).update(superseded_at=now)
    job.runs.filter(status__in=StageRun.OPEN).update(
        status=RS.CANCELLED, finished_at=now, error_kind=EK.CANCELLED, message="superseded by " + reason, superseded_at=now
    )
    job.cancel_requested = False
    job.error_stage = job.error_kind = job.error_message = job.error_hint = ""
    job.finished = None
    job.save(update_fields=["cancel_requested", "error_stage", "error_kind", "error_message", "error_hint", "finished"])
    _enter_stage(job, stage, reason=reason, input={"review_notes": notes} if notes else None)


def cancel_job(job_id: int, *, user=None) -> Job:
    """Stop a job now. A running stage notices within a heartbeat and its children are killed."""
    with transaction.atomic():
        job = _lock_job(job_id)
        if job.status not in Job.ACTIVE:
            raise InvalidState(f"job {job.pk} is {job.get_status_display().lower()}; nothing to cancel")
        now = timezone.now()
        job.runs.filter(status__in=StageRun.OPEN).update(
            status=RS.CANCELLED, finished_at=now, error_kind=EK.CANCELLED, message=f"cancelled by {_who(user)}"
        )
        job.status = JS.CANCELLED
        job.cancel_requested = True
        job.finished = job.updated = now
        job.save(update_fields=["status", "cancel_requested", "finished", "updated"])
    return job


def review_job(job_id: int, decision: str, *, user=None, notes: str = "", from_stage: str | None = None) -> Job:
    """Decide a job waiting in review. Permission checks belong to the caller (view, API, command)."""
    decisions = ReviewDecision.Decision
    if decision not in decisions.values:
        raise ValueError(f"unknown decision {decision!r}; use one of {', '.join(decisions.values)}")
    gate = next(s.key for s in pipeline.STAGES if s.gate)
    if decision == decisions.REQUEST_CHANGES:
        if not from_stage:
            raise ValueError("request changes needs the stage to re-run from")
        _validate_stage(from_stage)
        if pipeline.index(from_stage) >= pipeline.index(gate):
            raise ValueError(f"changes must re-run a stage before {gate}")
        if not notes.strip():
            raise ValueError("request changes needs notes for the re-run")
    with transaction.atomic():
        job = _lock_job(job_id)
        run = job.runs.filter(stage=gate, status=RS.WAITING).order_by("-attempt").first()
        if job.status != JS.AWAITING_REVIEW or run is None:
            raise InvalidState(f"job {job.pk} is {job.get_status_display().lower()}, not awaiting review")
        now = timezone.now()
        ReviewDecision.objects.create(
            job=job, stage_run=run, decision=decision, notes=notes, from_stage=from_stage or "",
            decided_by=user if getattr(user, "pk", None) else None, decided_at=now,
        )
        run.status = RS.SUCCEEDED
        run.finished_at = now
        run.progress = 1.0
        run.message = f"{decisions(decision).label.lower()} by {_who(user)}"
        run.output = {"decision": decision, "by": _who(user), "notes": notes, "from_stage": from_stage or ""}
        run.save(update_fields=["status", "finished_at", "progress", "message", "output"])
        if decision == decisions.APPROVE:
            _advance(job, run)
        elif decision == decisions.REJECT:
            job.status = JS.REJECTED
            job.finished = job.updated = now
            job.save(update_fields=["status", "finished", "updated"])
        else:
            _rerun(job, from_stage, reason=f"changes requested by {_who(user)}", notes=notes)
    return job


def _who(user) -> str:
    return getattr(user, "get_username", lambda: "")() or "system"


# --- running a stage --------------------------------------------------------------------------


def _advance(job: Job, run: StageRun) -> None:
    """Inside the job's lock: after ``run`` succeeded, start the next stage or finish the job."""
    nxt = pipeline.next_stage(run.stage)
    if nxt is None:
        now = timezone.now()
        job.status = JS.COMPLETED
        job.finished = job.updated = now
        job.save(update_fields=["status", "finished", "updated"])
        return
    _enter_stage(job, nxt, reason=f"after {run.stage}")


def _backoff(policy: pipeline.StagePolicy, retry_index: int, retry_after: float | None) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**n)), never less than the provider's Retry-After."""
    ceiling = min(policy.backoff_cap, policy.backoff_base * (2**retry_index))
    delay = random.uniform(0, ceiling) if ceiling > 0 else 0.0
    return max(delay, retry_after or 0.0)


def _after_failure(job: Job, run: StageRun, *, permanent: bool, retry_after: float | None = None) -> None:
    """Inside the job's lock, after ``run`` was marked failed/crashed: retry or fail the job."""
    policy = pipeline.spec(run.stage).policy
    if job.status in Job.ACTIVE and not permanent and run.retry_index + 1 < policy.max_attempts:
        delay = _backoff(policy, run.retry_index, retry_after)
        _new_run(job, run.stage, retry_index=run.retry_index + 1, delay=delay, reason=f"retry after {run.get_error_kind_display().lower()}", input=run.input)
        return
    if job.status not in Job.ACTIVE:
        return
    now = timezone.now()
    job.status = JS.FAILED
    job.error_stage = run.stage
    job.error_kind = run.error_kind
    attempts = run.retry_index + 1
    job.error_message = run.error_message if permanent else f"{run.error_message} (gave up after {attempts} attempt{'s' * (attempts > 1)})"
    job.error_hint = run.error_hint
    job.finished = job.updated = now
    job.save(update_fields=["status", "error_stage", "error_kind", "error_message", "error_hint", "finished", "updated"])


def _fail_running(run_id: int, *, status: str, kind: str, message: str, hint: str = "", tb: str = "", log_tail: str = "", permanent: bool = False, retry_after: float | None = None) -> bool:
    """Record the end of a running attempt that did not succeed. False if it was not running."""
    with transaction.atomic():
        run = StageRun.objects.select_related("job").get(pk=run_id)
        job = _lock_job(run.job_id)
        now = timezone.now()
        updated = StageRun.objects.filter(pk=run_id, status=RS.RUNNING).update(
            status=status, finished_at=now, error_kind=kind, error_message=message[:5000], error_hint=hint[:2000],
            error_traceback=tb[-20000:], log_tail=log_tail[-8000:], message=message[:500],
        )
        if not updated:
            return False
        run.refresh_from_db()
        _after_failure(job, run, permanent=permanent, retry_after=retry_after)
        return True


def _unexpected_is_permanent(run: StageRun) -> bool:
    """Anything that is not a StageError is transient once per series, then permanent."""
    return StageRun.objects.filter(
        job_id=run.job_id, stage=run.stage, error_kind=EK.UNEXPECTED, attempt__lt=run.attempt,
        attempt__gte=run.attempt - run.retry_index,
    ).exists()


def media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


def job_dir(job_id: int) -> Path:
    return media_root() / "jobs" / str(job_id)


def _checkpoints(job_id: int) -> list[StageRun]:
    return list(
        StageRun.objects.filter(job_id=job_id, status=RS.SUCCEEDED, superseded_at__isnull=True)
        .order_by("stage", "-attempt")
        .only("stage", "attempt", "output", "output_dir")
    )


def _context(run: StageRun, abort: AbortSignal, report) -> StageContext:
    job = run.job
    upstream: dict[str, dict] = {}
    upstream_dirs: dict[str, Path] = {}
    for cp in _checkpoints(job.pk):
        if cp.stage not in upstream:
            upstream[cp.stage] = cp.output or {}
            if cp.output_dir:
                upstream_dirs[cp.stage] = media_root() / cp.output_dir
    notes = [
        n for n in ReviewDecision.objects.filter(job_id=job.pk, decision=ReviewDecision.Decision.REQUEST_CHANGES).values_list("notes", flat=True) if n
    ]
    work = job_dir(job.pk) / run.stage / f"attempt-{run.attempt}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    logger = logging.getLogger(f"trendreel.stage.{run.stage}")
    return StageContext(
        job_id=job.pk, run_id=run.pk, stage=run.stage, attempt=run.attempt, theme=job.theme.as_input(),
        params=dict(job.params or {}), upstream=upstream, upstream_dirs=upstream_dirs, work_dir=work,
        review_notes=notes, abort=abort, report=report, logger=logger,
    )


class _TailHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=80)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _Watchdog:
    """Heartbeats for a running attempt, carries its progress, notices cancel, enforces the limit."""

    run_id: int
    time_limit: float
    abort: AbortSignal
    interval: float
    progress: tuple[float, str] = (0.0, "")
    dirty: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def report(self, fraction: float, message: str) -> None:
        self.progress = (fraction, message)
        self.dirty = True

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name=f"watchdog-{self.run_id}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        started = timezone.now()
        try:
            while not self.stop.wait(self.interval):
                self.tick(started)
                if self.abort.reason is not None:
                    return
        finally:
            connection.close()

    def tick(self, started: datetime) -> None:
        now = timezone.now()
        if self.time_limit and (now - started).total_seconds() > self.time_limit:
            self.abort.abort("timeout")
            _fail_running(
                self.run_id, status=RS.FAILED, kind=EK.TIMEOUT,
                message=f"stopped after its time limit of {self.time_limit:g}s",
                hint="raise the stage's time_limit or make its input smaller",
            )
            return
        fields: dict[str, Any] = {"heartbeat_at": now}
        if self.dirty:
            self.dirty = False
            fields["progress"], fields["message"] = self.progress
        try:
            alive = StageRun.objects.filter(pk=self.run_id, status=RS.RUNNING).update(**fields)
        except Exception:  # a locked/busy database must not kill the heartbeat thread
            log.warning("heartbeat for run %s failed", self.run_id, exc_info=True)
            return
        if not alive:
            self.abort.abort("cancelled")

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=self.interval * 4 + 5)


def execute_run(run_id: int) -> str:
    """Claim, run and record one stage attempt. Safe to call any number of times for one run.

    Returns what happened: ``not-claimed``, ``succeeded``, ``failed``, ``aborted:<reason>``,
    ``discarded`` (finished after the run was cancelled or swept).
    """
    now = timezone.now()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    claimed = StageRun.objects.filter(pk=run_id, status=RS.QUEUED).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now)
    ).update(status=RS.RUNNING, started_at=now, heartbeat_at=now, worker=worker, message="started")
    if not claimed:
        return "not-claimed"
    run = StageRun.objects.select_related("job__theme").get(pk=run_id)
    if run.job.status == JS.PENDING:  # the first claim of a job starts it (one statement less after)
        Job.objects.filter(pk=run.job_id, status=JS.PENDING).update(status=JS.RUNNING, started=now, updated=now)
    spec = pipeline.spec(run.stage)
    abort = AbortSignal()
    dog = _Watchdog(run_id, spec.policy.time_limit, abort, settings.TRENDREEL_HEARTBEAT_SECONDS)
    tail = _TailHandler()
    outcome: tuple[str, Any] | None = None
    ctx = None
    try:
        ctx = _context(run, abort, dog.report)
        ctx.logger.addHandler(tail)
        dog.start()
        fn = pipeline.load(run.stage)
        result = normalise_result(fn(ctx))
        outcome = ("ok", result)
    except StageAborted:
        outcome = ("aborted", None)
    except StageError as exc:
        outcome = ("error", exc)
    except ImproperlyConfigured as exc:
        outcome = ("config", exc)
    except Exception as exc:  # noqa: BLE001 - recorded with its traceback, retried once
        outcome = ("unexpected", exc)
    finally:
        dog.finish()
        if ctx is not None:
            ctx.logger.removeHandler(tail)
    if abort.reason is not None:
        # The watchdog already recorded why (timeout) or someone else did (cancel, sweep).
        return f"aborted:{abort.reason}"
    kind, value = outcome
    tb = "".join(traceback.format_exception(value)) if isinstance(value, BaseException) else ""
    if kind == "ok":
        return _record_success(run, ctx, value, tail.text)
    if kind == "aborted":
        return "aborted:unknown"
    if kind == "error":
        _fail_running(run_id, status=RS.FAILED, kind=EK.PERMANENT if value.permanent else EK.TRANSIENT,
                      message=value.message, hint=value.hint, tb=tb, log_tail=tail.text,
                      permanent=value.permanent, retry_after=value.retry_after)
        return "failed"
    if kind == "config":
        _fail_running(run_id, status=RS.FAILED, kind=EK.PERMANENT, message=str(value),
                      hint="fix the configuration, then retry", tb=tb, log_tail=tail.text, permanent=True)
        return "failed"
    permanent = _unexpected_is_permanent(run)
    _fail_running(run_id, status=RS.FAILED, kind=EK.UNEXPECTED, message=f"{type(value).__name__}: {value}",
                  hint="" if not permanent else "the same unexpected error happened twice; see the traceback",
                  tb=tb, log_tail=tail.text, permanent=permanent)
    return "failed"


def _record_success(run: StageRun, ctx: StageContext, result, log_tail: str) -> str:
    """Checkpoint: rename the attempt's folder into place, then record and advance atomically."""
    final = ctx.work_dir.with_name(f"attempt-{run.attempt}")
    if final.exists():
        shutil.rmtree(final)
    os.replace(ctx.work_dir, final)
    rel_dir = final.relative_to(media_root()).as_posix()
    artifacts = []
    for spec in result.artifacts:
        path = Path(spec.path)
        if not path.is_absolute():
            path = final / path
        else:  # written inside the .partial folder before the rename
            with contextlib.suppress(ValueError):
                path = final / path.relative_to(ctx.work_dir)
        if not path.is_file():
            _fail_running(run.pk, status=RS.FAILED, kind=EK.PERMANENT, message=f"stage reported an artifact that does not exist: {spec.path}", permanent=True)
            return "failed"
        artifacts.append((spec, path.relative_to(media_root()).as_posix(), path.stat().st_size, _sha256(path)))
    with transaction.atomic():
        job = _lock_job(run.job_id)
        now = timezone.now()
        updated = StageRun.objects.filter(pk=run.pk, status=RS.RUNNING).update(
            status=RS.SUCCEEDED, finished_at=now, progress=1.0, output=result.output, output_dir=rel_dir,
            log_tail=log_tail[-8000:], message="done",
        )
        if not updated:
            return "discarded"
        Artifact.objects.bulk_create([
            Artifact(job=job, stage_run_id=run.pk, kind=spec.kind, label=spec.label, path=rel, size=size, checksum=digest)
            for spec, rel, size, digest in artifacts
        ])
        if job.status in Job.ACTIVE:
            _advance(job, run)
    return "succeeded"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the sweeper ------------------------------------------------------------------------------


@dataclass
class SweepReport:
    crashed: list[int] = field(default_factory=list)
    pushed: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.crashed or self.pushed)


def stalled(now: datetime | None = None, window: float | None = None) -> bool:
    """Due runs were pushed more than ``window`` seconds ago and nothing was claimed since.

    The signature of a wedged cluster (a SIGKILLed idle django-q2 worker leaves the shared task
    queue's read lock held, so every other worker waits forever) or of no cluster at all.
    """
    now = now or timezone.now()
    since = now - timedelta(seconds=window if window is not None else settings.TRENDREEL_STALL_SECONDS)
    waiting = StageRun.objects.filter(status=RS.QUEUED, enqueued_at__lt=since).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now)
    )
    if not waiting.exists():
        return False
    # busy workers (long renders) are not a stall: only idle-and-not-claiming is
    if StageRun.objects.filter(status=RS.RUNNING).exists():
        return False
    return not StageRun.objects.filter(started_at__gte=since).exists()


def sweep(now: datetime | None = None, *, requeue_all: bool = False) -> SweepReport:
    """Repair what a dead worker or a lost push left behind. Safe to run anywhere, concurrently.

    1. Running attempts with a stale heartbeat are marked ``crashed`` (or timed out) and the next
       attempt is scheduled, counted against the stage's max attempts.
    2. Queued attempts whose backoff is over, or whose push is older than
       ``TRENDREEL_REQUEUE_SECONDS`` (lost Redis push, tasks prefetched by a killed cluster), are
       pushed to the broker. A duplicate push is harmless: the claim is conditional.
    """
    now = now or timezone.now()
    report = SweepReport()
    stale_before = now - timedelta(seconds=settings.TRENDREEL_STALE_SECONDS)
    for run in StageRun.objects.filter(status=RS.RUNNING, heartbeat_at__lt=stale_before).only("pk", "stage", "started_at", "worker"):
        limit = pipeline.spec(run.stage).policy.time_limit
        over = limit and run.started_at and (now - run.started_at).total_seconds() > limit
        kind = EK.TIMEOUT if over else EK.CRASHED
        message = f"worker {run.worker or '?'} stopped heartbeating" + (" after the time limit" if over else "")
        if _fail_running(run.pk, status=RS.CRASHED, kind=kind, message=message,
                         hint="the attempt is retried automatically; a stage that keeps crashing its worker fails the job"):
            report.crashed.append(run.pk)
    requeue_before = now if requeue_all else now - timedelta(seconds=settings.TRENDREEL_REQUEUE_SECONDS)
    due = StageRun.objects.filter(status=RS.QUEUED).filter(
        (Q(enqueued_at__isnull=True) & (Q(not_before__isnull=True) | Q(not_before__lte=now)))
        | Q(enqueued_at__lt=requeue_before)
    ).only("pk", "stage", "job_id", "attempt")
    for run in due:
        with transaction.atomic():
            pushed = StageRun.objects.filter(pk=run.pk, status=RS.QUEUED, enqueued_at=run.enqueued_at).update(enqueued_at=timezone.now())
            if pushed:
                _push(run)
                report.pushed.append(run.pk)
    return report


# --- in-process execution (run_pipeline --inline, tests) --------------------------------------


def run_inline(job_id: int, *, on_tick=None, sleep=None) -> Job:
    """Execute a job's queued runs in this process until it waits for review or finishes."""
    import time

    sleep = sleep or time.sleep
    with inline_mode():
        while True:
            job = Job.objects.get(pk=job_id)
            if job.status not in (JS.PENDING, JS.RUNNING, JS.PUBLISHING):
                return job
            run = job.runs.filter(status=RS.QUEUED).order_by("not_before", "id").first()
            if run is None:
                sweep()
                if not job.runs.filter(status__in=StageRun.OPEN).exists():
                    return job
                sleep(0.05)
                continue
            wait = (run.not_before - timezone.now()).total_seconds() if run.not_before else 0
            if wait > 0:
                sleep(min(wait, 0.5))
                continue
            execute_run(run.pk)
            if on_tick:
                on_tick(job_id)
