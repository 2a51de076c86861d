"""Stage: publish. Deliver the approved video to every configured destination, exactly once each.

``theme.settings["publish"]["destinations"]`` lists them (default ``["outbox"]``; the older
``"provider": "outbox"`` still works). This is not a fallback chain: *every* destination must be
delivered. Each is idempotent per (job, destination) through its ``Publication`` row:

1. A finished row for (job, destination) exists -> already delivered; report
   ``already_published=True`` and touch nothing. The row is the truth, not the files: an uploader
   may already have taken the files out of the outbox, and writing them again would publish twice.
2. Otherwise deliver (outbox: ``stages.providers.outbox``, atomic files, metadata last; webhook:
   ``stages.providers.webhook``, signed POST with a stable delivery id; youtube:
   ``stages.providers.youtube``, resumable upload).
3. Record the row with ``get_or_create`` (the unique constraint settles a race between two
   attempts; the loser reports ``already_published=True``).

A crash between 2 and 3: the outbox finds its own files and rewrites nothing; the webhook is sent
again with the same ``X-Trendreel-Delivery`` id (receivers dedupe on it); YouTube never gets that
far without a row, because its upload session URI is stored in the row (``meta.state =
"uploading"``, ``external_id = ""``) *before* the first byte is sent, and the retry resumes that
session (or reads the finished video id from it) instead of uploading again. Such a row is a
reservation, not a publication: only ``meta.state == "published"`` (or a row without a state,
written before this existed) counts as delivered.

Destinations run in the listed order, all of them even when one fails; the failure then fails
the stage (transient if any failure was transient) and the retry skips the delivered ones. List
``webhook`` after ``youtube`` to send the YouTube link in the webhook payload.

Output: ``{"destinations": {name: {...result..., "already_published": bool}}, "already_published":
all of them were, plus the outbox's keys (or the first destination's) for compatibility:
"destination", "video", "metadata", "location", "publication_id", "reused_files",
"files_present"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.models import Publication
from jobs.orchestrator import gate
from stages.base import (
    ArtifactSpec,
    PermanentStageError,
    StageAborted,
    StageContext,
    StageError,
    StageResult,
    TransientStageError,
)
from stages.providers.outbox import METADATA_NAME, VIDEO_NAME, OutboxPublisher, Package
from stages.providers.webhook import WebhookPublisher
from stages.providers.youtube import YouTubePublisher

PROVIDERS = ("outbox", "webhook", "youtube")
UPLOADING = "uploading"
PUBLISHED = "published"


def destination_names(ctx: StageContext) -> list[str]:
    settings = ctx.stage_settings
    names = settings.get("destinations")
    if names in (None, "", []):
        names = [settings.get("provider") or "outbox"]
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise PermanentStageError(
            "publish: destinations must be a list of names",
            hint='e.g. theme.settings["publish"]["destinations"] = ["outbox", "webhook"]',
        )
    for name in names:
        if name not in PROVIDERS:
            raise PermanentStageError(
                f"publish provider {name!r} is unknown",
                hint=f'set theme.settings["publish"]["destinations"] to names from: {", ".join(PROVIDERS)}',
            )
    return list(dict.fromkeys(names))  # once each, in order


def is_done(publication: Publication | None) -> bool:
    return publication is not None and (publication.meta or {}).get("state", PUBLISHED) != UPLOADING


def run(ctx: StageContext) -> StageResult:
    # The review gate, checked again where the effect happens: the orchestrator refuses to start
    # publish without an approval of the current composition, and so does the stage itself.
    refused = gate.problem(ctx.job_id)
    if refused is not None:
        raise PermanentStageError(refused, hint="review the job again; publish runs after an approval")
    names = destination_names(ctx)
    rows = {p.destination: p for p in Publication.objects.filter(job_id=ctx.job_id, destination__in=names)}
    pending = [n for n in names if not is_done(rows.get(n))]
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in pending:
            results[name] = describe(rows[name], already=True)
    if not pending:
        when = min(r.created for r in rows.values())
        ctx.progress(1.0, f"Already published to {', '.join(names)} on {when:%Y-%m-%d %H:%M}")
        return _result(ctx, names, results)

    # Configuration first: a missing key fails before anything is delivered.
    publishers = {name: make_publisher(ctx, name) for name in pending}

    ctx.progress(0.05, "Preparing the video and its metadata")
    package = build_package(ctx)

    failures: list[dict[str, str]] = []
    share = 0.9 / len(pending)
    for i, name in enumerate(pending):
        ctx.check_cancelled()
        base = 0.05 + i * share

        def progress(fraction: float, message: str, base: float = base) -> None:
            ctx.progress(base + share * max(0.0, min(1.0, fraction)), message)

        progress(0.0, f"Publishing to {name}")
        earlier = {n: r for n, r in results.items() if not r.get("error")}
        try:
            results[name] = publishers[name](package, earlier, progress)
        except StageAborted:
            raise
        except StageError as exc:
            failures.append(
                {
                    "destination": name,
                    "kind": exc.kind,
                    "error": exc.message,
                    "hint": exc.hint,
                    "retry_after": exc.retry_after,
                }
            )
            results[name] = {"error": exc.message, "kind": exc.kind}
            ctx.logger.warning("publish: %s failed (%s): %s", name, exc.kind, exc.message)

    if failures:
        done = [n for n in names if not results[n].get("error")]
        summary = "; ".join(f"{f['destination']}: {f['error']}" for f in failures)
        suffix = f" (delivered, not repeated on retry: {', '.join(done)})" if done else ""
        hints = "; ".join(f"{f['destination']}: {f['hint']}" for f in failures if f["hint"])
        if any(f["kind"] == "transient" for f in failures):
            waits = [f["retry_after"] for f in failures if f["retry_after"] is not None]
            raise TransientStageError(
                f"publish failed for {summary}{suffix}", hint=hints, retry_after=max(waits) if waits else None
            )
        raise PermanentStageError(f"publish failed for {summary}{suffix}", hint=hints)

    ctx.progress(1.0, "Published to " + ", ".join(names))
    return _result(ctx, names, results)


# -- inputs --------------------------------------------------------------------------------------
def build_package(ctx: StageContext) -> Package:
    composition = ctx.output_of("composition")
    video_name = composition.get("video")
    if not video_name:
        raise PermanentStageError("composition output names no video", hint="re-run from composition")
    video = ctx.input_path("composition", str(video_name))
    thumbnail = ctx.input_path("composition", str(composition["thumbnail"])) if composition.get("thumbnail") else None
    return Package(job_id=ctx.job_id, video=video, thumbnail=thumbnail, metadata=build_metadata(ctx, composition))


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


# -- destinations --------------------------------------------------------------------------------
def make_publisher(ctx: StageContext, name: str):
    """A callable ``(package, earlier results, progress) -> result dict`` that records its row."""
    if name == "outbox":
        publisher = OutboxPublisher()

        def outbox(package: Package, earlier: dict, progress) -> dict[str, Any]:
            delivery = publisher.deliver(package)
            progress(0.9, "Recording the publication")
            row, created = _record(
                ctx,
                "outbox",
                external_id=delivery.external_id,
                location=delivery.location,
                meta={"video": delivery.video, "metadata": delivery.metadata, "title": package.metadata["title"]},
            )
            return describe(row, already=not created, reused=delivery.reused)

        return outbox

    if name == "webhook":
        publisher = WebhookPublisher(ctx)

        def webhook(package: Package, earlier: dict, progress) -> dict[str, Any]:
            delivery = publisher.deliver(package, earlier)
            row, created = _record(
                ctx,
                "webhook",
                external_id=delivery.delivery_id,
                location=delivery.url,
                meta={
                    "delivery_id": delivery.delivery_id,
                    "status_code": delivery.status_code,
                    "url": delivery.url,
                    "response": delivery.response_excerpt,
                    "title": package.metadata["title"],
                },
            )
            return describe(row, already=not created)

        return webhook

    if name == "youtube":
        publisher = YouTubePublisher(ctx)

        def youtube(package: Package, earlier: dict, progress) -> dict[str, Any]:
            store = PublicationSessionStore(ctx.job_id, "youtube")
            upload = publisher.upload(package, store, progress=progress)
            row = store.complete(
                external_id=upload.video_id,
                location=upload.url,
                meta={
                    "video_id": upload.video_id,
                    "url": upload.url,
                    "privacy": upload.privacy,
                    "upload_status": upload.upload_status,
                    "resumed": upload.resumed,
                    "bytes": upload.bytes,
                    "title": package.metadata["title"],
                },
            )
            return describe(row, already=False)

        return youtube
    raise PermanentStageError(f"publish provider {name!r} is unknown")  # destination_names checked


def _record(
    ctx: StageContext, destination: str, *, external_id: str, location: str, meta: dict[str, Any]
) -> tuple[Publication, bool]:
    return Publication.objects.get_or_create(
        job_id=ctx.job_id,
        destination=destination,
        defaults={"external_id": external_id, "location": location, "meta": {"state": PUBLISHED, **meta}},
    )


@dataclass
class PublicationSessionStore:
    """The YouTube upload session URI, kept in the job's Publication row (state ``uploading``).

    Why the row and not a file: it is the record every retry already consults, it survives the
    outbox folder being emptied by a consumer, and its unique (job, destination) key makes two
    concurrent attempts collide instead of opening two sessions.
    """

    job_id: int
    destination: str

    def _row(self) -> Publication | None:
        return Publication.objects.filter(job_id=self.job_id, destination=self.destination).first()

    def load(self) -> str | None:
        row = self._row()
        if row is None:
            return None
        if is_done(row):
            raise TransientStageError(f"{self.destination}: another attempt finished the upload meanwhile")
        return (row.meta or {}).get("session") or None

    def save(self, uri: str) -> None:
        meta = {"state": UPLOADING, "session": uri, "started": timezone.now().isoformat()}
        row = self._row()
        if row is not None and not (row.meta or {}).get("session") and not is_done(row):
            row.meta = meta
            row.save(update_fields=["meta"])
            return
        try:
            with transaction.atomic():
                Publication.objects.create(
                    job_id=self.job_id, destination=self.destination, external_id="", location="", meta=meta
                )
        except IntegrityError:
            # Another attempt reserved the upload first: leave it to that one (no byte was sent
            # under our new session, so it never becomes a video); the retry resumes theirs.
            raise TransientStageError(f"{self.destination}: another attempt is uploading this job") from None

    def forget(self) -> None:
        row = self._row()
        if row is not None and not is_done(row):
            row.meta = {"state": UPLOADING, "session": None, "session_expired_at": timezone.now().isoformat()}
            row.save(update_fields=["meta"])

    def complete(self, *, external_id: str, location: str, meta: dict[str, Any]) -> Publication:
        row = self._row()
        if row is None:  # a store that lost its row (deleted by hand): record anyway
            row, _ = Publication.objects.get_or_create(job_id=self.job_id, destination=self.destination)
        row.external_id = external_id
        row.location = location
        row.meta = {"state": PUBLISHED, **meta}
        row.created = timezone.now()
        row.save(update_fields=["external_id", "location", "meta", "created"])
        return row


# -- output --------------------------------------------------------------------------------------
def describe(publication: Publication, *, already: bool, reused: bool = False) -> dict[str, Any]:
    meta = publication.meta or {}
    result: dict[str, Any] = {
        "already_published": already,
        "publication_id": publication.pk,
        "external_id": publication.external_id,
        "location": publication.location,
        "published_at": publication.created.isoformat(),
    }
    if publication.destination == "outbox":
        folder = Path(publication.location) if publication.location else None
        video = meta.get("video") or (str(folder / VIDEO_NAME) if folder else "")
        metadata = meta.get("metadata") or (str(folder / METADATA_NAME) if folder else "")
        result.update(
            video=video,
            metadata=metadata,
            reused_files=reused,
            # Consumers may move files out of the outbox; this says whether they were still there.
            files_present=bool(video) and Path(video).exists() and bool(metadata) and Path(metadata).exists(),
        )
    elif publication.destination == "webhook":
        result.update(
            delivery_id=meta.get("delivery_id", ""), status_code=meta.get("status_code"), url=meta.get("url", "")
        )
    elif publication.destination == "youtube":
        result.update(
            video_id=publication.external_id,
            url=meta.get("url", publication.location),
            privacy=meta.get("privacy", ""),
            upload_status=meta.get("upload_status", ""),
            resumed=bool(meta.get("resumed")),
        )
    return result


def _result(ctx: StageContext, names: list[str], results: dict[str, dict[str, Any]]) -> StageResult:
    main = "outbox" if "outbox" in results else names[0]
    first = results[main]
    output: dict[str, Any] = {
        "destination": main,
        "video": first.get("video", ""),
        "metadata": first.get("metadata", ""),
        "already_published": all(results[n]["already_published"] for n in names),
        "location": first.get("location", ""),
        "publication_id": first.get("publication_id"),
        "reused_files": bool(first.get("reused_files")),
        "files_present": bool(first.get("files_present")),
        "destinations": {n: results[n] for n in names},
    }
    receipt = ctx.work_dir / "publication.json"
    tmp = receipt.with_suffix(".json.part")
    tmp.write_text(json.dumps(output, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(receipt)
    return StageResult(
        output=output,
        artifacts=[ArtifactSpec("publication.json", "json", f"Publication receipt ({', '.join(names)})")],
    )
