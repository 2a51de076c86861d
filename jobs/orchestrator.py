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
import json
import logging
import os
import random
import shutil
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from jobs.models import Artifact, Job, ReviewDecision, StageRun, Theme
from stages import pipeline
from stages.base import (
    DISK_FULL_ERRNOS,
    AbortSignal,
    StageAborted,
    StageContext,
    StageError,
    disk_full,
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

    key = (Conf.ORM, str(Conf.REDIS), Conf.BROKER_CLASS, Conf.CLUSTER_NAME)
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


# --- the hot path's statements ---------------------------------------------------------------
#
# Claim -> run -> record + next attempt + enqueue is paid on every stage of every job. Through
# the ORM, compiling those statements cost the worker more CPU than the database spent running
# them (bench/RESULTS.md), so they are built once per database vendor from the models' metadata
# (column names, defaults and value adaptation stay the models') and run with bound parameters.
# Operator actions, failures and the sweeper stay on the ORM.


class _Discarded(Exception):
    """The run was no longer running when its result arrived: roll the transaction back."""


@dataclass
class _Claim:
    run: StageRun  # job_id, stage, attempt, retry_index, input
    job_status: str
    params: dict
    review_notes: list
    theme: Theme
    checkpoints: dict[str, tuple[Any, str]]  # stage -> (output, output_dir) of its current checkpoint


class _Statements:
    RUN_FIELDS = ("job_id", "stage", "attempt", "retry_index", "input")
    JOB_FIELDS = ("status", "params", "review_notes")
    THEME_FIELDS = ("id", "name", "slug", "keywords", "sources", "target_seconds", "voice", "settings")

    def __init__(self, conn) -> None:
        self.conn = conn  # django.db.connection: each thread's own connection
        q = conn.ops.quote_name
        self.q = q
        run_t, job_t, theme_t = (q(m._meta.db_table) for m in (StageRun, Job, Theme))
        col = lambda model, name: q(model._meta.get_field(name).column)  # noqa: E731
        self.json_fields = [
            StageRun._meta.get_field("input"),
            *(Job._meta.get_field(f) for f in ("params", "review_notes")),
            *(Theme._meta.get_field(f) for f in ("keywords", "sources", "settings")),
        ]
        run_cols = ", ".join(col(StageRun, f) for f in self.RUN_FIELDS)
        select = ", ".join(
            [
                *(f"r.{col(StageRun, f)}" for f in self.RUN_FIELDS),
                *(f"j.{col(Job, f)}" for f in self.JOB_FIELDS),
                *(f"t.{col(Theme, f)}" for f in self.THEME_FIELDS),
            ]
        )
        joins = f"JOIN {job_t} j ON j.{col(Job, 'id')} = r.{col(StageRun, 'job_id')} JOIN {theme_t} t ON t.{col(Theme, 'id')} = j.{col(Job, 'theme_id')}"
        # the job's current checkpoints, as one JSON array of [stage, attempt, output, output_dir]
        c_stage, c_attempt, c_output, c_dir = (
            f"c.{col(StageRun, f)}" for f in ("stage", "attempt", "output", "output_dir")
        )
        where = (
            f"c.{col(StageRun, 'job_id')} = r.{col(StageRun, 'job_id')} AND c.{col(StageRun, 'status')} = %s "
            f"AND c.{col(StageRun, 'superseded_at')} IS NULL"
        )
        if conn.vendor == "postgresql":
            checkpoints = f"(SELECT json_agg(json_build_array({c_stage}, {c_attempt}, {c_output}, {c_dir})) FROM {run_t} c WHERE {where})"
        else:
            checkpoints = f"(SELECT json_group_array(json_array({c_stage}, {c_attempt}, json({c_output}), {c_dir})) FROM {run_t} c WHERE {where})"
        select += ", " + checkpoints
        nb = col(StageRun, "not_before")
        update = (
            f"UPDATE {run_t} SET {col(StageRun, 'status')} = %s, {col(StageRun, 'started_at')} = %s, "
            f"{col(StageRun, 'heartbeat_at')} = %s, {col(StageRun, 'worker')} = %s, {col(StageRun, 'message')} = %s "
            f"WHERE {col(StageRun, 'id')} = %s AND {col(StageRun, 'status')} = %s AND ({nb} IS NULL OR {nb} <= %s)"
        )
        if conn.vendor == "postgresql":  # one round trip: the claim and everything the stage needs
            self.claim_sql = [f"WITH r AS ({update} RETURNING {run_cols}) SELECT {select} FROM r {joins}"]
        else:  # SQLite has no UPDATE inside WITH
            self.claim_sql = [update, f"SELECT {select} FROM {run_t} r {joins} WHERE r.{col(StageRun, 'id')} = %s"]
        # every column but the key and those the database fills itself (db_default)
        self.run_fields = [f for f in StageRun._meta.concrete_fields if not f.primary_key and not f.has_db_default()]
        next_attempt = (
            f"(SELECT COALESCE(MAX({col(StageRun, 'attempt')}), 0) + 1 FROM {run_t} "
            f"WHERE {col(StageRun, 'job_id')} = %s AND {col(StageRun, 'stage')} = %s)"
        )
        self.insert_sql = (
            f"INSERT INTO {run_t} ({', '.join(q(f.column) for f in self.run_fields)}) VALUES "
            f"({', '.join(next_attempt if f.name == 'attempt' else '%s' for f in self.run_fields)}) "
            f"RETURNING {col(StageRun, 'id')}, {col(StageRun, 'attempt')}"
        )
        self.updates: dict[tuple, str] = {}

    def _json(self, field, value):
        return field.from_db_value(value, None, self.conn)

    def claim(self, run_id: int, now: datetime, worker: str) -> _Claim | None:
        """``queued -> running`` if due, committed at once, with what the stage needs; None if
        another delivery (or nobody, for a run not due or not queued) has it."""
        at = self.conn.ops.adapt_datetimefield_value(now)
        params = [RS.RUNNING, at, at, worker, "started", run_id, RS.QUEUED, at]
        with self.conn.cursor() as cur:
            if len(self.claim_sql) == 1:
                cur.execute(self.claim_sql[0], params + [RS.SUCCEEDED])
            else:
                cur.execute(self.claim_sql[0], params)
                if not cur.rowcount:
                    return None
                cur.execute(self.claim_sql[1], [RS.SUCCEEDED, run_id])
            row = cur.fetchone()
        if row is None:
            return None
        job_id, stage, attempt, retry_index, input_, job_status, params_, notes, *theme, checkpoints = row
        input_f, params_f, notes_f, *theme_json = self.json_fields
        theme_values = dict(zip(self.THEME_FIELDS, theme, strict=False))
        for f in theme_json:
            theme_values[f.name] = self._json(f, theme_values[f.name])
        if isinstance(checkpoints, str):
            checkpoints = json.loads(checkpoints)
        latest: dict[str, tuple[int, Any, str]] = {}
        for cp_stage, cp_attempt, output, folder in checkpoints or []:
            if cp_stage not in latest or cp_attempt > latest[cp_stage][0]:
                latest[cp_stage] = (cp_attempt, output, folder)
        return _Claim(
            run=StageRun(
                id=run_id,
                job_id=job_id,
                stage=stage,
                attempt=attempt,
                retry_index=retry_index,
                input=self._json(input_f, input_) or {},
                status=RS.RUNNING,
                started_at=now,
            ),
            job_status=job_status,
            params=self._json(params_f, params_) or {},
            review_notes=self._json(notes_f, notes) or [],
            theme=Theme(**theme_values),
            checkpoints={k: (output, folder) for k, (_, output, folder) in latest.items()},
        )

    def insert_run(self, **values: Any) -> StageRun:
        """A new StageRun row; its attempt is the next free number of (job, stage)."""
        params: list[Any] = []
        for f in self.run_fields:
            if f.name == "attempt":
                params += [values["job_id"], values["stage"]]
            else:
                value = values[f.attname] if f.attname in values else f.get_default()
                values[f.attname] = value
                params.append(f.get_db_prep_save(value, self.conn))
        with self.conn.cursor() as cur:
            cur.execute(self.insert_sql, params)
            pk, values["attempt"] = cur.fetchone()
        return StageRun(id=pk, **values)

    def update(self, model, pk: int, values: dict[str, Any], **where: Any) -> int:
        """``UPDATE model SET values WHERE pk AND where`` (``f=v`` or ``f__in=(...)``): rows changed."""
        key = (model, tuple(values), tuple((k, len(v) if k.endswith("__in") else 0) for k, v in where.items()))
        sql = self.updates.get(key)
        meta, q = model._meta, self.q
        if sql is None:
            conds = [f"{q(meta.pk.column)} = %s"]
            for k, v in where.items():
                name, _, op = k.partition("__")
                column = q(meta.get_field(name).column)
                conds.append(f"{column} IN ({', '.join(['%s'] * len(v))})" if op == "in" else f"{column} = %s")
            sets = ", ".join(f"{q(meta.get_field(f).column)} = %s" for f in values)
            sql = self.updates[key] = f"UPDATE {q(meta.db_table)} SET {sets} WHERE {' AND '.join(conds)}"
        params = [meta.get_field(f).get_db_prep_save(v, self.conn) for f, v in values.items()]
        params.append(pk)
        for k, v in where.items():
            f = meta.get_field(k.partition("__")[0])
            params += [f.get_db_prep_value(x, self.conn) for x in (v if k.endswith("__in") else [v])]
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount


_statements: dict[str, _Statements] = {}


def _sql() -> _Statements:
    """The hot path's statements for the default database (built on first use)."""
    vendor = connection.vendor
    built = _statements.get(vendor)
    if built is None:
        built = _statements[vendor] = _Statements(connection)
    return built


def _new_run(
    job_id: int, stage: str, *, retry_index: int = 0, delay: float = 0.0, reason: str = "", input: dict | None = None
) -> StageRun:
    """Create the next attempt of ``stage``; push it now if it is due (else the sweeper will).

    Call with the job's row locked: the attempt number is the next free one for the stage.
    """
    now = timezone.now()
    if pipeline.spec(stage).gate:
        return _sql().insert_run(
            job_id=job_id,
            stage=stage,
            status=RS.WAITING,
            reason=reason or "waiting for review",
            queued_at=now,
            started_at=now,
            message="waiting for an operator's decision",
            input=input or {},
        )
    not_before = now + timedelta(seconds=delay) if delay > 0 else None
    run = _sql().insert_run(
        job_id=job_id,
        stage=stage,
        retry_index=retry_index,
        status=RS.QUEUED,
        reason=reason,
        queued_at=now,
        not_before=not_before,
        enqueued_at=None if not_before else now,
        input=input or {},
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
    run = _new_run(job.pk, stage, **kwargs)
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
            theme=theme,
            params=params or {},
            created_by=user if getattr(user, "pk", None) else None,
            idempotency_key=idempotency_key or None,
            status=JS.PENDING,
        )
        first = pipeline.STAGE_KEYS[0]
        _new_run(job.pk, first, reason="job started")
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
    done = set(job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True).values_list("stage", flat=True))
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
                raise InvalidState(
                    f"job {job.pk} is {job.get_status_display().lower()}; only failed or cancelled jobs resume"
                )
            stage = resume_point(job)
            reason = f"resumed by {_who(user)}"
        else:
            if job.status in (JS.PENDING, JS.RUNNING, JS.PUBLISHING):
                raise InvalidState(f"job {job.pk} is {job.get_status_display().lower()}; cancel it before re-running")
            stage = from_stage
            reason = f"re-run from {stage} by {_who(user)}"
        if job.media_purged_at is not None:
            # retention removed every checkpoint's files: nothing earlier can be built on
            stage = pipeline.STAGE_KEYS[0]
            reason += " (media had been removed by retention: from the start)"
            job.media_purged_at = None
            job.save(update_fields=["media_purged_at"])
        _rerun(job, stage, reason=reason, notes=notes)
    return job


