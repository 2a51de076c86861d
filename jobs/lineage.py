"""What shaped a video: its lineage, built from the job's current checkpoints.

The trends it tells (titles, URLs, sources), the script's provider, model and prompt version, the
voice engine and voice id, each scene's footage (stock ids with their credits, or the card it
drew), the music bed, the settings that applied (the theme's per stage and the job's params, with
secrets masked as everywhere else), the code version, and the edits made. ``GET
/api/jobs/{id}/lineage`` returns it, the review page shows it, and the publish stage hands it to
every destination (``Package.lineage``; the outbox writes ``lineage.json`` beside the video).

Plain data in, plain data out: ``build`` takes the stage outputs as a stage sees them (the publish
stage's ``ctx.upstream``), ``for_job`` reads them from the database.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from django.utils import timezone

from console.secrets import mask_secrets

log = logging.getLogger("trendreel.lineage")
ROOT = Path(__file__).resolve().parent.parent
VERSION_ENV = "TRENDREEL_CODE_VERSION"
FORMAT = 1


@functools.cache
def code_version() -> dict[str, Any]:
    """The code this process runs, read once (``jobs.apps`` reads it at start-up, so a checkout
    updated under a running worker does not change what its videos say): ``TRENDREEL_CODE_VERSION``
    if set (an image built without .git), else ``git rev-parse HEAD`` (``dirty`` when files differ
    from it), else the version in pyproject.toml."""
    pinned = os.environ.get(VERSION_ENV, "").strip()
    if pinned:
        return {
            "commit": pinned if re.fullmatch(r"[0-9a-f]{7,40}", pinned) else None,
            "version": pinned,
            "source": "env",
        }
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        if re.fullmatch(r"[0-9a-f]{40}", head):
            return {"commit": head, "version": head[:12] + ("-dirty" if status.strip() else ""), "source": "git"}
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("no git commit for the lineage (%s); using the package version", exc)
    return {"commit": None, "version": _package_version(), "source": "package"}


def _package_version() -> str:
    try:
        with open(ROOT / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh).get("project", {}).get("version") or "unknown")
    except (OSError, tomllib.TOMLDecodeError):
        return "unknown"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _trends(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    topic = _dict(analysis.get("topic"))
    if not topic:
        return []
    trends = [
        {
            "role": "topic",
            "title": _text(topic.get("title")) or "",
            "url": _text(topic.get("url")),
            "source": _text(topic.get("source")),
            "trend_id": topic.get("trend_id") if isinstance(topic.get("trend_id"), int) else None,
        }
    ]
    for related in _list(topic.get("related")):
        related = _dict(related)
        if _text(related.get("title")) or _text(related.get("url")):
            trends.append(
                {
                    "role": "related",
                    "title": _text(related.get("title")) or "",
                    "url": _text(related.get("url")),
                    "source": _text(related.get("source")),
                    "trend_id": None,
                }
            )
    return trends


def _footage(scenes_output: dict[str, Any]) -> list[dict[str, Any]]:
    footage = []
    for index, scene in enumerate(_list(scenes_output.get("scenes")), start=1):
        scene = _dict(scene)
        stock = _dict(scene.get("pexels"))
        footage.append(
            {
                "index": index,
                "segment": _text(scene.get("segment")),
                "source": _text(scene.get("source")) or "card",
                "provider": _text(scene.get("provider")),
                "id": str(stock["id"]) if stock.get("id") not in (None, "") else None,
                "media": _text(stock.get("media")),
                "url": _text(stock.get("url")),
                "credit": _text(stock.get("photographer")),
                "credit_url": _text(stock.get("photographer_url")),
                "upload": _text(scene.get("upload")),  # a scene replaced by an uploaded file (an edit)
                "text": _text(scene.get("text")),
            }
        )
    return footage


def _music(composition: dict[str, Any]) -> dict[str, Any] | None:
    mix = _dict(composition.get("mix"))
    if not mix:
        return None
    from stages.music import BEDS

    bed = _text(mix.get("bed"))
    bundled = next((b for b in BEDS.values() if b.file == bed), None)
    return {
        "bed": bed,
        "mood": bundled.mood if bundled else None,
        "sha256": bundled.sha256 if bundled else None,
        "license": "CC0 (bundled, made by stages/music.py)" if bundled else None,
        "gain_db": mix.get("bed_gain_db") if isinstance(mix.get("bed_gain_db"), int | float) else None,
    }


def build(
    *,
    job_id: int,
    theme: dict[str, Any],
    params: dict[str, Any],
    outputs: dict[str, dict[str, Any]],
    overrides: dict[str, Any] | None = None,
    edits: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The lineage of job ``job_id`` from its stages' current outputs (``outputs[stage]``)."""
    script = _dict(outputs.get("script_generation"))
    voice = _dict(outputs.get("voiceover"))
    scenes = _dict(outputs.get("scene_generation"))
    settings = _dict(theme.get("settings"))
    return {
        "format": FORMAT,
        "job_id": job_id,
        "theme": _text(theme.get("slug")) or _text(theme.get("name")) or "",
        "generated_at": timezone.now().isoformat(),
        "code": code_version(),
        "trends": _trends(_dict(outputs.get("trend_analysis"))),
        "script": {
            "title": _text(script.get("title")),
            "provider": _text(script.get("provider")),
            "model": _text(script.get("writer")),
            "prompt_version": _text(script.get("prompt_version")),
        }
        if script
        else None,
        "voice": {
            "provider": _text(voice.get("provider")),
            "engine": _text(voice.get("engine")),
            "voice": _text(voice.get("voice")),
        }
        if voice
        else None,
        "footage": _footage(scenes),
        "credits": [c for c in _list(scenes.get("credits")) if isinstance(c, str)],
        "music": _music(_dict(outputs.get("composition"))),
        "settings": {
            "target_seconds": theme.get("target_seconds"),
            "voice": _text(theme.get("voice")),
            "stages": mask_secrets({k: v for k, v in settings.items() if isinstance(v, dict)}),
            "params": mask_secrets(dict(params or {})),
        },
        "overrides": mask_secrets(dict(overrides or {})),
        "edits": edits or [],
    }


def job_edits(job_or_id) -> list[dict[str, Any]]:
    """The job's recorded edits (``JobEdit`` rows, oldest first), as plain data: who, when, what,
    why and what ran again."""
    from jobs.models import Job, JobEdit

    if isinstance(job_or_id, Job):
        records = job_or_id.edit_records()
    else:
        records = list(JobEdit.objects.filter(job_id=job_or_id).select_related("user"))
    return [
        mask_secrets(
            {
                "created_at": record.created_at.isoformat(),
                "by": record.by,
                "edits": record.edits,
                "notes": record.notes,
                "stages": record.stages,
                "items": record.items,
                "composition_run": record.composition_run_id,
            }
        )
        for record in records
    ]


def for_job(job) -> dict[str, Any]:
    """The lineage of ``job`` from its current checkpoints (one query for them, one for edits)."""
    from jobs.models import StageRun

    outputs: dict[str, tuple[int, dict]] = {}
    current = job.runs.filter(status=StageRun.Status.SUCCEEDED, superseded_at__isnull=True)
    for stage, attempt, output in current.values_list("stage", "attempt", "output"):
        if stage not in outputs or attempt > outputs[stage][0]:
            outputs[stage] = (attempt, output or {})
    return build(
        job_id=job.pk,
        theme=job.theme.as_input(),
        params=job.params or {},
        outputs={stage: output for stage, (_, output) in outputs.items()},
        overrides=job.overrides,
        edits=job_edits(job),
    )
