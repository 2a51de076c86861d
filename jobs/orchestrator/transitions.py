"""Every legal status change of a Job and of a StageRun, and the one place that writes them.

Reading ``JOB_MOVES`` and ``RUN_MOVES`` tells what a job can do. Every status write in the
project goes through a function of this module, which looks the move up by ``(event, target)``
and writes it as a conditional UPDATE (``... WHERE status IN (sources)``), the hot path's
hand-built statements included. A move that is not in the table raises ``InvalidState``, so a
transition nobody listed ("re-run publish on a rejected job") cannot happen by accident; a guard
(``approval``) adds the review gate's condition to the moves that lead to publishing.

Outside this module nothing sets ``status`` (``jobs/tests/test_transitions.py`` checks the source).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from jobs.models import Job, StageRun
from jobs.orchestrator import gate
from jobs.orchestrator.statements import Claim, sql

JS = Job.Status
RS = StageRun.Status


class InvalidState(Exception):
    """The job's state does not allow this action (the API answers 409)."""


@dataclass(frozen=True)
class Move:
    event: str
    sources: tuple[str, ...]  # statuses the row may be in; () for a new row
    target: str
    why: str
    guard: str = ""  # "approval": the current composition has a reviewer's approval (jobs.orchestrator.gate)


ACTIVE_JOB = (JS.PENDING, JS.RUNNING, JS.AWAITING_REVIEW, JS.PUBLISHING)
FINISHED_JOB = (JS.COMPLETED, JS.FAILED, JS.CANCELLED, JS.REJECTED)

JOB_MOVES: tuple[Move, ...] = (
    Move("create", (), JS.PENDING, "a trigger (console, API, command, schedule) starts a job"),
    Move("start", (JS.PENDING,), JS.RUNNING, "a worker claims the job's first stage"),
    Move("advance", (JS.RUNNING,), JS.RUNNING, "a stage before review succeeded; the next one is queued"),
    Move("reach_review", (JS.RUNNING,), JS.AWAITING_REVIEW, "composition succeeded: the job waits for a reviewer"),
    Move("approve", (JS.AWAITING_REVIEW,), JS.PUBLISHING, "a reviewer approved the composition", "approval"),
    Move("advance", (JS.PUBLISHING,), JS.PUBLISHING, "a stage after review succeeded; the next one is queued"),
    Move("complete", (JS.RUNNING, JS.PUBLISHING), JS.COMPLETED, "the last stage succeeded"),
    Move("reject", (JS.AWAITING_REVIEW,), JS.REJECTED, "a reviewer rejected the video"),
    Move("request_changes", (JS.AWAITING_REVIEW,), JS.RUNNING, "a reviewer asked for changes from a stage"),
    Move("fail", (JS.PENDING, JS.RUNNING, JS.PUBLISHING), JS.FAILED, "an attempt failed for good"),
    Move("cancel", ACTIVE_JOB, JS.CANCELLED, "an operator cancelled it"),
    Move("resume", (JS.FAILED, JS.CANCELLED), JS.RUNNING, "retry: from the first stage without a checkpoint"),
    Move("resume", (JS.FAILED, JS.CANCELLED), JS.AWAITING_REVIEW, "retry: every stage before review is done"),
    Move("resume", (JS.FAILED, JS.CANCELLED), JS.PUBLISHING, "retry: publish failed after an approval", "approval"),
    Move("rerun", (JS.AWAITING_REVIEW, *FINISHED_JOB), JS.RUNNING, "re-run from a stage before review"),
    Move("rerun", (JS.AWAITING_REVIEW, *FINISHED_JOB), JS.AWAITING_REVIEW, "re-run from review: review again"),
    Move("rerun", FINISHED_JOB, JS.PUBLISHING, "re-run publish (a destination failed)", "approval"),
)

RUN_MOVES: tuple[Move, ...] = (
    Move("queue", (), RS.QUEUED, "a stage's next attempt is created (and pushed when due)"),
    Move("wait", (), RS.WAITING, "the review gate opens"),
    Move("claim", (RS.QUEUED,), RS.RUNNING, "a worker takes a due attempt; a second delivery finds nothing"),
    Move("succeed", (RS.RUNNING,), RS.SUCCEEDED, "output and files recorded: the checkpoint"),
    Move("fail", (RS.RUNNING,), RS.FAILED, "the stage raised, its record failed, or its time limit passed"),
    Move("crash", (RS.RUNNING,), RS.CRASHED, "the sweeper found its heartbeat stale (worker died)"),
    Move("decide", (RS.WAITING,), RS.SUCCEEDED, "a reviewer decided"),
    Move("cancel", (RS.QUEUED, RS.RUNNING, RS.WAITING), RS.CANCELLED, "the job was cancelled or re-run"),
)

_JOB = {(m.event, m.target): m for m in JOB_MOVES}
_RUN = {(m.event, m.target): m for m in RUN_MOVES}


def _lookup(table: dict[tuple[str, str], Move], event: str, target: str | None, what: str) -> Move:
    if target is not None:
        move = table.get((event, target))
    else:
        found = [m for (e, _), m in table.items() if e == event]
        move = found[0] if len(found) == 1 else None
    if move is None:
        raise InvalidState(f"no move {event!r}{f' to {target}' if target else ''} for a {what} in the table")
    return move


def job_move(event: str, target: str | None = None) -> Move:
    return _lookup(_JOB, event, target, "job")


def run_move(event: str) -> Move:
    return _lookup(_RUN, event, None, "stage run")


def _label(status: str) -> str:
    return JS(status).label.lower()


