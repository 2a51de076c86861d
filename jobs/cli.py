"""Shared helpers for the management commands: look-ups that fail with one line and exit 2."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from django.core.management.base import CommandError

from jobs import orchestrator
from jobs.models import Job, StageRun, Theme
from stages import pipeline


def get_job(job_id: int | str) -> Job:
    try:
        return Job.objects.select_related("theme").get(pk=int(job_id))
    except (Job.DoesNotExist, ValueError):
        raise CommandError(f"no job with id {job_id}", returncode=2) from None


def get_theme(slug: str) -> Theme:
    try:
        return Theme.objects.get(slug=slug)
    except Theme.DoesNotExist:
        known = ", ".join(Theme.objects.values_list("slug", flat=True)) or "none; run `manage.py seed_demo`"
        raise CommandError(f"no theme {slug!r} (themes: {known})", returncode=2) from None


def get_user(username: str):
    from django.contrib.auth import get_user_model

    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no user {username!r}", returncode=2) from None


def check_stage(stage: str | None) -> str | None:
    if stage is not None and stage not in pipeline.STAGE_KEYS:
        raise CommandError(f"unknown stage {stage!r}; stages are: {', '.join(pipeline.STAGE_KEYS)}", returncode=2)
    return stage


def act(fn: Callable, *args, **kwargs):
    """Call an orchestrator action; a state conflict or bad value is a one-line error (exit 1)."""
    try:
        return fn(*args, **kwargs)
    except (orchestrator.InvalidState, PermissionError) as exc:
        raise CommandError(str(exc), returncode=1) from None
    except orchestrator.UnknownStage as exc:
        raise CommandError(str(exc), returncode=2) from None
    except ValueError as exc:
        raise CommandError(str(exc), returncode=2) from None


FINISHED_OK = (Job.Status.AWAITING_REVIEW, Job.Status.COMPLETED)


def snapshot(job_id: int) -> tuple[Job, dict[str, StageRun]]:
    job = Job.objects.get(pk=job_id)
    latest: dict[str, StageRun] = {}
    for run in job.runs.order_by("attempt").only(
        "stage", "attempt", "status", "progress", "message", "error_message", "superseded_at"
    ):
        latest[run.stage] = run
    return job, latest


class Watcher:
    """Shows a job's per-stage progress until it stops moving (rich bars on a terminal, lines otherwise)."""

    def __init__(self, job_id: int, out: TextIO | None = None, interval: float = 0.4) -> None:
        self.job_id = job_id
        self.out = out or sys.stdout
        self.interval = interval
        self._stop = threading.Event()
        self._seen: dict[str, tuple] = {}

    def lines(self) -> list[str]:
        job, latest = snapshot(self.job_id)
        changed = []
        for key in pipeline.STAGE_KEYS:
            run = latest.get(key)
            if run is None:
                continue
            state = (run.attempt, run.status, int(run.progress * 10), run.message)
            if self._seen.get(key) != state:
                self._seen[key] = state
                bar = "#" * int(run.progress * 20)
                detail = (
                    run.error_message
                    if run.status in (StageRun.Status.FAILED, StageRun.Status.CRASHED)
                    else run.message
                )
                changed.append(
                    f"{time.strftime('%H:%M:%S')} {key:<18} #{run.attempt} {run.status:<9} [{bar:<20}] {run.progress:4.0%} {detail}"
                )
        return changed

    def follow(self) -> Job:
        """Block until the job waits for review or finishes; returns its final state."""
        if getattr(self.out, "isatty", lambda: False)():
            return self._follow_rich()
        while True:
            for line in self.lines():
                print(line, file=self.out, flush=True)
            job = Job.objects.get(pk=self.job_id)
            if job.status not in (Job.Status.PENDING, Job.Status.RUNNING, Job.Status.PUBLISHING) or self._stop.is_set():
                for line in self.lines():
                    print(line, file=self.out, flush=True)
                return job
            time.sleep(self.interval)

    def _follow_rich(self) -> Job:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("{task.description:<18}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[status]:<9}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[message]}"),
        )
        with Progress(*columns, refresh_per_second=8) as bars:
            tasks = {k: bars.add_task(k, total=1.0, status="", message="", start=False) for k in pipeline.STAGE_KEYS}
            while True:
                job, latest = snapshot(self.job_id)
                for key, run in latest.items():
                    detail = (
                        run.error_message
                        if run.status in (StageRun.Status.FAILED, StageRun.Status.CRASHED)
                        else run.message
                    )
                    bars.start_task(tasks[key])
                    bars.update(
                        tasks[key], completed=run.progress, status=f"{run.status} #{run.attempt}", message=detail[:60]
                    )
                if (
                    job.status not in (Job.Status.PENDING, Job.Status.RUNNING, Job.Status.PUBLISHING)
                    or self._stop.is_set()
                ):
                    return job
                time.sleep(self.interval)

    def follow_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._guarded_follow, daemon=True)
        thread.start()
        return thread

    def _guarded_follow(self) -> None:
        from django.db import connection

        try:
            self.follow()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()


def describe(job: Job) -> str:
    """A job's outcome in a few lines: status, the error and its hint, the video to review."""
    from django.conf import settings

    from jobs.models import Artifact

    text = f"job {job.pk}: {job.get_status_display().lower()}"
    if job.status == Job.Status.FAILED:
        text += f" at {job.error_stage} ({job.error_kind}): {job.error_message}"
        if job.error_hint:
            text += f"\n  hint: {job.error_hint}"
    video = (
        Artifact.objects.filter(
            job=job, kind="video", stage_run__status=StageRun.Status.SUCCEEDED, stage_run__superseded_at__isnull=True
        )
        .order_by("-id")
        .first()
    )
    if video is not None:
        text += f"\n  video: {settings.MEDIA_ROOT / video.path}"
    return text
