"""A job caught while it runs, for the live-page tests: earlier stages done (one failed attempt with a
traceback, a voice track, a composed video), composition running again after a request for changes."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from jobs.models import Artifact, Job, StageRun, Theme
from stages.media import run_ffmpeg

RS = StageRun.Status
TRACEBACK = (
    'Traceback (most recent call last):\n  File "stages/voiceover.py", line 88, in run\nRuntimeError: voice went quiet'
)


@dataclass
class LiveJob:
    job: Job
    failed: StageRun  # voiceover #1, with a traceback
    voice: StageRun  # voiceover #2, an audio file
    video: StageRun  # composition #1, a video file
    running: StageRun  # composition #2


def media_file(job: Job, name: str, *, video_seconds: float = 0) -> tuple[str, int]:
    """A real file under MEDIA_ROOT: a WebM clip (Chromium plays VP8 anywhere) or a short WAV."""
    rel = f"jobs/{job.pk}/{name}"
    path = Path(settings.MEDIA_ROOT) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".webm"):
        clip = f"testsrc=size=180x320:rate=15:duration={video_seconds}"
        code, lines = run_ffmpeg(["-v", "error", "-y", "-f", "lavfi", "-i", clip, "-c:v", "libvpx", str(path)])
        assert code == 0, lines
    else:
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\0\0" * 8000)
    return rel, path.stat().st_size


def running_job(theme: Theme, *, video_seconds: float = 0) -> LiveJob:
    """The job; ``video_seconds`` > 0 encodes a real clip for the player (else the file is a stub)."""
    t = timezone.now() - timedelta(seconds=27)  # 8 attempts 3 s apart: the last one started now
    job = Job.objects.create(theme=theme, status=Job.Status.RUNNING, current_stage="composition", started=t)

    def run(stage: str, attempt: int = 1, status: str = RS.SUCCEEDED, **fields) -> StageRun:
        nonlocal t
        t += timedelta(seconds=3)
        done = status not in (RS.RUNNING, RS.QUEUED)
        return StageRun.objects.create(
            job=job,
            stage=stage,
            attempt=attempt,
            status=status,
            queued_at=t,
            started_at=t,
            finished_at=t + timedelta(seconds=2) if done else None,
            heartbeat_at=None if done else t,
            progress=1.0 if done else 0.1,
            message="done" if done else "rendering",
            **fields,
        )

    for stage in ("trend_collection", "trend_analysis", "script_generation", "scene_generation"):
        run(stage)
    failed = run(
        "voiceover",
        status=RS.FAILED,
        error_kind="transient",
        error_message="voice went quiet",
        error_traceback=TRACEBACK,
    )
    voice = run("voiceover", attempt=2)
    video = run("composition", superseded_at=timezone.now())
    running = run("composition", attempt=2, status=RS.RUNNING, reason="changes requested: shorter")
    for owner, kind, name in ((voice, "audio", "voice.wav"), (video, "video", "video.webm")):
        if video_seconds or kind == "audio":
            rel, size = media_file(job, name, video_seconds=video_seconds)
        else:
            rel, size = f"jobs/{job.pk}/{name}", 1
        Artifact.objects.create(job=job, stage_run=owner, kind=kind, label=name, path=rel, size=size, checksum="0" * 64)
    return LiveJob(job=job, failed=failed, voice=voice, video=video, running=running)