def _rerun(job: Job, stage: str, *, reason: str, notes: str = "") -> None:
    now = timezone.now()
    later = pipeline.stages_from(stage)
    job.runs.filter(stage__in=later, status=RS.SUCCEEDED, superseded_at__isnull=True).update(superseded_at=now)
    job.runs.filter(status__in=StageRun.OPEN).update(
        status=RS.CANCELLED,
        finished_at=now,
        error_kind=EK.CANCELLED,
        message="superseded by " + reason,
        superseded_at=now,
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
            job=job,
            stage_run=run,
            decision=decision,
            notes=notes,
            from_stage=from_stage or "",
            decided_by=user if getattr(user, "pk", None) else None,
            decided_at=now,
        )
        run.status = RS.SUCCEEDED
        run.finished_at = now
        run.progress = 1.0
        run.message = f"{decisions(decision).label.lower()} by {_who(user)}"
        run.output = {"decision": decision, "by": _who(user), "notes": notes, "from_stage": from_stage or ""}
        run.save(update_fields=["status", "finished_at", "progress", "message", "output"])
        if decision == decisions.APPROVE:
            _advance(job.pk, gate, now)
            _open_next(job.pk, gate)
            job.refresh_from_db()
        elif decision == decisions.REJECT:
            job.status = JS.REJECTED
            job.finished = job.updated = now
            job.save(update_fields=["status", "finished", "updated"])
        else:
            job.review_notes = [*(job.review_notes or []), notes]
            job.save(update_fields=["review_notes"])
            _rerun(job, from_stage, reason=f"changes requested by {_who(user)}", notes=notes)
    return job


