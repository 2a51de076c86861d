"""Stage: publish. Deliver the approved video to every configured destination, exactly once each.

``theme.settings["publish"]["destinations"]`` lists them (default ``["outbox"]``; the older
``"provider": "outbox"`` still works). This is not a fallback chain: *every* destination must be
delivered. Each is idempotent per (job, destination) through its ``Publication`` row:

1. A finished row for (job, destination) exists -> already delivered; report
   ``already_published=True`` and touch nothing. The row is the truth, not the files: an uploader
   may already have taken the files out of the outbox, and writing them again would publish twice.
2. Otherwise deliver: every destination is a ``Publisher`` (``deliver(package, ctx) -> Delivery``,
   registered in ``PROVIDERS``; outbox: ``stages.providers.outbox``, atomic files, metadata last;
   webhook: ``stages.providers.webhook``, signed POST with a stable delivery id; youtube:
   ``stages.providers.youtube``, resumable upload; tiktok: ``stages.providers.tiktok``, Content
   Posting API direct post, chunked upload; instagram: ``stages.providers.instagram``, a Reels
   container, resumable upload, publish).
3. Record the row (``record``) with ``get_or_create`` (the unique constraint settles a race between
   two attempts; the loser reports ``already_published=True``), or complete the destination's own
   reservation row (YouTube's upload session).

A crash between 2 and 3: the outbox finds its own files and rewrites nothing; the webhook is sent
again with the same ``X-Trendreel-Delivery`` id (receivers dedupe on it); YouTube, TikTok and
Instagram never get that far without a row, because their upload session (YouTube's session URI,
TikTok's publish id and upload URL, Instagram's media container) is stored in the row
(``meta.state = "uploading"``, ``external_id = ""``) *before* the first byte is sent, and the retry
resumes that session (or reads the finished post from it) instead of uploading again. Such a row is
a reservation, not a publication: only ``meta.state == "published"`` (or a row without a state,
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

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
from stages.chain import Registry, all_failed
from stages.payload import as_dict, as_int

METADATA_NAME = "metadata.json"  # the outbox's file names, also read back by ``describe``
VIDEO_NAME = "video.mp4"
LINEAGE_NAME = "lineage.json"
UPLOADING = "uploading"
PUBLISHED = "published"
# How a post's caption opens (TikTok, Instagram): the spoken hook, the title, or the description's
# lead. A pattern the feedback loop (stages.feedback) chooses per job; "title" without one.
CAPTION_STYLES = ("hook", "title", "summary")


@dataclass
class Package:
    """What every destination delivers: the approved video, its thumbnail and metadata."""

    job_id: int
    video: Path
    thumbnail: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Destinations delivered before this one in the run, by name (list the webhook last to send
    # it the YouTube link).
    published: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What shaped the video (``jobs.lineage``): trends, script model and prompt, voice, footage and
    # credits, music, settings, code version, edits. The outbox writes it as ``lineage.json``.
    lineage: dict[str, Any] = field(default_factory=dict)

    def session_store(self, destination: str) -> PublicationSessionStore:
        """Where a resumable destination keeps its upload session between attempts."""
        return PublicationSessionStore(self.job_id, destination)


@dataclass
class Delivery:
    """What a destination did: the Publication row records it (``meta`` is kept in the row)."""

    external_id: str
    location: str
    meta: dict[str, Any] = field(default_factory=dict)
    reused: bool = False  # the same files were already there (an earlier attempt crashed after writing)


class Publisher(Protocol):
    """A publish destination. ``deliver`` must be idempotent per job (see the module docstring);
    it reports progress through ``ctx.progress`` (the stage scales it to the destination's share)."""

    name: str

    def deliver(self, package: Package, ctx: StageContext) -> Delivery: ...


PROVIDERS = Registry(
    "publish",
    {
        "outbox": "stages.providers.outbox.OutboxPublisher",
        "webhook": "stages.providers.webhook.WebhookPublisher",
        "youtube": "stages.providers.youtube.YouTubePublisher",
        "tiktok": "stages.providers.tiktok.TikTokPublisher",
        "instagram": "stages.providers.instagram.InstagramPublisher",
    },
    default="outbox",
    method="deliver",
    setting="destinations",
)


def destination_names(ctx: StageContext) -> list[str]:
    """The destinations, once each, in order (``destinations``, or the older single ``provider``)."""
    return PROVIDERS.names(ctx)


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
    publishers: dict[str, Publisher] = {name: PROVIDERS.resolve(ctx, name) for name in pending}

    ctx.progress(0.05, "Preparing the video and its metadata")
    package = build_package(ctx)

    failures: dict[str, StageError] = {}
    share = 0.9 / len(pending)
    for i, name in enumerate(pending):
        ctx.check_cancelled()
        base = 0.05 + i * share

        def progress(fraction: float, message: str, base: float = base) -> None:
            ctx.report(base + share * max(0.0, min(1.0, fraction)), message)

        part = replace(ctx, report=progress)  # the destination's progress, scaled to its share
        part.progress(0.0, f"Publishing to {name}")
        package.published = {n: r for n, r in results.items() if not r.get("error")}
        try:
            delivery = publishers[name].deliver(package, part)
            part.progress(0.95, "Recording the publication")
            row, created = record(
                ctx, name, delivery, title=package.metadata["title"], patterns=package.metadata.get("patterns")
            )
            results[name] = describe(row, already=not created, reused=delivery.reused)
        except StageAborted:
            raise
        except StageError as exc:
            failures[name] = exc
            results[name] = {"error": exc.message, "kind": exc.kind}
            ctx.logger.warning("publish: %s failed (%s): %s", name, exc.kind, exc.message)

    if failures:
        done = [n for n in names if not results[n].get("error")]
        summary = "; ".join(f"{n}: {e.message}" for n, e in failures.items())
        suffix = f" (delivered, not repeated on retry: {', '.join(done)})" if done else ""
        hints = "; ".join(f"{n}: {e.hint}" for n, e in failures.items() if e.hint)
        raise all_failed(f"publish failed for {summary}{suffix}", list(failures.values()), hint=hints)

    ctx.progress(1.0, "Published to " + ", ".join(names))
    return _result(ctx, names, results)


# -- inputs --------------------------------------------------------------------------------------
def build_package(ctx: StageContext) -> Package:
    """The composition's video and thumbnail, and the metadata every destination publishes."""
    composition = ctx.output_of("composition")
    video_name = composition.get("video")
    if not video_name:
        raise PermanentStageError("composition output names no video", hint="re-run from composition")
    video = ctx.input_path("composition", str(video_name))
    thumbnail = ctx.input_path("composition", str(composition["thumbnail"])) if composition.get("thumbnail") else None
    return Package(
        job_id=ctx.job_id,
        video=video,
        thumbnail=thumbnail,
        metadata=build_metadata(ctx, composition),
        lineage=build_lineage(ctx),
    )


def build_lineage(ctx: StageContext) -> dict[str, Any]:
    """The video's lineage from the checkpoints this publish run sees (``jobs.lineage``)."""
    from jobs import lineage

    return lineage.build(
        job_id=ctx.job_id,
        theme=ctx.theme,
        params=ctx.params,
        outputs=ctx.upstream,
        overrides=ctx.overrides,
        edits=lineage.job_edits(ctx.job_id),
    )


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
    chosen = as_dict((as_dict(analysis.get("patterns")) or {}).get("chosen")) or {}
    caption_style = chosen.get("caption_style") if chosen.get("caption_style") in CAPTION_STYLES else "title"
    return {
        "title": title,
        "hook": str(script.get("hook") or ""),
        "caption_style": caption_style,
        "patterns": made_with(ctx, script, topic, caption_style),
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


def made_with(ctx: StageContext, script: dict[str, Any], topic: dict[str, Any], caption_style: str) -> dict[str, Any]:
    """The patterns this video was actually made with, kept in each Publication row: what
    ``stages.feedback`` weighs against the video's views (hook style, length, caption style,
    voice, topic keywords)."""
    voiceover = ctx.upstream.get("voiceover") or {}
    used = as_dict(script.get("patterns")) or {}
    return {
        "hook": used.get("hook") if isinstance(used.get("hook"), str) else None,
        "length": as_int(script.get("target_seconds"), low=1, high=3600),
        "caption_style": caption_style,
        # the voice as chosen (a feedback option, an edit: "espeak-ng:en-gb"), else as the engine names it
        "voice": str(voiceover.get("voice_choice") or voiceover.get("voice") or ctx.theme.get("voice") or "") or None,
        "keywords": [str(k).lower() for k in (topic.get("keywords") or [])[:5] if isinstance(k, str)],
    }


# -- the record ----------------------------------------------------------------------------------
def record(
    ctx: StageContext, destination: str, delivery: Delivery, *, title: str, patterns: dict[str, Any] | None = None
) -> tuple[Publication, bool]:
    """The destination's Publication row for this delivery: (row, whether this attempt wrote it).

    A new row is created in one statement (the unique constraint settles a race: the loser finds
    the winner's row and reports it as already published). A reservation (YouTube's upload session,
    state ``uploading``) is completed by this delivery.
    """
    meta = {**delivery.meta, "title": title}
    if patterns is not None:
        meta["patterns"] = patterns
    try:
        with transaction.atomic():
            row, created = Publication.objects.get_or_create(
                job_id=ctx.job_id,
                destination=destination,
                defaults={
                    "external_id": delivery.external_id,
                    "location": delivery.location,
                    "meta": {"state": PUBLISHED, **meta},
                },
            )
    except IntegrityError:  # created meanwhile by a parallel attempt
        row, created = Publication.objects.get(job_id=ctx.job_id, destination=destination), False
    if created or is_done(row):
        return row, created
    store = PublicationSessionStore(ctx.job_id, destination)
    return store.complete(external_id=delivery.external_id, location=delivery.location, meta=meta), True


@dataclass
class PublicationSessionStore:
    """A destination's upload session, kept in the job's Publication row (state ``uploading``):
    YouTube's session URI, TikTok's publish id and upload URL, Instagram's media container and how
    far it got (a JSON object).

    Why the row and not a file: it is the record every retry already consults, it survives the
    outbox folder being emptied by a consumer, and its unique (job, destination) key makes two
    concurrent attempts collide instead of opening two sessions.
    """

    job_id: int
    destination: str

    def _row(self) -> Publication | None:
        return Publication.objects.filter(job_id=self.job_id, destination=self.destination).first()

    def load(self) -> Any:
        row = self._row()
        if row is None:
            return None
        if is_done(row):
            raise TransientStageError(f"{self.destination}: another attempt finished the upload meanwhile")
        return (row.meta or {}).get("session") or None

    def update(self, session: dict[str, Any]) -> None:
        """A kept session's progress (a step done, a step about to be asked for), durable on return:
        written before the step it announces, so a crash after it is read by the retry."""
        row = self._row()
        if row is None or is_done(row) or not (row.meta or {}).get("session"):
            raise TransientStageError(f"{self.destination}: the upload session was finished or dropped meanwhile")
        row.meta = {**row.meta, "session": session}
        row.save(update_fields=["meta"])

    def save(self, uri: str | dict[str, Any]) -> None:
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
    elif publication.destination in ("youtube", "tiktok", "instagram"):
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
