"""The steps every part of the engine shares: open an attempt, enter a stage, advance after a
success, end a failed attempt (retry or fail the job). Each status change is a move of the
transition table; this module decides which move, ``transitions`` writes it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from jobs.models import Job, StageRun
from jobs.orchestrator import clock, routing, statements, transitions
from stages import pipeline

JS = Job.Status
RS = StageRun.Status
EK = StageRun.ErrorKind


def status_for_stage(stage: str) -> str:
    """The job's status while ``stage`` is its current one."""
    if stage == pipeline.GATE:
        return JS.AWAITING_REVIEW
    return JS.PUBLISHING if pipeline.after_gate(stage) else JS.RUNNING


def lock_job(job_id: int) -> Job:
    """The job, its row locked until the transaction ends (one prepared statement: every operator
    move and every review starts here)."""
    job = statements.sql().lock_job(job_id)
    if job is None:
        raise Job.DoesNotExist(f"no job with id {job_id}")
    return job


def new_run(job_id: int, stage: str, **options: Any) -> StageRun:
    """Create the next attempt of ``stage`` (``options``: those of ``_opening``); push it now if
    it is due (else the sweeper will).

    Call with the job's row locked: the attempt number is the next free one for the stage.
    """
    event, values = _opening(job_id, stage, clock.now(), **options)
    run = transitions.insert_run(event, **values)
    _push_if_due(run)
    return run


def _opening(
    job_id: int,
    stage: str,
    now: datetime,
    *,
    retry_index: int = 0,
    delay: float = 0.0,
    reason: str = "",
    input: dict | None = None,
) -> tuple[str, dict[str, Any]]:
    """A new attempt of ``stage`` as (event, values): the gate's waiting run, or a queued attempt
    (due now, or after ``delay`` seconds of backoff)."""
    if stage == pipeline.GATE:
        return "wait", {
            "job_id": job_id,
            "stage": stage,
            "reason": reason or "waiting for review",
            "queued_at": now,
            "started_at": now,
            "message": "waiting for an operator's decision",
            "input": input or {},
        }
    not_before = now + timedelta(seconds=delay) if delay > 0 else None
    return "queue", {
        "job_id": job_id,
        "stage": stage,
        "retry_index": retry_index,
        "reason": reason,
        "queued_at": now,
        "not_before": not_before,
        "enqueued_at": None if not_before else now,
        "input": input or {},
    }


def _push_if_due(run: StageRun) -> None:
    if run.stage != pipeline.GATE and run.not_before is None:
        routing.push(run)


def enter_stage(job: Job, stage: str, event: str, *, skip: Sequence[str] = (), **kwargs: Any) -> StageRun:
    """Move a locked job to ``stage`` (an operator's move: resume, re-run, request changes, edit).

    ``skip``: the stages after ``stage`` that this re-run leaves alone (a targeted edit's plan):
    ``advance`` jumps over them, their checkpoints stay current. Any other move clears it.
    """
    transitions.move_job(
        job,
        event,
        status_for_stage(stage),
        current_stage=stage,
        skip_stages=list(skip),
        updated=clock.now(),
        finished=None,
        error_stage="",
        error_kind="",
        error_message="",
        error_hint="",
    )
    return new_run(job.pk, stage, **kwargs)


def following(after: str, skip: Sequence[str] = ()) -> str | None:
    """The stage that runs after ``after``, jumping over ``skip`` (the job's ``skip_stages``)."""
    nxt = pipeline.next_stage(after)
    while nxt is not None and nxt in skip:
        nxt = pipeline.next_stage(nxt)
    return nxt


