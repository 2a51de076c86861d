"""What operators (console, API, admin, commands, schedules) ask of the engine.

Each action locks the job row, checks its move against the transition table (which raises
``InvalidState`` with the reason, and applies the review gate's guard), then writes it. Permission
to call an action belongs to the caller, except reviewing: a decision is recorded against a user,
and only a user holding ``jobs.review_job`` may make one, whatever the route.
"""

from __future__ import annotations

import random

from django.db import transaction

from jobs.models import Job, JobEdit, ReviewDecision, StageRun, Theme
from jobs.orchestrator import clock, gate, lifecycle, statements, transitions
from jobs.orchestrator.lifecycle import lock_job, who
from jobs.orchestrator.transitions import InvalidState
from jobs.prices import money
from jobs.validation import batch_count
from stages import pipeline

JS = Job.Status
RS = StageRun.Status
EK = StageRun.ErrorKind


class UnknownStage(ValueError):
    pass


class BudgetSpent(InvalidState):
    """The theme's jobs spent its daily budget: no new job until the next UTC day (the API's 409)."""


def check_budget(theme: Theme) -> None:
    """Refuse a new job of a theme whose attempts finished today (UTC) cost its ``daily_budget``.

    One query, only for a theme with a budget. Running jobs are not stopped: an attempt's cost is
    known when it ends, so a day's spend may pass the budget by what was running when it was reached.
    """
    if theme.daily_budget is None:
        return
    spent = theme.spent_today()
    if spent >= theme.daily_budget:
        raise BudgetSpent(
            f"theme {theme.slug} spent {money(spent)} of its {money(theme.daily_budget)} daily budget today; "
            "raise Theme.daily_budget or wait until 00:00 UTC"
        )


def start_job(theme: Theme, *, params: dict | None = None, user=None) -> Job:
    """Create a job and queue its first stage, atomically (enqueue included). Every route that
    starts jobs (console, API, admin, commands, schedules) comes here: ``BudgetSpent`` when the
    theme spent its daily budget.

    (The API's idempotency keys are per user and live in ``console.models.IdempotencyKey``.)
    """
    check_budget(theme)
    with transaction.atomic():
        first = pipeline.STAGE_KEYS[0]
        job = transitions.create_job(
            theme=theme,
            params=params or {},
            created_by=user if getattr(user, "pk", None) else None,
            current_stage=first,
            created=clock.now(),
        )
        lifecycle.new_run(job.pk, first, reason="job started")
    return job