def _who(user) -> str:
    return getattr(user, "get_username", lambda: "")() or "system"


# --- running a stage --------------------------------------------------------------------------


def _advance(job_id: int, after: str, now: datetime) -> str | None:
    """``after`` succeeded: move the job to the next stage, or complete it after the last one.

    One conditional UPDATE of the job row, which is also the job's lock: call it before touching
    the job's runs (every writer locks the job first). Returns the job's new status, or None when
    the job is no longer active (nothing changed). Then record the run and ``_open_next``.
    """
    nxt = pipeline.next_stage(after)
    if nxt is None:
        values = {"status": JS.COMPLETED, "finished": now, "updated": now}
    else:
        values = {"current_stage": nxt, "status": _status_for_stage(nxt), "updated": now}
    return values["status"] if _sql().update(Job, job_id, values, status__in=Job.ACTIVE) else None


def _open_next(job_id: int, after: str) -> None:
    """The next stage's first attempt (after ``_advance`` moved the job there)."""
    nxt = pipeline.next_stage(after)
    if nxt is not None:
        _new_run(job_id, nxt, reason=f"after {after}")


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
        _new_run(
            job.pk,
            run.stage,
            retry_index=run.retry_index + 1,
            delay=delay,
            reason=f"retry after {run.get_error_kind_display().lower()}",
            input=run.input,
        )
        return
    if job.status not in Job.ACTIVE:
        return
    now = timezone.now()
    job.status = JS.FAILED
    job.error_stage = run.stage
    job.error_kind = run.error_kind
    attempts = run.retry_index + 1
    job.error_message = (
        run.error_message
        if permanent
        else f"{run.error_message} (gave up after {attempts} attempt{'s' * (attempts > 1)})"
    )
    job.error_hint = run.error_hint
    job.finished = job.updated = now
    job.save(
        update_fields=["status", "error_stage", "error_kind", "error_message", "error_hint", "finished", "updated"]
    )