def check_job(job: Job, event: str, target: str | None = None) -> Move:
    """The move, if ``job`` (read under its lock) may make it now; else ``InvalidState`` saying why.

    The guard comes first: "re-run publish" on a job nobody approved is refused for that reason,
    whatever else is wrong with it.
    """
    move = job_move(event, target)
    if move.guard == "approval":
        gate.require_approval(job.pk)
    if job.status not in move.sources:
        allowed = ", ".join(_label(s) for s in move.sources)
        raise InvalidState(
            f"job {job.pk} is {_label(job.status)}: {event.replace('_', ' ')} is allowed only when it is {allowed}"
        )
    return move


# --- writes ---------------------------------------------------------------------------------


def create_job(**fields: Any) -> Job:
    return Job.objects.create(status=job_move("create").target, **fields)


def move_job(job: Job, event: str, target: str | None = None, **values: Any) -> None:
    """An operator-driven move of a job whose row the caller holds locked: checked, then written."""
    move = check_job(job, event, target)
    changed = sql().update(Job, job.pk, {"status": move.target, **values}, status__in=move.sources)
    if not changed:  # only possible if the caller forgot the lock
        raise InvalidState(f"job {job.pk} changed while {move.event} was being applied")
    job.status = move.target
    for name, value in values.items():
        setattr(job, name, value)


def move_job_row(job_id: int, event: str, target: str, values: dict[str, Any]) -> bool:
    """The hot path's move of an unlocked job row (one statement, which also locks the row).

    False when the job was no longer in a source state (cancelled, re-run meanwhile): a race the
    caller expects, not an error.
    """
    move = job_move(event, target)
    return bool(sql().update(Job, job_id, {"status": move.target, **values}, status__in=move.sources))


def insert_run(event: str, **values: Any) -> StageRun:
    """A new attempt (``queue``) or the gate's waiting run (``wait``); call with the job locked."""
    return sql().insert_run(status=run_move(event).target, **values)


def claim_run(run_id: int, now: datetime, worker: str) -> Claim | None:
    """``queued -> running`` if due, with everything the stage needs; None for a duplicate delivery."""
    move = run_move("claim")
    (source,) = move.sources
    return sql().claim(run_id, now, worker, source=source, target=move.target, checkpoint=RS.SUCCEEDED)


def move_run_fast(run_id: int, event: str, values: dict[str, Any]) -> bool:
    """A run's move on the hot path (the success record, a review's decision): one hand-built
    conditional UPDATE; ``values`` are plain field values (no expressions)."""
    move = run_move(event)
    return bool(sql().update(StageRun, run_id, {"status": move.target, **values}, status__in=move.sources))


def record_success(
    job_id: int,
    job_event: str,
    job_target: str,
    job_values: dict[str, Any],
    run_id: int,
    run_values: dict[str, Any],
    opening: tuple[str, dict[str, Any]] | None,
) -> tuple[str, StageRun | None]:
    """A succeeded attempt's record, inside the caller's transaction: the job's move
    (``advance``, ``reach_review`` or ``complete``), the run's ``succeed`` and, when the job moved,
    the next attempt ``opening`` (``(event, values)``: ``queue`` or ``wait``). Returns what
    happened and the new run:

    * ``("moved", run or None)``: all of it;
    * ``("stopped", None)``: the job was no longer where the move starts (cancelled, re-run): the
      run is recorded under the job's lock and nothing follows it;
    * ``("discarded", None)``: the run was no longer running (cancelled, swept): roll back.
    """
    jm, rm = job_move(job_event, job_target), run_move("succeed")
    new = None
    if opening is not None:
        event, values = opening
        new = {**values, "status": run_move(event).target}
    job_set, run_set = {"status": jm.target, **job_values}, {"status": rm.target, **run_values}
    statements = sql()
    if statements.records_in_one:
        moved, recorded, made = statements.record(
            job_id=job_id,
            job_values=job_set,
            job_sources=jm.sources,
            run_id=run_id,
            run_values=run_set,
            run_sources=rm.sources,
            new_run=new,
        )
        if moved:
            return ("moved", made) if recorded else ("discarded", None)
    elif statements.update(Job, job_id, job_set, status__in=jm.sources):
        if not statements.update(StageRun, run_id, run_set, status__in=rm.sources):
            return "discarded", None
        return "moved", statements.insert_run(**new) if new is not None else None
    statements.lock_job(job_id)  # not active any more: record the run under the job's lock
    if not statements.update(StageRun, run_id, run_set, status__in=rm.sources):
        return "discarded", None
    return "stopped", None


def move_run(run_id: int, event: str, *, where: dict[str, Any] | None = None, **values: Any) -> bool:
    """A run's move through the ORM; ``where`` adds conditions (e.g. the heartbeat is still stale)."""
    move = run_move(event)
    rows = StageRun.objects.filter(pk=run_id, status__in=move.sources, **(where or {}))
    return bool(rows.update(status=move.target, **values))


def move_runs(runs: QuerySet[StageRun], event: str, **values: Any) -> int:
    """Every run of ``runs`` that may make the move (cancel a job's open runs)."""
    move = run_move(event)
    return runs.filter(status__in=move.sources).update(status=move.target, **values)


# --- the table, for people ------------------------------------------------------------------


def markdown() -> str:
    """The two tables as Markdown (the README shows them; a test keeps the copy true)."""

    def table(moves: Iterable[Move], statuses) -> list[str]:
        rows = ["| event | from | to | only if | when |", "|---|---|---|---|---|"]
        for m in moves:
            sources = ", ".join(statuses(s).value for s in m.sources) or "(new)"
            guard = "approved composition" if m.guard else ""
            rows.append(f"| `{m.event}` | {sources} | **{statuses(m.target).value}** | {guard} | {m.why} |")
        return rows

    return "\n".join(["Job:", "", *table(JOB_MOVES, JS), "", "StageRun:", "", *table(RUN_MOVES, RS)])
