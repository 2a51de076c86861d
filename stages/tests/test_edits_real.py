"""A targeted edit with the real stages: the demo job, then one caption changed; only composition
runs again, on the voiceover's and the scenes' checkpoints as they were."""

from __future__ import annotations

import pytest

from jobs import orchestrator
from jobs.models import Job, StageRun
from stages.demo import ensure_demo_theme

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
RS = StageRun.Status


def test_a_caption_edit_recomposes_the_real_demo_and_reuses_the_rest():
    theme = ensure_demo_theme()
    theme.settings = {**theme.settings, "voiceover": {"engine": "espeak-ng"}}  # fast and deterministic
    theme.save()
    job = orchestrator.run_inline(orchestrator.start_job(theme).pk)
    assert job.status == Job.Status.AWAITING_REVIEW, (job.error_stage, job.error_message)
    before = {r.stage: r.pk for r in job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True)}

    record = orchestrator.edit_job(job.pk, [{"kind": "caption", "index": 2, "text": "Words on screen"}])
    assert record.stages == ["composition"]
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW, (job.error_stage, job.error_message)
    after = {r.stage: r.pk for r in job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True)}
    for stage in ("trend_collection", "trend_analysis", "script_generation", "scene_generation", "voiceover"):
        assert after[stage] == before[stage], stage
    assert after["composition"] != before["composition"]
    assert job.runs.get(pk=after["composition"]).artifacts.filter(kind="video").exists()