def _fail_running(
    run_id: int,
    *,
    status: str,
    kind: str,
    message: str,
    hint: str = "",
    tb: str = "",
    log_tail: str = "",
    permanent: bool = False,
    retry_after: float | None = None,
) -> bool:
    """Record the end of a running attempt that did not succeed. False if it was not running."""
    with transaction.atomic():
        run = StageRun.objects.select_related("job").get(pk=run_id)
        job = _lock_job(run.job_id)
        now = timezone.now()
        updated = StageRun.objects.filter(pk=run_id, status=RS.RUNNING).update(
            status=status,
            finished_at=now,
            error_kind=kind,
            error_message=message[:5000],
            error_hint=hint[:2000],
            error_traceback=tb[-20000:],
            log_tail=log_tail[-8000:],
            message=message[:500],
        )
        if not updated:
            return False
        run.refresh_from_db()
        _after_failure(job, run, permanent=permanent, retry_after=retry_after)
        return True


def _unexpected_is_permanent(run: StageRun) -> bool:
    """Anything that is not a StageError is transient once per series, then permanent."""
    return StageRun.objects.filter(
        job_id=run.job_id,
        stage=run.stage,
        error_kind=EK.UNEXPECTED,
        attempt__lt=run.attempt,
        attempt__gte=run.attempt - run.retry_index,
    ).exists()


