"""Running one attempt: claim -> run -> record, each step safe to repeat.

* **Claim**: a conditional UPDATE (``queued -> running`` if due) that also loads the job, theme
  and checkpoints; a duplicate delivery claims nothing and returns.
* **Run**: the stage function, outside any transaction, with the watchdog heartbeating.
* **Record**: rename the attempt's folder into place, then in one transaction holding the job's
  row: move the job on, mark the run succeeded, add its artifacts, create and enqueue the next
  attempt. Recording is part of the attempt: the watchdog keeps heartbeating until it commits, and
  anything that goes wrong while recording fails this attempt (kind, message, traceback; the retry
  policy applies), with the attempt's files removed, never a run left "running".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import shutil
import socket
import time
import traceback
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, transaction

from jobs import prices
from jobs.models import Artifact, Job, StageRun
from jobs.orchestrator import clock, gate, lifecycle, routing, transitions
from jobs.orchestrator.statements import Claim
from jobs.orchestrator.sweeper import sweep
from jobs.orchestrator.watchdog import Watchdog
from stages import pipeline
from stages.base import (
    DISK_FULL_ERRNOS,
    AbortSignal,
    StageAborted,
    StageContext,
    StageError,
    StageResult,
    disk_full,
    normalise_result,
)
from stages.metering import metering

log = logging.getLogger("trendreel.orchestrator")
JS = Job.Status
RS = StageRun.Status
EK = StageRun.ErrorKind


class _Discarded(Exception):
    """The run was no longer running when its result arrived: roll the transaction back."""


def media_root() -> Path:
    root = settings.MEDIA_ROOT
    if _root[0] != root:  # built once per setting (a stage's paths are all made from it)
        _root[:] = [root, Path(root)]
    return _root[1]


_root: list = [None, None]


def job_dir(job_id: int) -> Path:
    return media_root() / "jobs" / str(job_id)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_run(run_id: int) -> str:
    """Claim, run and record one stage attempt. Safe to call any number of times for one run.

    Returns what happened: ``not-claimed``, ``succeeded``, ``failed``, ``aborted:<reason>``,
    ``discarded`` (finished after the run was cancelled or swept).
    """
    now = clock.now()
    claim = transitions.claim_run(run_id, now, worker_name())
    if claim is None:
        return "not-claimed"
    run = claim.run
    if claim.job_status == JS.PENDING:  # the first claim of a job starts it
        transitions.move_job_row(run.job_id, "start", JS.RUNNING, {"started": now, "updated": now})
    if pipeline.after_gate(run.stage):
        refused = gate.problem(run.job_id)  # the approval must cover what this stage would publish
        if refused is not None:
            _end(run, EK.PERMANENT, refused, hint="review the job again; publish runs after an approval")
            return "failed"
    spec = pipeline.spec(run.stage)
    abort = AbortSignal()
    dog = Watchdog(run_id, spec.policy.time_limit, abort, settings.TRENDREEL_HEARTBEAT_SECONDS)
    dog.start()
    try:
        return _attempt(claim, abort, dog)
    finally:
        dog.finish()


def _attempt(claim: Claim, abort: AbortSignal, dog: Watchdog) -> str:
    run = claim.run
    tail = _TailHandler()
    ctx: StageContext | None = None
    cpu = _children_cpu()
    try:
        ctx = _context(claim, abort, dog.report)
        ctx.logger.addHandler(tail)
        try:
            with metering(ctx.usage):  # every request the stage sends counts into its usage
                result = normalise_result(pipeline.load(run.stage)(ctx))
        finally:
            _count_cpu(ctx, cpu)
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded on the attempt
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit: the worker is going away; the sweeper will see
        spent = _spent(ctx, priced=False)
        if ctx is not None:  # a failed or stopped attempt's files help nobody and may fill the disk
            shutil.rmtree(ctx.work_dir, ignore_errors=True)
        if abort.reason is not None or isinstance(exc, StageAborted):
            # the watchdog already recorded why (timeout), or someone else did (cancel, sweep)
            _keep_spent(run.pk, spent)
            return f"aborted:{abort.reason or 'unknown'}"
        dog.record_started()
        _fail(run, exc, tail.text, spent=spent)
        return "failed"
    finally:
        if ctx is not None:
            ctx.logger.removeHandler(tail)
    if abort.reason is not None:
        shutil.rmtree(ctx.work_dir, ignore_errors=True)
        _keep_spent(run.pk, _spent(ctx, priced=False))
        return f"aborted:{abort.reason}"
    dog.record_started()
    return _record(run, ctx, result, tail.text, claim.skip_stages)


# --- the cost ledger ------------------------------------------------------------------------


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (ffmpeg, Piper...). A
    django-q2 worker process runs one attempt at a time, so the delta around an attempt is its own."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _count_cpu(ctx: StageContext, cpu_before: float) -> None:
    cpu = round(_children_cpu() - cpu_before, 3)
    if cpu > 0:
        ctx.usage.add("local", render_cpu_seconds=cpu)


def _spent(ctx: StageContext | None, *, priced: bool = True) -> dict[str, Any]:
    """The attempt's ``usage`` and ``cost`` columns (nothing for an attempt that never started).

    ``priced=False`` is for failed attempts: a price table broken at run time (settings are
    checked at start-up) then costs the attempt 0 rather than hiding its failure behind another.
    """
    if ctx is None:
        return {}
    usage = ctx.usage.as_dict()
    if not usage:
        return {}
    try:
        cost = prices.cost_of(usage)
    except prices.PriceError as exc:
        if priced:
            raise ImproperlyConfigured(f"TRENDREEL_PRICES: {exc}") from None
        log.warning("run %s: usage not priced: TRENDREEL_PRICES: %s", ctx.run_id, exc)
        cost = Decimal(0)
    return {"usage": usage, "cost": cost}


def _keep_spent(run_id: int, spent: dict[str, Any]) -> None:
    """Money spent by an attempt that was stopped (cancel, time limit) or discarded is still spent."""
    if spent:
        with contextlib.suppress(DatabaseError):
            StageRun.objects.filter(pk=run_id).update(**spent)


def _fail(
    run: StageRun, exc: Exception, log_tail: str, *, recording: bool = False, spent: dict[str, Any] | None = None
) -> None:
    """Record a failed attempt: what kind of failure, then the retry policy decides."""
    tb = "".join(traceback.format_exception(exc))
    prefix = "recording the result failed: " if recording else ""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        exc = disk_full(str(exc))  # not a bug: retried like any transient error
    if isinstance(exc, StageError):
        kind = EK.PERMANENT if exc.permanent else EK.TRANSIENT
        _end(
            run,
            kind,
            prefix + exc.message,
            hint=exc.hint,
            tb=tb,
            log_tail=log_tail,
            retry_after=exc.retry_after,
            spent=spent,
        )
    elif isinstance(exc, ImproperlyConfigured):
        _end(
            run,
            EK.PERMANENT,
            prefix + str(exc),
            hint="fix the configuration, then retry",
            tb=tb,
            log_tail=log_tail,
            spent=spent,
        )
    elif recording and isinstance(exc, DatabaseError) and not isinstance(exc, IntegrityError):
        # the database went away or a lock wait timed out: worth another attempt
        _end(
            run,
            EK.TRANSIENT,
            prefix + f"{type(exc).__name__}: {exc}",
            hint=_RETRIED,
            tb=tb,
            log_tail=log_tail,
            spent=spent,
        )
    else:
        permanent = lifecycle.unexpected_is_permanent(run)
        _end(
            run,
            EK.UNEXPECTED,
            prefix + f"{type(exc).__name__}: {exc}",
            hint="the same unexpected error happened twice; see the traceback" if permanent else "",
            tb=tb,
            log_tail=log_tail,
            permanent=permanent,
            spent=spent,
        )


_RETRIED = "the attempt is retried automatically"


def _end(run: StageRun, kind: str, message: str, **details: Any) -> bool:
    permanent = details.pop("permanent", kind == EK.PERMANENT)
    return lifecycle.end_attempt(run.pk, event="fail", kind=kind, message=message, permanent=permanent, **details)


# --- the record -----------------------------------------------------------------------------


def checksum(path: Path) -> str:
    """SHA-256 of an artifact (recorded with it: the console and publish can tell a file changed)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _record(run: StageRun, ctx: StageContext, result: StageResult, log_tail: str, skip: list[str]) -> str:
    """Checkpoint: rename the attempt's folder into place, then record and advance atomically.

    Any failure leaves no trace but the failed attempt: its files are removed (unless the record
    did commit and only the report of it failed) and the failure is recorded with its traceback.
    """
    final = ctx.work_dir.with_name(f"attempt-{run.attempt}")
    rel_dir = final.relative_to(media_root()).as_posix()
    spent: dict[str, Any] = {}
    try:
        spent = _spent(ctx)  # priced now, at the table of the time (no query)
        json.dumps(result.output, cls=DjangoJSONEncoder)  # what the JSONField will need, checked early
        if final.exists():
            shutil.rmtree(final)
        os.replace(ctx.work_dir, final)
        artifacts = []
        for spec in result.artifacts:
            path = Path(spec.path)
            if not path.is_absolute():
                path = final / path
            else:  # written inside the .partial folder before the rename
                with contextlib.suppress(ValueError):
                    path = final / path.relative_to(ctx.work_dir)
            if not path.is_file():
                _remove(ctx, final)
                _end(
                    run,
                    EK.PERMANENT,
                    f"stage reported an artifact that does not exist: {spec.path}",
                    log_tail=log_tail,
                    spent=spent,
                )
                return "failed"
            artifacts.append((spec, path.relative_to(media_root()).as_posix(), path.stat().st_size, checksum(path)))
        with transaction.atomic():
            now = clock.now()
            outcome = lifecycle.record_success(
                run.pk,
                run.job_id,
                run.stage,
                now,
                {
                    "finished_at": now,
                    "progress": 1.0,
                    "output": result.output,
                    "output_dir": rel_dir,
                    "log_tail": log_tail[-8000:],
                    "message": "done",
                    **spent,
                },
                skip,
            )
            if outcome == "discarded":
                raise _Discarded  # cancelled or swept meanwhile: roll the job's move back too
            if artifacts:
                Artifact.objects.bulk_create(
                    [
                        Artifact(
                            job_id=run.job_id,
                            stage_run_id=run.pk,
                            kind=spec.kind,
                            label=spec.label,
                            path=rel,
                            size=size,
                            checksum=digest,
                        )
                        for spec, rel, size, digest in artifacts
                    ]
                )
    except _Discarded:
        _remove(ctx, final)
        _keep_spent(run.pk, spent)
        return "discarded"
    except Exception as exc:  # noqa: BLE001 - recorded on the attempt, never a run left "running"
        if _committed(run.pk, rel_dir):
            return "succeeded"  # the commit went through; only its acknowledgement was lost
        _remove(ctx, final)
        log.warning("run %s: recording failed", run.pk, exc_info=True)
        _fail(run, exc, log_tail, recording=True, spent=spent or _spent(ctx, priced=False))
        return "failed"
    return "succeeded"


