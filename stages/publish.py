"""Stage: publish. Deliver the approved video and its metadata, exactly once per job and destination.

Why the order is what it is (crash safety without a distributed transaction):

1. A ``Publication`` row for (job, destination) already exists -> the job was delivered; return
   ``already_published=True`` and touch nothing. The row is the truth, not the files: an uploader
   may already have taken the files out of the outbox, and writing them again would publish twice.
2. Otherwise deliver the files (``stages.providers.outbox``: temp names + ``os.replace``, metadata
   last). Delivery is idempotent: if an earlier attempt wrote the same video and metadata and then
   died before step 3, nothing is rewritten.
3. Record the row with ``get_or_create`` (the unique constraint settles a race between two
   attempts; the loser reports ``already_published=True``).

A crash between 2 and 3 therefore ends, on retry, with the same files and one row.

Settings (``theme.settings["publish"]``): ``provider`` ("outbox", the default).

Output: ``{"destination": "outbox", "video": abs path, "metadata": abs path,
"already_published": bool, "location": folder, "publication_id": int, "reused_files": bool}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.utils import timezone

from jobs.models import Publication
from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult
from stages.providers.outbox import METADATA_NAME, VIDEO_NAME, OutboxPublisher, Package, Publisher

PROVIDERS = ("outbox",)


def get_publisher(name: str) -> Publisher:
    if name == "outbox":
        return OutboxPublisher()
    raise PermanentStageError(
        f"publish provider {name!r} is unknown",
        hint=f"set theme.settings.publish.provider to one of: {', '.join(PROVIDERS)}",
    )


def run(ctx: StageContext) -> StageResult:
    publisher = get_publisher(str(ctx.stage_settings.get("provider") or "outbox"))
    destination = publisher.destination

    existing = Publication.objects.filter(job_id=ctx.job_id, destination=destination).first()
    if existing is not None:
        ctx.progress(1.0, f"Already published to {destination} on {existing.created:%Y-%m-%d %H:%M}")
        return _result(ctx, existing, already=True, reused=False)

    ctx.progress(0.1, "Preparing the video and its metadata")
    composition = ctx.output_of("composition")
    video_name = composition.get("video")
    if not video_name:
        raise PermanentStageError("composition output names no video", hint="re-run from composition")
    video = ctx.input_path("composition", str(video_name))
    thumbnail = ctx.input_path("composition", str(composition["thumbnail"])) if composition.get("thumbnail") else None
    metadata = build_metadata(ctx, composition)

    ctx.progress(0.3, f"Writing to the {destination}")
    delivery = publisher.deliver(Package(job_id=ctx.job_id, video=video, thumbnail=thumbnail, metadata=metadata))

    ctx.progress(0.9, "Recording the publication")
    publication, created = Publication.objects.get_or_create(
        job_id=ctx.job_id,
        destination=destination,
        defaults={
            "external_id": delivery.external_id,
            "location": delivery.location,
            "meta": {"video": delivery.video, "metadata": delivery.metadata, "title": metadata["title"]},
        },
    )
    ctx.progress(1.0, f"Published to {delivery.location}" if created else f"Already published to {destination}")
    return _result(ctx, publication, already=not created, reused=delivery.reused)


def build_metadata(ctx: StageContext, composition: dict[str, Any]) -> dict[str, Any]:
    """Title, description and hashtags from the script (the words the video says), else the topic."""
    script = ctx.upstream.get("script_generation") or {}
    analysis = ctx.upstream.get("trend_analysis") or {}
    topic = analysis.get("topic") or {}
    title = str(script.get("title") or topic.get("title") or f"Job {ctx.job_id}")
    description = str(script.get("description") or topic.get("summary") or "")
    hashtags = [str(h) for h in (script.get("hashtags") or topic.get("hashtags") or [])]
    sources = []
    if topic.get("url"):
        sources.append({"title": topic.get("title", ""), "url": topic["url"], "source": topic.get("source", "")})
    for related in topic.get("related") or []:
        if isinstance(related, dict) and related.get("url") and related["url"] not in {s["url"] for s in sources}:
            sources.append(
                {"title": related.get("title", ""), "url": related["url"], "source": related.get("source", "")}
            )
    qc = composition.get("qc") or {}
    return {
        "title": title,
        "description": description,
        "hashtags": hashtags,
        "sources": sources,
        "duration": composition.get("duration", qc.get("duration")),
        "width": qc.get("width"),
        "height": qc.get("height"),
        "theme": ctx.theme.get("slug") or ctx.theme.get("name") or "",
        "topic": {"trend_id": topic.get("trend_id"), "title": topic.get("title"), "angle": topic.get("angle")},
        "created_at": timezone.now().isoformat(),
    }


def _result(ctx: StageContext, publication: Publication, *, already: bool, reused: bool) -> StageResult:
    folder = Path(publication.location) if publication.location else None
    meta = publication.meta or {}
    video = meta.get("video") or (str(folder / VIDEO_NAME) if folder else "")
    metadata = meta.get("metadata") or (str(folder / METADATA_NAME) if folder else "")
    output = {
        "destination": publication.destination,
        "video": video,
        "metadata": metadata,
        "already_published": already,
        "location": publication.location,
        "publication_id": publication.pk,
        "reused_files": reused,
        # Consumers may move files out of the outbox; this says whether they were still there.
        "files_present": bool(video) and Path(video).exists() and bool(metadata) and Path(metadata).exists(),
    }
    receipt = ctx.work_dir / "publication.json"
    tmp = receipt.with_suffix(".json.part")
    tmp.write_text(json.dumps(output, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(receipt)
    return StageResult(
        output=output,
        artifacts=[ArtifactSpec("publication.json", "json", f"Publication receipt ({publication.destination})")],
    )