def media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


def job_dir(job_id: int) -> Path:
    return media_root() / "jobs" / str(job_id)


def _context(claim: _Claim, abort: AbortSignal, report) -> StageContext:
    run = claim.run
    upstream: dict[str, dict] = {}
    upstream_dirs: dict[str, Path] = {}
    for stage, (output, output_dir) in claim.checkpoints.items():
        upstream[stage] = output or {}
        if output_dir:
            upstream_dirs[stage] = media_root() / output_dir
    work = job_dir(run.job_id) / run.stage / f"attempt-{run.attempt}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
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


@dataclass(eq=False)
class _Watchdog:
    """Heartbeats for a running attempt, carries its progress, notices cancel, enforces the limit.

    Ticked every ``interval`` by the process's watchdog thread (``_Ticker``) between ``start``
    and ``finish``; ``finish`` waits for a tick in flight, so none lands after it returns.
    """

    run_id: int
    time_limit: float
    abort: AbortSignal
    interval: float
    progress: tuple[float, str] = (0.0, "")
    dirty: bool = False
    active: bool = False
    due: float = 0.0
    started: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, fraction: float, message: str) -> None:
        self.progress = (fraction, message)
        self.dirty = True

    def start(self) -> None:
        self.started = timezone.now()
        self.due = time.monotonic() + self.interval
        self.active = True
        _Ticker.get().add(self)

    def tick(self) -> None:
        now = timezone.now()
        if self.time_limit and (now - self.started).total_seconds() > self.time_limit:
            self.abort.abort("timeout")
            _fail_running(
                self.run_id,
                status=RS.FAILED,
                kind=EK.TIMEOUT,
                message=f"stopped after its time limit of {self.time_limit:g}s",
                hint="raise the stage's time_limit or make its input smaller",
            )
            return
        fields: dict[str, Any] = {"heartbeat_at": now}
        if self.dirty:
            self.dirty = False
            fields["progress"], fields["message"] = self.progress
        alive = StageRun.objects.filter(pk=self.run_id, status=RS.RUNNING).update(**fields)
        if not alive:
            self.abort.abort("cancelled")

    def finish(self) -> None:
        with self.lock:
            self.active = False
        _Ticker.get().remove(self)


