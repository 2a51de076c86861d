"""What a live page has seen, so a poll answers only what changed.

The job page polls a small fragment (the job's status and the stage table). Each fragment carries,
in its ``hx-vals``, the state it shows: the job's status, every attempt's status and a fingerprint
of the stage table (progress, messages, attempt numbers). The next poll sends it back and the
server compares:

- nothing changed: 204, htmx swaps nothing;
- only the stage table moved (progress, a message): the stage table alone;
- a status changed: the stage table plus out-of-band swaps of only what a status change touches:
  the header (job status, error, actions), the attempts that are new or changed status (never the
  others: an open traceback stays open, a playing video keeps playing), the timeline and the records.

The dashboard polls its live part the same way, with one fingerprint for all of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from jobs.models import Job, StageRun

# a job at rest changes only when someone acts on it: its page stops polling (and resumes when an
# action answers ``HX-Trigger: job-changed`` or reloads the page)
RESTING = (
    Job.Status.AWAITING_REVIEW,
    Job.Status.COMPLETED,
    Job.Status.FAILED,
    Job.Status.CANCELLED,
    Job.Status.REJECTED,
)
CHANGED_EVENT = "job-changed"


def fingerprint(parts: Iterable) -> str:
    """A short stable digest of plain values (what a fragment shows)."""
    return hashlib.blake2s(json.dumps(list(parts), default=str).encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class JobState:
    status: str
    runs: Mapping[int, str] = field(default_factory=dict)
    table: str = ""

    @classmethod
    def of(cls, job: Job, runs: list[StageRun], steps: list[dict]) -> JobState:
        table = fingerprint(
            (s["spec"].key, r.pk, r.status, r.attempt, round(r.progress or 0, 3), r.message, r.error_message[:80])
            for s in steps
            if (r := s["run"]) is not None
        )
        status = job.status + ("/purged" if job.media_purged_at else "")
        return cls(status=status, runs={r.pk: r.status for r in runs}, table=table)

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> JobState | None:
        """The state a poll says it has seen (``None`` when it says nothing usable: send everything)."""
        status, table = query.get("status"), query.get("table")
        if not status or not table:
            return None
        runs: dict[int, str] = {}
        for item in filter(None, (query.get("runs") or "").split(",")):
            pk, _, run_status = item.partition(":")
            if not pk.isdigit() or not run_status:
                return None
            runs[int(pk)] = run_status
        return cls(status=status, runs=runs, table=table)

    def as_vals(self) -> str:
        """The ``hx-vals`` the fragment sends with its next poll."""
        runs = ",".join(f"{pk}:{status}" for pk, status in self.runs.items())
        return json.dumps({"status": self.status, "runs": runs, "table": self.table})

    @property
    def resting(self) -> bool:
        return self.status.split("/")[0] in RESTING


@dataclass(frozen=True)
class Changes:
    """What a poll must send beside the stage table."""

    header: bool = True
    runs: bool = True
    new_runs: tuple[int, ...] = ()
    changed_runs: tuple[int, ...] = ()
    everything: bool = True

    @classmethod
    def between(cls, seen: JobState | None, now: JobState) -> Changes:
        if seen is None:
            return cls()
        new = tuple(pk for pk in now.runs if pk not in seen.runs)
        changed = tuple(pk for pk, status in now.runs.items() if pk in seen.runs and seen.runs[pk] != status)
        return cls(
            header=seen.status != now.status,
            runs=bool(new or changed or seen.runs.keys() - now.runs.keys()),
            new_runs=new,
            changed_runs=changed,
            everything=False,
        )

    @property
    def any(self) -> bool:
        return self.header or self.runs


def dashboard_state(counts: dict, running: list[Job], review: list[Job], failures: list[Job], stats: list) -> str:
    """The fingerprint of what the dashboard's live part shows (the running jobs with ``open_runs``)."""
    return fingerprint(
        [
            counts,
            [
                (j.pk, j.status, j.current_stage, [(r.pk, r.status, r.progress, r.message) for r in j.open_runs])
                for j in running
            ],
            [(j.pk, j.updated) for j in review],
            [(j.pk, j.error_stage, j.error_kind, j.error_message) for j in failures],
            stats,
        ]
    )
