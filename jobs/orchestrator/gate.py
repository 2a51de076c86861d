"""The review gate: what a reviewer approved is exactly what may be published.

An approval binds to the checkpoint it saw: the current checkpoint of the reviewed stage
(``pipeline.REVIEWED``, composition). Publish may run only while the latest decision on that
checkpoint is an approval, made after the checkpoint by an active user who holds
``jobs.review_job``. Re-running composition (or anything before it) makes a new checkpoint that no
decision covers, so it needs a new review; the transition table's ``approval`` guard, the claim of
every stage after the gate and the publish stage itself all ask this module.
"""

from __future__ import annotations

from jobs.models import ReviewDecision, StageRun
from jobs.orchestrator import statements
from stages import pipeline

REVIEW_PERMISSION = "jobs.review_job"


def may_review(user) -> bool:
    return bool(user is not None and getattr(user, "is_active", False) and user.has_perm(REVIEW_PERMISSION))


def review_rows(job_id: int) -> tuple[int | None, int | None]:
    """``(the gate's waiting run, the reviewed stage's current checkpoint)`` ids, None when missing:
    a decision is recorded on the first and binds to the second."""
    return statements.sql().review_rows(
        job_id,
        gate=pipeline.GATE,
        waiting=StageRun.Status.WAITING,
        reviewed=pipeline.REVIEWED,
        checkpoint=StageRun.Status.SUCCEEDED,
    )


def problem(job_id: int) -> str | None:
    """Why the job's current composition may not be published, or None when an approval covers it.

    One statement (``statements.approval``): it runs on every publish claim. Whether the approver
    may still review is asked of the database with the rule of Django's ModelBackend (an active
    superuser, or the permission held directly or through a group; axes adds no permissions), the
    answer ``user.has_perm`` gives (``test_review_gate`` checks both agree).
    """
    facts = statements.sql().approval(
        job_id, stage=pipeline.REVIEWED, status=StageRun.Status.SUCCEEDED, permission=REVIEW_PERMISSION
    )
    if facts.attempt is None:
        return f"publishing needs an approved {pipeline.REVIEWED}, and this job has no current one"
    what = f"{pipeline.REVIEWED} #{facts.attempt}"
    if facts.decision is None:
        return f"publishing needs a reviewer's approval of {what}, and nobody has approved it"
    if facts.decision != ReviewDecision.Decision.APPROVE:
        label = ReviewDecision.Decision(facts.decision).label.lower()
        return f"publishing needs a reviewer's approval of {what}, which was {label}"
    if not facts.after_checkpoint:
        return f"the approval predates {what}: publishing needs a new review"
    if not facts.reviewer_may:
        return f"the approval of {what} was made by a user who may no longer review: publishing needs a new review"
    return None


def require_approval(job_id: int) -> None:
    """Raise ``InvalidState`` (the API's 409) unless an approval covers the job's current composition."""
    reason = problem(job_id)
    if reason is not None:
        from jobs.orchestrator.transitions import InvalidState

        raise InvalidState(reason)