class _Ticker:
    """The watchdog thread of this process: one for every attempt it runs (a thread started and
    joined per attempt cost more than a no-op stage). Its database connection is closed whenever
    no attempt is watched, so an idle worker holds none."""

    _instance: _Ticker | None = None
    _create = threading.Lock()

    @classmethod
    def get(cls) -> _Ticker:
        ticker = cls._instance
        if ticker is None or ticker.pid != os.getpid():  # none yet, or inherited through fork
            with cls._create:
                ticker = cls._instance
                if ticker is None or ticker.pid != os.getpid():
                    ticker = cls._instance = cls()
        return ticker

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.dogs: dict[int, _Watchdog] = {}
        threading.Thread(target=self._loop, name="trendreel-watchdog", daemon=True).start()

    def add(self, dog: _Watchdog) -> None:
        with self.cond:
            self.dogs[id(dog)] = dog
            self.cond.notify()

    def remove(self, dog: _Watchdog) -> None:
        with self.cond:
            self.dogs.pop(id(dog), None)

    def _loop(self) -> None:
        while True:
            with self.cond:
                if not self.dogs:
                    connection.close()
                    self.cond.wait()
                    continue
                now = time.monotonic()
                due = [d for d in self.dogs.values() if d.due <= now]
                if not due:
                    self.cond.wait(min(d.due for d in self.dogs.values()) - now)
                    continue
            for dog in due:
                self._tick(dog)

    def _tick(self, dog: _Watchdog) -> None:
        with dog.lock:
            if not dog.active:
                return
            dog.due = time.monotonic() + dog.interval
            try:
                dog.tick()
            except Exception:  # a locked/busy/restarted database must not kill the watchdog
                log.warning("watchdog of run %s: tick failed", dog.run_id, exc_info=True)
                connection.close()  # reconnect on the next tick
            if dog.abort.reason is not None:
                dog.active = False
                self.remove(dog)


def execute_run(run_id: int) -> str:
    """Claim, run and record one stage attempt. Safe to call any number of times for one run.

    Returns what happened: ``not-claimed``, ``succeeded``, ``failed``, ``aborted:<reason>``,
    ``discarded`` (finished after the run was cancelled or swept).
    """
    now = timezone.now()
    claim = _sql().claim(run_id, now, f"{socket.gethostname()}:{os.getpid()}")
    if claim is None:
        return "not-claimed"
    run = claim.run
    if claim.job_status == JS.PENDING:  # the first claim of a job starts it
        _sql().update(Job, run.job_id, {"status": JS.RUNNING, "started": now, "updated": now}, status=JS.PENDING)
    spec = pipeline.spec(run.stage)
    abort = AbortSignal()
    dog = _Watchdog(run_id, spec.policy.time_limit, abort, settings.TRENDREEL_HEARTBEAT_SECONDS)
    tail = _TailHandler()
    outcome: tuple[str, Any] | None = None
    ctx = None
    try:
        ctx = _context(claim, abort, dog.report)
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
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            full = disk_full(str(exc))  # not a bug: retried like any transient error
            full.__cause__ = exc
            outcome = ("error", full)
        else:
            outcome = ("unexpected", exc)
    finally:
        dog.finish()
        if ctx is not None:
            ctx.logger.removeHandler(tail)
    kind, value = outcome
    if kind == "ok" and abort.reason is None:
        return _record_success(run, ctx, value, tail.text)
    if ctx is not None:  # a failed or stopped attempt's files help nobody and may fill the disk
        shutil.rmtree(ctx.work_dir, ignore_errors=True)
    if abort.reason is not None:
        # The watchdog already recorded why (timeout) or someone else did (cancel, sweep).
        return f"aborted:{abort.reason}"
    tb = "".join(traceback.format_exception(value)) if isinstance(value, BaseException) else ""
    if kind == "aborted":
        return "aborted:unknown"
    if kind == "error":
        _fail_running(
            run_id,
            status=RS.FAILED,
            kind=EK.PERMANENT if value.permanent else EK.TRANSIENT,
            message=value.message,
            hint=value.hint,
            tb=tb,
            log_tail=tail.text,
            permanent=value.permanent,
            retry_after=value.retry_after,
        )
        return "failed"
    if kind == "config":
        _fail_running(
            run_id,
            status=RS.FAILED,
            kind=EK.PERMANENT,
            message=str(value),
            hint="fix the configuration, then retry",
            tb=tb,
            log_tail=tail.text,
            permanent=True,
        )
        return "failed"
    permanent = _unexpected_is_permanent(run)
    _fail_running(
        run_id,
        status=RS.FAILED,
        kind=EK.UNEXPECTED,
        message=f"{type(value).__name__}: {value}",
        hint="" if not permanent else "the same unexpected error happened twice; see the traceback",
        tb=tb,
        log_tail=tail.text,
        permanent=permanent,
    )
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
            _fail_running(
                run.pk,
                status=RS.FAILED,
                kind=EK.PERMANENT,
                message=f"stage reported an artifact that does not exist: {spec.path}",
                permanent=True,
            )
            return "failed"
        artifacts.append((spec, path.relative_to(media_root()).as_posix(), path.stat().st_size, _sha256(path)))
    try:
        with transaction.atomic():
            now = timezone.now()
            moved = _advance(run.job_id, run.stage, now)  # the job's lock, taken first as everywhere
            if moved is None:
                _lock_job(run.job_id)  # not active any more: record the run, start nothing
            recorded = _sql().update(
                StageRun,
                run.pk,
                {
                    "status": RS.SUCCEEDED,
                    "finished_at": now,
                    "progress": 1.0,
                    "output": result.output,
                    "output_dir": rel_dir,
                    "log_tail": log_tail[-8000:],
                    "message": "done",
                },
                status=RS.RUNNING,
            )
            if not recorded:
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
            if moved is not None:
                _open_next(run.job_id, run.stage)
    except _Discarded:
        return "discarded"
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