def _committed(run_id: int, rel_dir: str) -> bool:
    with contextlib.suppress(Exception):
        return StageRun.objects.filter(pk=run_id, status=RS.SUCCEEDED, output_dir=rel_dir).exists()
    return False


def _remove(ctx: StageContext, final: Path) -> None:
    """The files of an attempt that was never recorded."""
    for folder in (ctx.work_dir, final):
        shutil.rmtree(folder, ignore_errors=True)


# --- the stage's context --------------------------------------------------------------------


def _context(claim: Claim, abort: AbortSignal, report) -> StageContext:
    run = claim.run
    upstream: dict[str, dict] = {}
    upstream_dirs: dict[str, Path] = {}
    for stage, (output, output_dir) in claim.checkpoints.items():
        upstream[stage] = output or {}
        if output_dir:
            upstream_dirs[stage] = media_root() / output_dir
    base_output = base_dir = None
    if claim.base is not None:  # the stage's own latest checkpoint: a re-run reuses what did not change
        base_output, folder = claim.base
        if folder and (media_root() / folder).is_dir():  # retention may have removed its files
            base_output, base_dir = base_output or {}, media_root() / folder
        else:
            base_output = None
    work = job_dir(run.job_id) / run.stage / f"attempt-{run.attempt}.partial"
    work.parent.mkdir(parents=True, exist_ok=True)
    try:
        work.mkdir()
    except FileExistsError:  # left by a killed worker's attempt of the same number
        shutil.rmtree(work)
        work.mkdir()
    return StageContext(
        job_id=run.job_id,
        run_id=run.pk,
        stage=run.stage,
        attempt=run.attempt,
        theme=claim.theme.as_input(),
        params=dict(claim.params or {}),
        upstream=upstream,
        upstream_dirs=upstream_dirs,
        work_dir=work,
        review_notes=[n for n in claim.review_notes or [] if n],
        abort=abort,
        report=report,
        logger=logging.getLogger(f"trendreel.stage.{run.stage}"),
        overrides=dict(claim.overrides or {}),
        base_output=base_output,
        base_dir=base_dir,
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


# --- in-process execution (run_pipeline --inline, tests) --------------------------------------


def run_inline(job_id: int, *, on_tick=None, sleep=None) -> Job:
    """Execute a job's queued runs in this process until it waits for review or finishes."""
    sleep = sleep or time.sleep
    with routing.inline_mode():
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
            wait = (run.not_before - clock.now()).total_seconds() if run.not_before else 0
            if wait > 0:
                sleep(min(wait, 0.5))
                continue
            execute_run(run.pk)
            if on_tick:
                on_tick(job_id)
