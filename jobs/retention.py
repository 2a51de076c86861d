"""Media retention: remove the files of jobs that finished long ago, keep every record.

A daily factory writes ~20-40 MB per job (scene images, voice, video); nothing else ever deletes
them. ``prune_media`` removes ``MEDIA_ROOT/jobs/<id>`` of jobs finished more than N days ago and
stamps ``Job.media_purged_at``: the job, its runs, outputs, artifacts (sizes, checksums) and
review history stay; the console says the media was removed and the media view answers 410.
Completed and rejected jobs only, unless ``include_failed`` (failed and cancelled jobs are the
ones an operator may still retry; a retry of a purged job starts from the first stage).
Published copies (outbox, webhook, YouTube) are not touched.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from jobs.models import Job
from jobs.orchestrator import job_dir

JS = Job.Status


@dataclass
class PruneReport:
    jobs: list[int] = field(default_factory=list)
    bytes: int = 0


def folder_size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:  # removed meanwhile
            continue
    return total


def prune_media(
    days: float, *, include_failed: bool = False, dry_run: bool = False, now: datetime | None = None
) -> PruneReport:
    """Remove the media of jobs finished more than ``days`` ago (oldest first)."""
    if days <= 0:
        raise ValueError("retention must be a positive number of days")
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    statuses = [JS.COMPLETED, JS.REJECTED] + ([JS.FAILED, JS.CANCELLED] if include_failed else [])
    candidates = Job.objects.filter(status__in=statuses, finished__lt=cutoff, media_purged_at__isnull=True)
    report = PruneReport()
    for pk in candidates.order_by("finished").values_list("pk", flat=True):
        # Under the job's row lock: a retry (which starts new media) waits until this is done,
        # and a job retried since the listing is skipped.
        with transaction.atomic():
            if not candidates.filter(pk=pk).select_for_update().exists():
                continue
            folder = job_dir(pk)
            size = folder_size(folder) if folder.exists() else 0
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
                Job.objects.filter(pk=pk).update(media_purged_at=now)
        report.jobs.append(pk)
        report.bytes += size
    return report
