"""The review gate: nothing is published unless a reviewer approved the composition being published.

Every route that can start publish (the orchestrator, the JSON API, the console, the admin's
"Re-run from" action, ``manage.py retry_job``) is tried by a user who may change jobs but not
review them, on a job nobody approved and on one that was rejected.
"""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from console.models import ApiToken
from jobs import orchestrator
from jobs.models import Job, Publication, ReviewDecision, StageRun
from jobs.tests.conftest import params
from jobs.tests.stagefns import calls

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status


def user(name: str, *codenames: str) -> User:
    u = User.objects.create_user(name, password="pw", is_staff=True)
    u.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=u.pk)  # fresh: no permission cache


@pytest.fixture
def reviewer(db) -> User:
    return user("rita", "view_job", "review_job")


@pytest.fixture
def operator(db) -> User:
    return user("oscar", "view_job", "change_job")


@pytest.fixture
def in_review(engine, theme, call_log, tmp_path) -> Job:
    job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    return job


@pytest.fixture
def rejected(in_review, reviewer) -> Job:
    orchestrator.review_job(in_review.pk, "reject", user=reviewer, notes="off-brand")
    in_review.refresh_from_db()
    assert in_review.status == Job.Status.REJECTED
    return in_review


def published(job: Job, call_log) -> bool:
    return job.runs.filter(stage="publish").exists() or "publish" in [s for s, _ in calls(call_log)]


# --- the orchestrator -----------------------------------------------------------------------


@pytest.mark.parametrize("state", ["in_review", "rejected"])
def test_it_refuses_to_rerun_publish_on_a_job_nobody_approved(state, request, operator, call_log):
    job = request.getfixturevalue(state)
    with pytest.raises(orchestrator.InvalidState, match="approv"):
        orchestrator.retry_job(job.pk, from_stage="publish", user=operator)
    job.refresh_from_db()
    assert job.status == (Job.Status.AWAITING_REVIEW if state == "in_review" else Job.Status.REJECTED)
    assert not published(job, call_log)


def test_it_refuses_an_approval_from_a_user_without_the_review_permission(in_review, operator):
    with pytest.raises(PermissionError, match="review"):
        orchestrator.review_job(in_review.pk, "approve", user=operator)
    with pytest.raises(PermissionError, match="review"):
        orchestrator.review_job(in_review.pk, "approve")  # nobody at all
    in_review.refresh_from_db()
    assert in_review.status == Job.Status.AWAITING_REVIEW
    assert not in_review.reviews.exists()


def test_an_approval_binds_to_the_composition_it_saw(engine, in_review, reviewer, operator, call_log):
    """Approve, publish fails at a destination, re-run publish: allowed. Re-run the composition:
    the earlier approval no longer covers what would be published, so publish needs a new review."""
    engine.TRENDREEL_STAGE_POLICY["publish"]["max_attempts"] = 1
    job = in_review
    composition = job.runs.get(stage="composition", status=RS.SUCCEEDED)
    Job.objects.filter(pk=job.pk).update(params={**job.params, "behave": {"publish": ["permanent", "ok"]}})
    orchestrator.review_job(job.pk, "approve", user=reviewer)
    decision = job.reviews.get()
    assert decision.composition_run_id == composition.pk
    job = orchestrator.run_inline(job.pk)
    assert (job.status, job.error_stage) == (Job.Status.FAILED, "publish")

    orchestrator.retry_job(job.pk, from_stage="publish", user=operator)  # a destination failed: allowed
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.COMPLETED

    orchestrator.retry_job(job.pk, from_stage="composition", user=operator)
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW  # a new composition waits for a new review
    orchestrator.cancel_job(job.pk, user=operator)
    with pytest.raises(orchestrator.InvalidState, match="approv"):
        orchestrator.retry_job(job.pk, from_stage="publish", user=operator)
    assert [s for s, _ in calls(call_log)].count("publish") == 2


def test_a_second_review_binds_to_the_new_composition(engine, in_review, reviewer, operator, call_log):
    """Changes requested, the composition made again: the next decision is recorded on the gate's new
    waiting run and binds to the new composition (not the superseded one), and publish runs."""
    job = in_review
    first = job.runs.get(stage="composition", status=RS.SUCCEEDED)
    orchestrator.review_job(job.pk, "request_changes", user=reviewer, from_stage="composition", notes="again")
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    second = job.runs.get(stage="composition", status=RS.SUCCEEDED, superseded_at__isnull=True)
    assert second.pk != first.pk
    orchestrator.review_job(job.pk, "approve", user=reviewer)
    changes, approval = job.reviews.order_by("id")
    assert (changes.composition_run_id, approval.composition_run_id) == (first.pk, second.pk)
    waiting = job.runs.filter(stage="review").order_by("attempt")
    assert [r.pk for r in waiting] == [changes.stage_run_id, approval.stage_run_id]
    assert [r.status for r in waiting] == [RS.SUCCEEDED, RS.SUCCEEDED]
    assert orchestrator.run_inline(job.pk).status == Job.Status.COMPLETED
    assert [s for s, _ in calls(call_log)].count("publish") == 1


