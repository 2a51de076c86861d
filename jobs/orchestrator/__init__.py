"""The orchestrator: the only writer of Job and StageRun status.

Its parts, one module each:

* ``transitions``: the table of every legal status change of a job and a stage run, and the one
  place that writes a status (checked against the table; ``InvalidState`` otherwise);
* ``gate``: the review gate, an approval bound to the composition it saw;
* ``actions``: what operators ask (start, retry / re-run, cancel, review, targeted edits);
* ``runner``: one attempt, claim -> run -> record, each step safe to repeat (django-q2 delivers
  at least once); ``run_inline`` runs a job in this process;
* ``watchdog``: heartbeat, progress, cancel and time limit of a running attempt, until its record
  commits;
* ``sweeper``: crashed attempts, due retries, lost pushes; one at a time, in every deployment;
* ``routing``: which queue (cluster) a stage goes to, and the push to the broker;
* ``lifecycle``: the steps those parts share (open an attempt, record a success, end a failed attempt);
* ``statements``: the hot path's hand-built SQL; ``clock``: the database's clock.

Retries, backoff, crash counting and time limits are decided here, never by django-q2
(configured as a plain transport: ``max_attempts=1``, ``ack_failures=True``).
"""

from __future__ import annotations

from jobs.orchestrator.actions import (
    BudgetSpent,
    UnknownStage,
    cancel_job,
    edit_job,
    resume_point,
    retry_job,
    review_job,
    start_batch,
    start_job,
)
from jobs.orchestrator.routing import broker, broker_joins_transaction, inline_mode
from jobs.orchestrator.runner import execute_run, job_dir, run_inline
from jobs.orchestrator.sweeper import SweepReport, stalled, sweep
from jobs.orchestrator.transitions import InvalidState

__all__ = [
    "BudgetSpent",
    "InvalidState",
    "SweepReport",
    "UnknownStage",
    "broker",
    "broker_joins_transaction",
    "cancel_job",
    "edit_job",
    "execute_run",
    "inline_mode",
    "job_dir",
    "resume_point",
    "retry_job",
    "review_job",
    "run_inline",
    "start_batch",
    "start_job",
    "stalled",
    "sweep",
]
