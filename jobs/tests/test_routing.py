"""Render isolation: a stage's ``cluster`` routes it to that cluster's queue and workers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from jobs import orchestrator
from jobs.models import Job, StageRun
from jobs.orchestrator import routing
from jobs.tests.conftest import FAST_POLICY, job_status, params, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status
RENDER = {**FAST_POLICY, "composition": {**FAST_POLICY["composition"], "cluster": "render"}}


def queued_tasks() -> list[tuple[str, dict]]:
    return [(row.key, SignedPackage.loads(row.payload)) for row in OrmQ.objects.order_by("id")]


def test_a_stage_s_cluster_names_its_queue(engine, theme, call_log, tmp_path):
    engine.TRENDREEL_STAGE_POLICY = RENDER
    job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    OrmQ.objects.all().delete()
    orchestrator.retry_job(job.pk, from_stage="composition")
    [(key, task)] = queued_tasks()
    assert key == routing.queue_name("render") != routing.queue_name(None)
    assert task["args"] == (job.runs.get(stage="composition", status=RS.QUEUED).pk,)


def test_no_time_limit_means_no_limit_at_the_broker_too(engine, theme):
    """``time_limit: 0`` is "no limit": django-q2 must not get a 30 s timeout that kills the worker."""
    engine.TRENDREEL_STAGE_POLICY["trend_collection"]["time_limit"] = 0
    orchestrator.start_job(theme)
    [(_, task)] = queued_tasks()
    assert task["timeout"] == -1  # django-q2: no SIGALRM, no guard kill
    engine.TRENDREEL_STAGE_POLICY["trend_collection"]["time_limit"] = 20
    OrmQ.objects.all().delete()
    orchestrator.start_job(theme)
    [(_, task)] = queued_tasks()
    assert task["timeout"] > 20


def test_stalled_judges_only_the_stages_its_cluster_serves(engine, theme, call_log, tmp_path):
    """With the render worker down, compositions wait in the render queue: the default cluster
    must not take that for a wedge of its own (and restart itself every minute)."""
    engine.TRENDREEL_STAGE_POLICY = RENDER
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path))
    StageRun.objects.filter(job=job).update(stage="composition", enqueued_at=timezone.now() - timedelta(seconds=1))
    later = timezone.now() + timedelta(seconds=engine.TRENDREEL_STALL_SECONDS + 1)
    assert orchestrator.stalled(now=later, cluster="render") == ("composition",)
    assert not orchestrator.stalled(now=later, cluster=None)


@pytest.mark.cluster
def test_renders_run_only_on_the_render_worker_and_quick_stages_flow_without_it(
    start_worker, theme, call_log, tmp_path
):
    default = start_worker("worker", policy=RENDER, extra_env={"TRENDREEL_STALL_SECONDS": "2"})
    jobs = [orchestrator.start_job(theme, params=params(call_log, tmp_path)) for _ in range(3)]

    def all_waiting_for_render() -> bool:
        return (
            StageRun.objects.filter(job__in=jobs, stage="composition", status=RS.QUEUED).count() == 3
            and StageRun.objects.filter(job__in=jobs, stage="voiceover", status=RS.SUCCEEDED).count() == 3
        )

    wait_for(all_waiting_for_render, timeout=60, what="quick stages done, renders queued", log=default.log)
    assert not StageRun.objects.filter(stage="composition").exclude(status=RS.QUEUED).exists()

    render = start_worker("worker --cluster render", policy=RENDER)
    for job in jobs:
        wait_for(
            lambda job=job: job_status(job.pk) == Job.Status.AWAITING_REVIEW,
            timeout=60,
            what="renders drained",
            log=render.log,
        )
    for run in StageRun.objects.filter(job__in=jobs, status=RS.SUCCEEDED).exclude(stage="review"):
        assert run.output["cluster"] == ("render" if run.stage == "composition" else ""), run
    # waiting renders are never the default cluster's wedge (on a loaded machine its own quick stages
    # may wait past the 2 s threshold and restart it, which is the stall rule working, not a render)
    stalls = [line for line in default.log.read_text().splitlines() if line.startswith("stalled:")]
    assert all("waiting:" in line and "composition" not in line for line in stalls), stalls