def stalled(
    now: datetime | None = None,
    window: float | None = None,
    workers: Callable[[], Collection[str] | None] | None = None,
) -> bool:
    """Due runs were pushed more than ``window`` seconds ago and nothing was claimed since.

    The signature of a wedged cluster (a SIGKILLed idle django-q2 worker leaves the shared task
    queue's read lock held, so every other worker waits forever) or of no cluster at all.
    ``workers`` gives ``host:pid`` of one cluster's worker processes (asked only when runs are
    waiting) to ask about that cluster alone: with several clusters on one database a wedged one
    is found while the others are busy.
    """
    now = now or timezone.now()
    since = now - timedelta(seconds=window if window is not None else settings.TRENDREEL_STALL_SECONDS)
    waiting = StageRun.objects.filter(status=RS.QUEUED, enqueued_at__lt=since).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now)
    )
    if not waiting.exists():
        return False
    names = workers() if workers is not None else None
    ours = StageRun.objects.all() if names is None else StageRun.objects.filter(worker__in=list(names))
    # busy workers (long renders) are not a stall: only idle-and-not-claiming is
    if ours.filter(status=RS.RUNNING).exists():
        return False
    return not ours.filter(started_at__gte=since).exists()


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
    for run in StageRun.objects.filter(status=RS.RUNNING, heartbeat_at__lt=stale_before).only(
        "pk", "stage", "started_at", "worker"
    ):
        limit = pipeline.spec(run.stage).policy.time_limit
        over = limit and run.started_at and (now - run.started_at).total_seconds() > limit
        kind = EK.TIMEOUT if over else EK.CRASHED
        message = f"worker {run.worker or '?'} stopped heartbeating" + (" after the time limit" if over else "")
        if _fail_running(
            run.pk,
            status=RS.CRASHED,
            kind=kind,
            message=message,
            hint="the attempt is retried automatically; a stage that keeps crashing its worker fails the job",
        ):
            report.crashed.append(run.pk)
    requeue_before = now if requeue_all else now - timedelta(seconds=settings.TRENDREEL_REQUEUE_SECONDS)
    due = (
        StageRun.objects.filter(status=RS.QUEUED)
        .filter(
            (Q(enqueued_at__isnull=True) & (Q(not_before__isnull=True) | Q(not_before__lte=now)))
            | Q(enqueued_at__lt=requeue_before)
        )
        .only("pk", "stage", "job_id", "attempt")
    )
    for run in due:
        with transaction.atomic():
            pushed = StageRun.objects.filter(pk=run.pk, status=RS.QUEUED, enqueued_at=run.enqueued_at).update(
                enqueued_at=timezone.now()
            )
            if pushed:
                _push(run)
                report.pushed.append(run.pk)
    return report


# --- in-process execution (run_pipeline --inline, tests) --------------------------------------


def run_inline(job_id: int, *, on_tick=None, sleep=None) -> Job:
    """Execute a job's queued runs in this process until it waits for review or finishes."""
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
