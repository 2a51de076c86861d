"""Orchestration semantics, in process: checkpoints, exactly-once, retries, cancel, review."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ

from jobs import orchestrator
from jobs.models import Artifact, Job, ReviewDecision, StageRun
from jobs.tests.conftest import gone, params, wait_for
from jobs.tests.stagefns import calls
from stages import pipeline

RS = StageRun.Status
BEFORE_REVIEW = pipeline.STAGE_KEYS[: pipeline.index("review")]


def start(theme, call_log, tmp_path, **behave) -> Job:
    return orchestrator.start_job(theme, params=params(call_log, tmp_path, **behave))


@pytest.mark.django_db(transaction=True)
def test_it_runs_every_stage_to_review_then_publishes_on_approve(engine, theme, call_log, tmp_path, reviewer):
    job = start(theme, call_log, tmp_path)
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    assert [s for s, _ in calls(call_log)] == list(BEFORE_REVIEW)
    review = job.runs.get(stage="review")
    assert review.status == RS.WAITING
    assert not job.runs.filter(status=RS.QUEUED).exists()
    # every stage saw exactly the stages before it
    comp = job.runs.get(stage="composition")
    assert comp.output["seen"] == sorted(BEFORE_REVIEW[:-1])
    assert Artifact.objects.filter(job=job).count() == len(BEFORE_REVIEW)
    assert (engine.MEDIA_ROOT / comp.output_dir / "out.json").exists()
    assert not list(engine.MEDIA_ROOT.rglob("*.partial"))

    orchestrator.review_job(job.pk, "approve", notes="ship it", user=reviewer)
    job.refresh_from_db()
    assert job.status == Job.Status.PUBLISHING
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.COMPLETED
    assert [s for s, _ in calls(call_log)][-1] == "publish"
    assert job.reviews.get().decision == ReviewDecision.Decision.APPROVE


@pytest.mark.django_db(transaction=True)
def test_it_executes_and_advances_once_for_two_concurrent_deliveries(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, trend_collection=["sleep:0.3"])
    run = job.runs.get()
    barrier = threading.Barrier(2)
    results = []

    def deliver():
        barrier.wait()
        try:
            results.append(orchestrator.execute_run(run.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["not-claimed", "succeeded"]
    assert calls(call_log) == [("trend_collection", 1)]
    assert job.runs.filter(stage="trend_analysis").count() == 1
    # a late third delivery is a no-op too
    assert orchestrator.execute_run(run.pk) == "not-claimed"
    assert job.runs.count() == 2


@pytest.mark.django_db(transaction=True)
def test_it_retries_a_transient_error_after_its_backoff_never_earlier(engine, theme, call_log, tmp_path):
    engine.TRENDREEL_STAGE_POLICY["script_generation"].update(backoff_base=0.3, backoff_cap=0.3)
    job = start(theme, call_log, tmp_path, script_generation=["transient", "retry_after:0.4", "ok"])
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    runs = list(job.runs.filter(stage="script_generation").order_by("attempt"))
    assert [r.status for r in runs] == [RS.FAILED, RS.FAILED, RS.SUCCEEDED]
    assert [r.retry_index for r in runs] == [0, 1, 2]
    assert runs[0].error_kind == "transient"
    for prev, nxt in zip(runs, runs[1:], strict=False):
        assert nxt.not_before is not None
        assert nxt.started_at >= nxt.not_before
        assert nxt.not_before >= prev.finished_at
    # Retry-After is honoured as a floor
    assert (runs[2].not_before - runs[1].finished_at).total_seconds() >= 0.4


@pytest.mark.django_db(transaction=True)
def test_it_will_not_claim_a_retry_before_it_is_due(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path)
    run = job.runs.get()
    StageRun.objects.filter(pk=run.pk).update(not_before=timezone.now() + timedelta(seconds=30))
    assert orchestrator.execute_run(run.pk) == "not-claimed"
    assert calls(call_log) == []


@pytest.mark.django_db(transaction=True)
def test_it_gives_up_after_max_attempts_of_transient_errors(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, trend_analysis=["transient"])
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.FAILED
    assert job.error_stage == "trend_analysis"
    assert "gave up after 3 attempts" in job.error_message
    assert job.runs.filter(stage="trend_analysis").count() == 3


@pytest.mark.django_db(transaction=True)
def test_it_fails_at_once_on_a_permanent_error_and_resumes_from_the_failed_stage(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, voiceover=["permanent", "ok"])
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.FAILED
    assert (job.error_stage, job.error_kind) == ("voiceover", "permanent")
    assert job.error_message == "voiceover got bad input"
    assert job.error_hint == "fix the theme's sources"
    assert job.runs.filter(stage="voiceover").count() == 1

    orchestrator.retry_job(job.pk)
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    made = [s for s, _ in calls(call_log)]
    # no earlier stage function ran again
    for stage in BEFORE_REVIEW:
        assert made.count(stage) == (2 if stage == "voiceover" else 1), stage
    assert job.error_message == ""


@pytest.mark.django_db(transaction=True)
def test_a_full_disk_is_retried_with_a_clear_hint_and_loses_nothing(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, voiceover=["enospc", "enospc", "ok"])
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW  # space came back before the retries ran out
    failed = list(job.runs.filter(stage="voiceover", status=RS.FAILED).order_by("attempt"))
    assert len(failed) == 2
    for run in failed:
        assert run.error_kind == "transient"  # not "unexpected": a full disk is no bug
        assert "no space left" in run.error_message.lower() and "big.bin" in run.error_message
        assert "free space" in run.error_hint
    # the partial attempt folders are not left to fill the disk further
    assert not list((engine.MEDIA_ROOT / "jobs" / str(job.pk) / "voiceover").glob("*.partial"))
    assert [s for s, _ in calls(call_log)].count("script_generation") == 1  # nothing earlier ran again


@pytest.mark.django_db(transaction=True)
def test_it_treats_an_unexpected_error_as_transient_once_then_permanent(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, trend_collection=["unexpected"])
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.FAILED
    runs = list(job.runs.order_by("attempt"))
    assert len(runs) == 2
    assert all(r.error_kind == "unexpected" for r in runs)
    assert "KeyError" in runs[0].error_message
    assert "Traceback" in runs[0].error_traceback


@pytest.mark.django_db(transaction=True)
def test_it_stops_a_stage_past_its_time_limit_and_kills_its_child_group(engine, theme, call_log, tmp_path):
    engine.TRENDREEL_STAGE_POLICY["scene_generation"].update(time_limit=1, max_attempts=1)
    job = start(theme, call_log, tmp_path, scene_generation=["child:60"])
    t0 = time.monotonic()
    job = orchestrator.run_inline(job.pk)
    assert time.monotonic() - t0 < 10
    assert job.status == Job.Status.FAILED
    run = job.runs.get(stage="scene_generation")
    assert run.error_kind == "timeout"
    assert "time limit of 1s" in run.error_message
    child = int((tmp_path / "child.pid").read_text())
    assert gone(child)


@pytest.mark.django_db(transaction=True)
def test_it_cancels_a_long_stage_within_two_seconds(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path, trend_collection=["child:60"])
    run = job.runs.get()
    out = {}

    def work():
        try:
            with orchestrator.inline_mode():
                out["result"] = orchestrator.execute_run(run.pk)
            out["done"] = time.monotonic()
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    pid_file = tmp_path / "child.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="child started")
    child = int(pid_file.read_text())
    cancelled_at = time.monotonic()
    orchestrator.cancel_job(job.pk)
    thread.join(timeout=5)
    assert out["result"] == "aborted:cancelled"
    assert out["done"] - cancelled_at < 2
    assert gone(child)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert list(job.runs.values_list("status", flat=True)) == [RS.CANCELLED]
    assert OrmQ.objects.count() == 1  # only the first stage's push, nothing after the cancel


@pytest.mark.django_db(transaction=True)
def test_it_enqueues_nothing_when_the_transaction_rolls_back(engine, theme, call_log, tmp_path):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        orchestrator.start_job(theme)
        assert OrmQ.objects.count() == 1  # visible inside the transaction...
        seen_elsewhere = []
        t = threading.Thread(target=lambda: (seen_elsewhere.append(OrmQ.objects.count()), connection.close()))
        t.start()
        t.join()
        raise Boom
    assert Job.objects.count() == 0
    assert OrmQ.objects.count() == 0  # ...and gone with the rollback
    if connection.vendor == "postgresql":
        assert seen_elsewhere == [0]  # another connection never saw it before COMMIT
    orchestrator.start_job(theme)
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_reruns_from_a_chosen_stage_keeping_history_and_superseding_later_checkpoints(
    engine, theme, call_log, tmp_path
):
    job = orchestrator.run_inline(start(theme, call_log, tmp_path).pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    before = {r.pk: (r.stage, r.status) for r in job.runs.all()}

    orchestrator.retry_job(job.pk, from_stage="scene_generation")
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    rows = {r.pk: r for r in job.runs.all()}
    # every earlier row is still there
    assert set(before) <= set(rows)
    for pk, (stage, _status) in before.items():
        row = rows[pk]
        assert row.stage == stage
        if pipeline.index(stage) >= pipeline.index("scene_generation"):
            assert row.superseded_at is not None
        else:
            assert row.superseded_at is None and row.status == RS.SUCCEEDED
    made = [s for s, _ in calls(call_log)]
    assert made.count("trend_collection") == 1
    assert made.count("scene_generation") == 2
    checkpoints = job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True)
    assert checkpoints.get(stage="scene_generation").attempt == 2
    assert orchestrator.resume_point(job) == "review"


@pytest.mark.django_db(transaction=True)
def test_it_requests_changes_with_notes_and_reruns_from_the_stage(engine, theme, call_log, tmp_path, reviewer):
    job = orchestrator.run_inline(start(theme, call_log, tmp_path).pk)
    with pytest.raises(ValueError, match="notes"):
        orchestrator.review_job(job.pk, "request_changes", from_stage="script_generation", user=reviewer)
    with pytest.raises(ValueError, match="before review"):
        orchestrator.review_job(job.pk, "request_changes", from_stage="publish", notes="x", user=reviewer)
    orchestrator.review_job(
        job.pk, "request_changes", from_stage="script_generation", notes="hook: Stop scrolling", user=reviewer
    )
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    script = job.runs.filter(stage="script_generation", superseded_at__isnull=True, status=RS.SUCCEEDED).get()
    assert script.output["notes"] == ["hook: Stop scrolling"]
    assert script.input == {"review_notes": "hook: Stop scrolling"}
    assert job.reviews.get().from_stage == "script_generation"


@pytest.mark.django_db(transaction=True)
def test_it_rejects_and_refuses_actions_the_state_does_not_allow(engine, theme, call_log, tmp_path, reviewer):
    job = start(theme, call_log, tmp_path)
    with pytest.raises(orchestrator.InvalidState):
        orchestrator.review_job(job.pk, "approve", user=reviewer)
    with pytest.raises(orchestrator.InvalidState):
        orchestrator.retry_job(job.pk)
    job = orchestrator.run_inline(job.pk)
    orchestrator.review_job(job.pk, "reject", notes="off-brand", user=reviewer)
    job.refresh_from_db()
    assert job.status == Job.Status.REJECTED
    with pytest.raises(orchestrator.InvalidState):
        orchestrator.cancel_job(job.pk)
    with pytest.raises(orchestrator.UnknownStage):
        orchestrator.retry_job(job.pk, from_stage="nope")


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_marks_a_silent_attempt_crashed_and_counts_it(engine, theme, call_log, tmp_path):
    engine.TRENDREEL_STAGE_POLICY["trend_collection"]["max_attempts"] = 2
    job = start(theme, call_log, tmp_path)
    old = timezone.now() - timedelta(seconds=10)
    for attempt in (1, 2):
        run = job.runs.get(attempt=attempt)
        StageRun.objects.filter(pk=run.pk).update(status=RS.RUNNING, started_at=old, heartbeat_at=old, worker="gone:1")
        report = orchestrator.sweep(now=timezone.now() + timedelta(seconds=1))
        assert run.pk in report.crashed
        run.refresh_from_db()
        assert (run.status, run.error_kind) == (RS.CRASHED, "crashed")
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.runs.count() == 2
    assert "stopped heartbeating" in job.error_message


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_pushes_due_retries_and_lost_pushes(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path)
    run = job.runs.get()
    OrmQ.objects.all().delete()  # the push is lost
    assert not orchestrator.sweep()  # not yet: pushed recently
    later = timezone.now() + timedelta(seconds=engine.TRENDREEL_REQUEUE_SECONDS + 1)
    assert orchestrator.sweep(now=later).pushed == [run.pk]
    assert OrmQ.objects.count() == 1
    # a retry waiting for its backoff is pushed only when due
    StageRun.objects.filter(pk=run.pk).update(enqueued_at=None, not_before=later + timedelta(seconds=5))
    assert orchestrator.sweep(now=later).pushed == []
    assert orchestrator.sweep(now=later + timedelta(seconds=6)).pushed == [run.pk]


@pytest.mark.django_db(transaction=True)
def test_stalled_means_due_runs_unclaimed_while_nothing_runs(engine, theme, call_log, tmp_path):
    job = start(theme, call_log, tmp_path)
    run = job.runs.get()
    later = timezone.now() + timedelta(seconds=engine.TRENDREEL_STALL_SECONDS + 1)
    assert not orchestrator.stalled()  # pushed just now
    assert orchestrator.stalled(now=later)
    other = start(theme, call_log, tmp_path)
    StageRun.objects.filter(job=other).update(status=RS.RUNNING, started_at=timezone.now())
    assert not orchestrator.stalled(now=later)  # a long stage is running: busy, not wedged
    StageRun.objects.filter(pk=run.pk).update(not_before=later + timedelta(seconds=60), enqueued_at=None)
    StageRun.objects.filter(job=other).update(status=RS.SUCCEEDED)
    assert not orchestrator.stalled(now=later)  # waiting for its backoff is not a stall either


@pytest.mark.django_db(transaction=True)
def test_review_notes_of_every_round_reach_the_rerun_and_the_stages_after_it(
    engine, theme, call_log, tmp_path, reviewer
):
    job = orchestrator.run_inline(start(theme, call_log, tmp_path).pk)
    orchestrator.review_job(
        job.pk, "request_changes", from_stage="script_generation", notes="shorter hook", user=reviewer
    )
    job = orchestrator.run_inline(job.pk)
    orchestrator.review_job(
        job.pk, "request_changes", from_stage="scene_generation", notes="brighter cards", user=reviewer
    )
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    current = {r.stage: r for r in job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True)}
    assert current["script_generation"].output["notes"] == ["shorter hook"]  # checkpoint of round 1, kept
    assert current["scene_generation"].output["notes"] == ["shorter hook", "brighter cards"]  # oldest first
    assert current["composition"].output["notes"] == ["shorter hook", "brighter cards"]
    assert current["trend_collection"].output["notes"] == []


@pytest.mark.django_db(transaction=True)
def test_a_stage_transition_costs_a_fixed_handful_of_statements(engine, theme, call_log, tmp_path):
    """The hot path's budget: claim (+ load), checkpoints, then lock + record + next run + enqueue.

    Pinned because every statement is paid on every stage of every job (bench/RESULTS.md).
    """
    from django.test.utils import CaptureQueriesContext

    job = start(theme, call_log, tmp_path)
    orchestrator.execute_run(job.runs.get().pk)  # the first claim also starts the job
    run = job.runs.get(status=RS.QUEUED)
    engine.TRENDREEL_HEARTBEAT_SECONDS = 30  # no heartbeat from the watchdog's own connection
    with CaptureQueriesContext(connection) as ctx:
        assert orchestrator.execute_run(run.pk) == "succeeded"
    statements = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].split()[0].upper() not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")
    ]
    # claim (+ load incl. checkpoints), job, run, artifact, next run, the ORM broker's INSERT; SQLite has
    # no UPDATE inside WITH, so its claim and load are two statements
    budget = 6 if connection.vendor == "postgresql" else 7
    assert len(statements) <= budget, "\n".join(statements)
    assert job.runs.get(stage=pipeline.STAGE_KEYS[2]).status == RS.QUEUED
    assert OrmQ.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_stalled_asks_about_one_cluster_when_given_its_workers(engine, theme, call_log, tmp_path):
    """Two clusters on one database: one busy with a long stage, the other wedged (its idle worker
    SIGKILLed). Asked about the whole database nothing looks wrong; asked per cluster, the wedged
    one is found while the busy one is not."""
    waiting = start(theme, call_log, tmp_path)
    busy = start(theme, call_log, tmp_path)
    now = timezone.now()
    later = now + timedelta(seconds=engine.TRENDREEL_STALL_SECONDS + 1)
    StageRun.objects.filter(job=busy).update(
        status=RS.RUNNING, started_at=later - timedelta(seconds=1), worker="host-a:101"
    )
    StageRun.objects.filter(job=waiting).update(enqueued_at=now - timedelta(seconds=1))
    assert not orchestrator.stalled(now=later)  # something runs somewhere
    assert not orchestrator.stalled(now=later, workers=lambda: ["host-a:101", "host-a:102"])  # busy, not wedged
    assert orchestrator.stalled(now=later, workers=lambda: ["host-b:201", "host-b:202"])  # idle, claiming nothing
    claimed = start(theme, call_log, tmp_path)  # host b claimed (and finished) something lately
    StageRun.objects.filter(job=claimed).update(
        status=RS.SUCCEEDED, started_at=later - timedelta(seconds=5), worker="host-b:202"
    )
    assert not orchestrator.stalled(now=later, workers=lambda: ["host-b:201", "host-b:202"])