def start_batch(theme: Theme, count: int, *, user=None) -> list[Job]:
    """N jobs for the theme's top N topics: job i asks trend analysis for the i-th best topic."""
    count = batch_count(count)
    check_budget(theme)
    batch = clock.now().strftime("%Y%m%d%H%M%S") + f"-{random.randrange(16**4):04x}"
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
    ``from_stage``; then their checkpoints are superseded (kept, marked), never deleted. Re-running
    publish needs an approval of the current composition (the table's ``approval`` guard);
    re-running composition or anything before it leads through review again.
    """
    if from_stage is not None:
        _validate_stage(from_stage)
    with transaction.atomic():
        job = lock_job(job_id)
        if from_stage is None:
            if job.status not in transitions.job_move("resume", JS.RUNNING).sources:
                raise InvalidState(
                    f"job {job.pk} is {job.get_status_display().lower()}; only failed or cancelled jobs resume"
                )
            stage, event, reason = resume_point(job), "resume", f"resumed by {who(user)}"
        else:
            if job.status in (JS.PENDING, JS.RUNNING, JS.PUBLISHING):
                raise InvalidState(f"job {job.pk} is {job.get_status_display().lower()}; cancel it before re-running")
            stage, event, reason = from_stage, "rerun", f"re-run from {from_stage} by {who(user)}"
        if job.media_purged_at is not None:
            # retention removed every checkpoint's files: nothing earlier can be built on
            stage = pipeline.STAGE_KEYS[0]
            reason += " (media had been removed by retention: from the start)"
        transitions.check_job(job, event, lifecycle.status_for_stage(stage))
        # a resumed edit keeps skipping what the edit left alone; any other re-run runs every stage
        skip = job.skip_stages if event == "resume" and job.media_purged_at is None else []
        if job.media_purged_at is not None:
            Job.objects.filter(pk=job.pk).update(media_purged_at=None)
            job.media_purged_at = None
        _rerun(job, stage, event, reason=reason, notes=notes, skip=skip)
    return job


def _rerun(job: Job, stage: str, event: str, *, reason: str, notes: str = "", skip: list[str] | tuple = ()) -> None:
    """Supersede the checkpoints from ``stage`` on (but those of ``skip``, which stay current and
    which the run jumps over), cancel what is open, enter ``stage``."""
    now = clock.now()
    redone = [s for s in pipeline.stages_from(stage) if s not in skip]
    job.runs.filter(stage__in=redone, status=RS.SUCCEEDED, superseded_at__isnull=True).update(superseded_at=now)
    transitions.move_runs(
        job.runs.all(),
        "cancel",
        finished_at=now,
        error_kind=EK.CANCELLED,
        message="superseded by " + reason,
        superseded_at=now,
    )
    lifecycle.enter_stage(job, stage, event, skip=skip, reason=reason, input={"review_notes": notes} if notes else None)


def cancel_job(job_id: int, *, user=None) -> Job:
    """Stop a job now. A running stage notices within a heartbeat and its children are killed."""
    with transaction.atomic():
        job = lock_job(job_id)
        if job.status not in transitions.job_move("cancel").sources:
            raise InvalidState(f"job {job.pk} is {job.get_status_display().lower()}; nothing to cancel")
        now = clock.now()
        transitions.move_runs(
            job.runs.all(), "cancel", finished_at=now, error_kind=EK.CANCELLED, message=f"cancelled by {who(user)}"
        )
        transitions.move_job(job, "cancel", finished=now, updated=now)
    return job


def review_job(job_id: int, decision: str, *, user=None, notes: str = "", from_stage: str | None = None) -> Job:
    """Decide a job waiting in review, as ``user``, who must hold ``jobs.review_job``.

    The decision binds to the composition checkpoint under review; approve queues publish in the
    same transaction, reject ends the job, request changes re-runs from ``from_stage`` with the notes.
    """
    decisions = ReviewDecision.Decision
    if decision not in decisions.values:
        raise ValueError(f"unknown decision {decision!r}; use one of {', '.join(decisions.values)}")
    if not gate.may_review(user):
        raise PermissionError(f"reviewing needs an active user with the {gate.REVIEW_PERMISSION} permission")
    if decision == decisions.REQUEST_CHANGES:
        if not from_stage:
            raise ValueError("request changes needs the stage to re-run from")
        _validate_stage(from_stage)
        if pipeline.index(from_stage) >= pipeline.index(pipeline.GATE):
            raise ValueError(f"changes must re-run a stage before {pipeline.GATE}")
        if not notes.strip():
            raise ValueError("request changes needs notes for the re-run")
    event, target = {
        decisions.APPROVE: ("approve", JS.PUBLISHING),
        decisions.REJECT: ("reject", JS.REJECTED),
        decisions.REQUEST_CHANGES: ("request_changes", JS.RUNNING),
    }[decision]
    with transaction.atomic():
        job = lock_job(job_id)
        waiting, checkpoint = gate.review_rows(job.pk)
        if job.status != JS.AWAITING_REVIEW or waiting is None:
            raise InvalidState(f"job {job.pk} is {job.get_status_display().lower()}, not awaiting review")
        now = clock.now()
        statements.sql().insert(
            ReviewDecision,
            {
                "job_id": job.pk,
                "stage_run_id": waiting,
                "composition_run_id": checkpoint,
                "decision": decision,
                "notes": notes,
                "from_stage": from_stage or "",
                "decided_by_id": user.pk,
                "decided_at": now,
            },
        )
        transitions.move_run_fast(
            waiting,
            "decide",
            {
                "finished_at": now,
                "progress": 1.0,
                "message": f"{decisions(decision).label.lower()} by {who(user)}",
                "output": {"decision": decision, "by": who(user), "notes": notes, "from_stage": from_stage or ""},
            },
        )
        if decision == decisions.APPROVE:
            transitions.move_job(job, event, target, current_stage=pipeline.next_stage(pipeline.GATE), updated=now)
            lifecycle.open_next(job.pk, pipeline.GATE)
        elif decision == decisions.REJECT:
            transitions.move_job(job, event, target, finished=now, updated=now)
        else:
            Job.objects.filter(pk=job.pk).update(review_notes=[*(job.review_notes or []), notes])
            job.review_notes = [*(job.review_notes or []), notes]
            _rerun(job, from_stage, event, reason=f"changes requested by {who(user)}", notes=notes)
    return job


# --- targeted edits (issue 14) -----------------------------------------------------------------


def edit_job(job_id: int, edits, *, notes: str = "", user=None, actor: str = "") -> JobEdit:
    """Change one part of a finished composition, then re-run only what depends on it.

    Allowed when no run is open (awaiting review, rejected, failed, cancelled) and the job has made
    a composition (an earlier edit whose re-run failed does not block the next one: the stages it
    left without a checkpoint run too); refused (``InvalidState``) while it runs, before its first composition,
    after retention removed its media, and once it is published (completed): the platforms hold
    that video and every destination is delivered once per job, so a new version would never
    reach them; make a new job instead. Invalid edits raise ``stages.edits.EditError`` (a
    ``ValueError``) listing each problem.

    In one transaction holding the job's lock: the edits merge into ``Job.overrides``, a
    ``JobEdit`` records who asked what and why, and the job re-runs from the plan's first stage
    through the re-run path (the review gate's rules hold: the new composition needs a new review;
    an approval given before never covers it). The stages between the first and composition that
    the plan leaves alone keep their checkpoints and are jumped over (``Job.skip_stages``).
    """
    from stages import edits as editing
    from stages import uploads

    notes = (notes or "").strip()
    if len(notes) > editing.MAX_NOTES:
        raise ValueError(f"notes are {len(notes)} characters; at most {editing.MAX_NOTES}")
    with transaction.atomic():
        job = lock_job(job_id)
        state = job.get_status_display().lower()
        if job.status in (JS.PENDING, JS.RUNNING, JS.PUBLISHING):
            raise InvalidState(f"job {job.pk} is {state}: edit it once it waits for review (or cancel it first)")
        if job.status == JS.COMPLETED:
            raise InvalidState(
                f"job {job.pk} is published: the platforms have that video and each destination gets a job "
                "once; start a new job to make another version"
            )
        if job.media_purged_at is not None:
            raise InvalidState(f"job {job.pk}'s media was removed by retention: nothing left to edit; retry it")
        # the composition the editor saw: the latest made, current or replaced by an edit that failed
        composition = (
            job.runs.filter(stage=pipeline.REVIEWED, status=RS.SUCCEEDED).order_by("-attempt").only("pk").first()
        )
        if composition is None:
            raise InvalidState(f"job {job.pk} has no {pipeline.REVIEWED} yet: nothing to edit")
        current = dict(
            job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True)
            .order_by("attempt")
            .values_list("stage", "output")
        )
        script = current.get("script_generation") or {}
        segments = script.get("segments") if isinstance(script, dict) else None
        clean = editing.validate(
            edits,
            segments=len(segments) if isinstance(segments, list) else 0,
            upload_exists=lambda upload: uploads.exists(job.pk, upload),
        )
        stages, items = editing.plan(clean)
        # an earlier edit's re-run that failed left stages without a checkpoint: they run too
        unfinished = [k for k in pipeline.STAGE_KEYS[: pipeline.index(pipeline.REVIEWED)] if k not in current]
        if unfinished:
            stages = [k for k in pipeline.STAGE_KEYS if k in stages or k in unfinished]
            items = [*items[:-1], *(f"{k} (unfinished)" for k in unfinished if k not in items), items[-1]]
        transitions.check_job(job, "rerun", lifecycle.status_for_stage(stages[0]))
        overrides = editing.merge(job.overrides, clean, upload=lambda upload: uploads.resolve(job.pk, upload))
        record = JobEdit.objects.create(
            job=job,
            created_at=clock.now(),
            user=user if getattr(user, "pk", None) else None,
            actor=(actor or who(user))[:150],
            edits=clean,
            notes=notes,
            stages=stages,
            items=items,
            composition_run=composition,
        )
        Job.objects.filter(pk=job.pk).update(overrides=overrides)
        job.overrides = overrides
        by = actor or who(user)
        _rerun(job, stages[0], "rerun", reason=f"edit by {by}: {', '.join(items)}"[:200], skip=editing.skipped(stages))
    return record