@pytest.mark.parametrize(
    "who, may",
    [
        ("direct permission", True),
        ("through a group", True),
        ("superuser without the permission", True),
        ("inactive, with the permission", False),
        ("permission taken away", False),
        ("deleted user", False),
    ],
)
def test_the_gate_reads_the_reviewers_permission_as_has_perm_does(in_review, reviewer, who, may):
    """The gate asks the database whether the approver may review (one EXISTS, not the whole
    permission set): it must agree with ``user.has_perm`` for every kind of user."""
    from django.contrib.auth.models import Group

    from jobs.orchestrator import gate

    orchestrator.review_job(in_review.pk, "approve", user=reviewer)
    if who == "through a group":
        group = Group.objects.create(name="reviewers")
        group.permissions.add(Permission.objects.get(codename="review_job"))
        reviewer.user_permissions.remove(Permission.objects.get(codename="review_job"))
        reviewer.groups.add(group)
    elif who == "superuser without the permission":
        reviewer.user_permissions.clear()
        User.objects.filter(pk=reviewer.pk).update(is_superuser=True)
    elif who == "inactive, with the permission":
        User.objects.filter(pk=reviewer.pk).update(is_active=False)
    elif who == "permission taken away":
        reviewer.user_permissions.remove(Permission.objects.get(codename="review_job"))
    elif who == "deleted user":
        reviewer.delete()
    fresh = User.objects.filter(pk=reviewer.pk).first()
    assert gate.may_review(fresh) is may  # Django's own answer
    assert (gate.problem(in_review.pk) is None) is may
    if not may:
        assert "may no longer review" in gate.problem(in_review.pk)


def test_a_queued_publish_without_approval_fails_at_claim_and_in_the_stage(in_review, engine, call_log):
    """Defence in depth: a publish run that exists without a covering approval (made by hand, by a
    restored backup, by a bug) is refused when claimed, and the real publish stage refuses too."""
    job = in_review
    review = job.runs.get(stage="review")
    StageRun.objects.filter(pk=review.pk).update(status=RS.SUCCEEDED)  # what a bug could do
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PUBLISHING, current_stage="publish")
    run = StageRun.objects.create(job=job, stage="publish", attempt=1, status=RS.QUEUED)
    assert orchestrator.execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error_kind == "permanent" and "approv" in run.error_message
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "publish" not in [s for s, _ in calls(call_log)]

    from stages import publish
    from stages.base import PermanentStageError, StageContext

    ctx = StageContext(
        job_id=job.pk,
        stage="publish",
        attempt=2,
        theme={},
        params={},
        upstream={},
        upstream_dirs={},
        work_dir=engine.MEDIA_ROOT,
    )
    with pytest.raises(PermanentStageError, match="approv"):
        publish.run(ctx)
    assert not Publication.objects.exists()


# --- every route a user can take --------------------------------------------------------------


@pytest.mark.parametrize("state", ["in_review", "rejected"])
def test_the_api_refuses_to_publish_without_approval(state, request, operator, call_log):
    job = request.getfixturevalue(state)
    _, raw = ApiToken.issue(operator, "ops")
    resp = Client().post(
        f"/api/jobs/{job.pk}/retry",
        data=json.dumps({"from_stage": "publish"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert resp.status_code == 409 and "approv" in resp.json()["detail"]
    assert not published(job, call_log)


@pytest.mark.parametrize("state", ["in_review", "rejected"])
def test_the_console_refuses_to_publish_without_approval(state, request, operator, call_log, client):
    job = request.getfixturevalue(state)
    client.force_login(operator)
    resp = client.post(reverse("console:job_action", args=[job.pk, "rerun"]), {"from_stage": "publish"}, follow=True)
    assert "approv" in resp.content.decode()
    assert not published(job, call_log)


@pytest.mark.parametrize("state", ["in_review", "rejected"])
def test_the_admin_action_refuses_to_publish_without_approval(state, request, operator, call_log, client):
    job = request.getfixturevalue(state)
    client.force_login(operator)
    resp = client.post(
        reverse("admin:jobs_job_changelist"),
        {"action": "rerun_from", "_selected_action": [job.pk], "from_stage": "publish", "confirm": "1"},
        follow=True,
    )
    assert resp.status_code == 200
    assert "approv" in resp.content.decode()
    assert not published(job, call_log)


@pytest.mark.parametrize("state", ["in_review", "rejected"])
def test_the_command_refuses_to_publish_without_approval(state, request, call_log):
    job = request.getfixturevalue(state)
    with pytest.raises(CommandError, match="approv") as exc:
        call_command("retry_job", str(job.pk), "--from-stage", "publish", stdout=io.StringIO())
    assert exc.value.returncode == 1
    assert not published(job, call_log)


def test_the_review_command_approves_as_a_named_reviewer(in_review, reviewer, operator):
    with pytest.raises(CommandError, match="--user"):
        call_command("review_job", str(in_review.pk), "--approve", stdout=io.StringIO())
    with pytest.raises(CommandError, match="review") as exc:
        call_command("review_job", str(in_review.pk), "--approve", "--user", operator.username, stdout=io.StringIO())
    assert exc.value.returncode == 1
    out = io.StringIO()
    call_command("review_job", str(in_review.pk), "--approve", "--user", reviewer.username, stdout=out)
    assert "publishing" in out.getvalue()
    assert in_review.reviews.get().decided_by == reviewer
    assert in_review.reviews.get().decision == ReviewDecision.Decision.APPROVE
