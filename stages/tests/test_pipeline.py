"""The real eight stages end to end, offline: bundled feeds in, a probed vertical MP4 out."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from jobs import orchestrator
from jobs.models import Artifact, Job, StageRun, Trend
from stages import media, pipeline
from stages.demo import ensure_demo_theme

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
RS = StageRun.Status


def checkpoint(job: Job, stage: str) -> StageRun:
    return job.runs.get(stage=stage, status=RS.SUCCEEDED, superseded_at__isnull=True)


def rerun_only(job: Job, stage: str) -> StageRun:
    """Re-run one stage from the console's "re-run from" and stop the job right after it."""
    orchestrator.retry_job(job.pk, from_stage=stage)
    run = job.runs.get(stage=stage, status=RS.QUEUED)
    with orchestrator.inline_mode():
        assert orchestrator.execute_run(run.pk) == "succeeded"
    orchestrator.cancel_job(job.pk)
    run.refresh_from_db()
    return run


def test_the_demo_theme_becomes_a_video_in_review_and_reruns_reproduce_checkpoints():
    theme = ensure_demo_theme()
    theme.settings = {**theme.settings, "voiceover": {"engine": "espeak-ng"}}  # fast and deterministic
    theme.save()
    job = orchestrator.run_inline(orchestrator.start_job(theme).pk)
    assert job.status == Job.Status.AWAITING_REVIEW, (job.error_stage, job.error_message)

    comp = checkpoint(job, "composition")
    video = Path(settings.MEDIA_ROOT) / comp.output_dir / comp.output["video"]
    info = media.probe(video)
    voice = checkpoint(job, "voiceover").output
    assert info.streams[:2] == ["video", "audio"] or set(info.streams) >= {"video", "audio"}
    assert (info.width, info.height, round(info.fps)) == (1080, 1920, 30)
    assert (info.video_codec, info.profile, info.pix_fmt) == ("h264", "High", "yuv420p")
    assert (info.audio_codec, info.audio_rate) == ("aac", 48000)
    assert abs(info.duration - voice["duration"]) <= 0.1
    assert media.measure_audio(video).mean_volume_db > -50
    assert comp.output["qc"]["passed"] is True
    kinds = set(Artifact.objects.filter(job=job).values_list("kind", flat=True))
    assert {"video", "thumbnail", "audio", "image"} <= kinds

    # Re-running any stage reproduces its checkpoint and leaves earlier ones alone.
    trends = Trend.objects.count()
    assert trends > 0
    originals = {r.stage: r for r in job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True)}
    for stage, same in [
        ("trend_collection", lambda o: o["trend_ids"]),
        ("trend_analysis", lambda o: o["topic"]),
        ("script_generation", lambda o: o["segments"]),
        ("scene_generation", lambda o: [s["segment"] for s in o["scenes"]]),
        ("voiceover", lambda o: [c["text"] for c in o["captions"]]),
    ]:
        earlier = {
            r.stage: r.pk
            for r in job.runs.filter(status=RS.SUCCEEDED, superseded_at__isnull=True)
            if pipeline.index(r.stage) < pipeline.index(stage)
        }
        new = rerun_only(job, stage)
        old = originals[stage]
        assert new.attempt > old.attempt
        assert same(new.output) == same(old.output), stage
        old.refresh_from_db()
        assert old.superseded_at is not None  # kept, not deleted
        assert StageRun.objects.filter(pk=old.pk).exists()
        now = {
            r.stage: r.pk for r in job.runs.filter(stage__in=earlier, status=RS.SUCCEEDED, superseded_at__isnull=True)
        }
        assert now == earlier  # earlier checkpoints untouched
        assert Trend.objects.count() == trends  # upserts, never duplicates