def record_success(
    run_id: int, job_id: int, after: str, now: datetime, values: dict[str, Any], skip: Sequence[str] = ()
) -> str:
    """``after`` succeeded: record the run (``values``), move the job to the next stage (or
    complete it after the last one) and open that stage's first attempt, in the caller's
    transaction; push it once that commits. ``skip``: the job's ``skip_stages``, as the claim
    loaded them. Returns ``moved``, ``stopped`` (the job is no longer active: the run is recorded,
    nothing starts) or ``discarded`` (the run is no longer running: the caller rolls back).
    """
    nxt = following(after, skip)
    if nxt is None:
        event, target, job_values = "complete", JS.COMPLETED, {"finished": now, "updated": now}
        opening = None
    else:
        target = status_for_stage(nxt)
        event = "reach_review" if nxt == pipeline.GATE else "advance"
        job_values = {"current_stage": nxt, "updated": now}
        opening = _opening(job_id, nxt, now, reason=f"after {after}")
    outcome, run = transitions.record_success(job_id, event, target, job_values, run_id, values, opening)
    if run is not None:
        _push_if_due(run)
    return outcome


def open_next(job_id: int, after: str, skip: Sequence[str] = ()) -> None:
    """The next stage's first attempt (after ``advance`` moved the job there)."""
    nxt = following(after, skip)
    if nxt is not None:
        new_run(job_id, nxt, reason=f"after {after}")


def backoff(policy: pipeline.StagePolicy, retry_index: int, retry_after: float | None) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**n)), never less than the provider's Retry-After."""
    ceiling = min(policy.backoff_cap, policy.backoff_base * (2**retry_index))
    delay = random.uniform(0, ceiling) if ceiling > 0 else 0.0
    return max(delay, retry_after or 0.0)


def _after_failure(job: Job, run: StageRun, *, permanent: bool, retry_after: float | None = None) -> None:
    """Inside the job's lock, after ``run`` ended without success: retry, or fail the job."""
    if job.status not in transitions.job_move("fail").sources:
        return  # cancelled, re-run or decided meanwhile: nothing follows this attempt
    policy = pipeline.spec(run.stage).policy
    if not permanent and run.retry_index + 1 < policy.max_attempts:
        new_run(
            job.pk,
            run.stage,
            retry_index=run.retry_index + 1,
            delay=backoff(policy, run.retry_index, retry_after),
            reason=f"retry after {run.get_error_kind_display().lower()}",
            input=run.input,
        )
        return
    attempts = run.retry_index + 1
    message = run.error_message if permanent else f"{run.error_message} (gave up after {attempts} attempts)"
    now = clock.now()
    transitions.move_job(
        job,
        "fail",
        error_stage=run.stage,
        error_kind=run.error_kind,
        error_message=message,
        error_hint=run.error_hint,
        finished=now,
        updated=now,
    )


def end_attempt(
    run_id: int,
    *,
    event: str,
    kind: str,
    message: str,
    hint: str = "",
    tb: str = "",
    log_tail: str = "",
    permanent: bool = False,
    retry_after: float | None = None,
    where: dict[str, Any] | None = None,
    spent: dict[str, Any] | None = None,
) -> bool:
    """Record the end of a running attempt that did not succeed (``fail`` or ``crash``), then retry
    or fail the job. False if the attempt was not running (or ``where`` no longer held).

    ``spent`` is the attempt's ``usage`` and ``cost`` (the cost ledger): money a failed attempt
    spent is still spent."""
    with transaction.atomic():
        job_id = StageRun.objects.values_list("job_id", flat=True).get(pk=run_id)
        job = lock_job(job_id)
        moved = transitions.move_run(
            run_id,
            event,
            where=where,
            finished_at=clock.now(),
            error_kind=kind,
            error_message=message[:5000],
            error_hint=hint[:2000],
            error_traceback=tb[-20000:],
            log_tail=log_tail[-8000:],
            message=message[:500],
            **(spent or {}),
        )
        if not moved:
            return False
        run = StageRun.objects.get(pk=run_id)
        _after_failure(job, run, permanent=permanent, retry_after=retry_after)
        return True


def unexpected_is_permanent(run: StageRun) -> bool:
    """Anything that is not a StageError is transient once per series, then permanent."""
    return StageRun.objects.filter(
        job_id=run.job_id,
        stage=run.stage,
        error_kind=EK.UNEXPECTED,
        attempt__lt=run.attempt,
        attempt__gte=run.attempt - run.retry_index,
    ).exists()


def who(user) -> str:
    return getattr(user, "get_username", lambda: "")() or "system"
