"""Stage: trend_collection. Read the theme's sources and upsert what they hold as ``Trend`` rows.

Why it is shaped this way:

* Each source is read on its own (``stages.feeds``). A source that yields garbage is that
  source's error, never the stage's: a bad entry in the theme, an unreachable URL, a body that is
  no feed, even an unexpected exception while parsing is caught for that source, recorded in
  ``output.sources[].error`` with its kind, and the others go on. Bad items inside a good feed are
  skipped and counted by reason (``skipped``). Only when *every* source fails does the stage fail
  (``stages.chain.all_failed``: transient if any failure was transient, else permanent), naming
  each source's reason. A feed that is readable but holds no items is not a failure.
* Rows are upserted on the unique (source, external_id), in bulk, so re-running the stage (a
  retry, a resumed job, the next job of the theme) never duplicates a story; a re-read refreshes
  title, engagement and ``last_seen`` and keeps ``first_seen``.
* An HTTP 304 is not an error and adds nothing new: the stage still lists the stories the feed
  held at its last full read (their rows are looked up and their ``last_seen`` touched), so
  analysis sees the same stories. If those rows are missing, the feed is read again in full.

Sources (``theme.sources``): ``{"name", "url"}`` / ``{"name", "path"}`` feeds (RSS, Atom, RDF,
JSON Feed, Reddit listing JSON, HN JSON), or API kinds ``{"name", "kind": "reddit", "subreddit",
"listing", "limit"}``, ``{"name", "kind": "hackernews", "limit"}``, ``{"name", "kind":
"google_trends", "geo"}`` (see ``stages.feeds``). Every HTTP read is conditional (ETag /
Last-Modified) and guarded (``stages.egress``).

Settings (``theme.settings["trend_collection"]``): ``provider`` ("feeds", the default; "offline"
is accepted as its alias - bundled files are local work), ``timeout`` seconds per HTTP read (10).

Output::

    {"sources": [{"name", "kind", "items", "new", "updated", "skipped", "skip_reasons", "error",
                  "error_kind", "not_modified", "location", "notes"}],
     "trend_ids": [int, ...],  # every story the sources hold now, source order, no repeats
     "count": int, "failed_sources": int}

``error_kind`` is ``transient`` / ``permanent``, or ``unexpected`` for an exception no parser
foresaw (logged with its traceback; the stage treats it as permanent for that source).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import DataError, transaction
from django.utils import timezone

from jobs.models import Trend
from stages.base import ArtifactSpec, PermanentStageError, StageAborted, StageContext, StageError, StageResult
from stages.chain import Registry, all_failed
from stages.feeds import FeedItem, FeedProvider, FeedSource

PROVIDERS = Registry(
    "trend_collection",
    {"feeds": "stages.trend_collection.feed_reader"},
    default="feeds",
    method="read",
    aliases={"offline": "feeds"},
)
_CHUNK = 400  # keeps IN (...) lists under every database's parameter limit
_UPDATE_FIELDS = ["title", "url", "summary", "published", "engagement", "raw", "last_seen"]


class UnexpectedSourceError(PermanentStageError):
    """An exception no parser foresaw, caught for its source so the others go on."""

    kind = "unexpected"


def feed_reader(ctx: StageContext) -> FeedProvider:
    """The default provider: ``stages.feeds.FeedReader`` with the stage's ``timeout``."""
    from stages.feeds import FeedReader

    settings = ctx.stage_settings
    try:
        timeout = float(settings.get("timeout", 10))
    except (TypeError, ValueError):
        raise PermanentStageError(f"trend_collection timeout {settings.get('timeout')!r} is not a number") from None
    if not 0 < timeout <= 120:
        raise PermanentStageError(f"trend_collection timeout {timeout:g}s must be between 0 and 120 seconds")
    return FeedReader(timeout=timeout)


def run(ctx: StageContext) -> StageResult:
    sources = load_sources(ctx.theme)
    names = PROVIDERS.names(ctx)
    if len(names) != 1:
        raise PermanentStageError(
            "trend_collection reads with one provider", hint='set theme.settings.trend_collection.provider to "feeds"'
        )
    reader = PROVIDERS.resolve(ctx, names[0])
    try:
        return collect(ctx, sources, reader)
    finally:
        close = getattr(reader, "close", None)
        if callable(close):
            close()


def load_sources(theme: dict[str, Any]) -> list[FeedSource]:
    """The theme's sources; an entry that is wrong becomes a source that fails with its reason."""
    raw = theme.get("sources") or []
    if not isinstance(raw, list) or not raw:
        raise PermanentStageError(
            f"theme {theme.get('slug') or theme.get('name') or '?'} has no sources",
            hint='add feeds to the theme, e.g. [{"name": "hn", "url": "https://hnrss.org/frontpage"}]',
        )
    sources = []
    for i, item in enumerate(raw):
        try:
            sources.append(FeedSource.from_config(item, i))
        except StageError as exc:
            sources.append(FeedSource.failed(item, i, exc))
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise PermanentStageError(
                f"theme source name {source.name!r} is used twice",
                hint="source names key the stored trends: give each source its own name",
            )
        seen.add(source.name)
    return sources


def _report(source: FeedSource) -> dict[str, Any]:
    return {
        "name": source.name,
        "kind": source.guessed_kind(),
        "items": 0,
        "new": 0,
        "updated": 0,
        "skipped": 0,
        "skip_reasons": {},
        "error": None,
        "error_kind": None,
        "not_modified": False,
        "location": source.location,
        "notes": [],
    }


def _read_one(ctx: StageContext, source: FeedSource, reader: FeedProvider, report: dict[str, Any]) -> list[int]:
    """Read and store one source; returns its trend ids. Every failure is a ``StageError``."""
    try:
        read = reader.read(source)
        report["kind"] = read.kind
        seen_at = timezone.now()
        if read.not_modified:
            ids = touch_known(source.name, read.known_external_ids, seen_at)
            if ids is not None:
                report["not_modified"] = True
                ctx.logger.info("source %s not modified (304); %d known stories", source.name, len(ids))
                return ids
            read = reader.read(source, conditional=False)  # the cache names rows this database lacks
            report["kind"] = read.kind
        report.update(
            skipped=read.skipped.total, skip_reasons=dict(read.skipped.most_common(10)), notes=read.notes[:10]
        )
        if not read.items and read.skipped:
            raise PermanentStageError(
                f"source {source.name}: no usable item, {read.skipped.total} skipped: {read.skipped.summary()}",
                hint="the feed's entries are malformed; check the URL/file",
            )
        if not read.items and not read.entries:
            report["notes"].append("the feed holds no items")
        ids, new, updated = upsert_items(source.name, read.items, seen_at)
        report.update(items=len(read.items), new=new, updated=updated)
        return ids
    except (StageError, StageAborted):
        raise
    except DataError as exc:  # a value the database refused: this source's data, not the database
        raise PermanentStageError(f"source {source.name}: the database refused an item ({exc})") from None
    except Exception as exc:
        ctx.logger.exception("source %s: unexpected error while reading it", source.name)
        raise UnexpectedSourceError(
            f"source {source.name}: unexpected {type(exc).__name__} while reading it: {str(exc)[:200]}",
            hint="this is a bug in reading this kind of feed; the other sources were read; the log has the traceback",
        ) from None


def collect(ctx: StageContext, sources: list[FeedSource], reader: FeedProvider) -> StageResult:
    """Read every source, upsert its items, and report per source (the testable core)."""
    total = len(sources)
    reports: list[dict[str, Any]] = []
    failures: list[StageError] = []
    trend_ids: list[int] = []
    listed: list[dict[str, Any]] = []
    for index, source in enumerate(sources):
        ctx.progress(index / total, f"Reading {source.name} ({index + 1}/{total})")
        report = _report(source)
        reports.append(report)
        try:
            ids = _read_one(ctx, source, reader, report)
        except StageError as exc:
            failures.append(exc)
            report.update(error=exc.message, error_kind=exc.kind)
            ctx.logger.warning("source %s failed (%s): %s", source.name, exc.kind, exc.message)
            ctx.progress((index + 1) / total, f"{source.name}: failed ({exc.kind})")
            continue
        for trend_id in ids:
            if trend_id not in trend_ids:
                trend_ids.append(trend_id)
        listed.append({"source": source.name, "trend_ids": ids})
        done = "not modified" if report["not_modified"] else f"{report['items']} items, {report['new']} new"
        if report["skipped"]:
            done += f", {report['skipped']} skipped"
        ctx.progress((index + 1) / total, f"{source.name}: {done}")

    if len(failures) == total:
        detail = "; ".join(f"{r['name']}: {r['error']}" for r in reports)
        raise all_failed(
            f"all {total} sources failed - {detail}",
            failures,
            hint="the feeds could not be reached; the stage retries with backoff"
            if any(not f.permanent for f in failures)
            else failures[0].hint or "check the theme's sources",
        )

    output = {"sources": reports, "trend_ids": trend_ids, "count": len(trend_ids), "failed_sources": len(failures)}
    if failures:
        names = ", ".join(r["name"] for r in reports if r["error"])
        ctx.progress(1.0, f"{len(trend_ids)} stories; {len(failures)} of {total} sources failed ({names})")
    _write_listing(ctx, output, listed)
    return StageResult(
        output=output, artifacts=[ArtifactSpec("collection.json", "json", "Collected stories by source")]
    )


def upsert_items(source: str, items: list[FeedItem], seen_at: datetime) -> tuple[list[int], int, int]:
    """Insert or refresh one source's items; returns (ids in feed order, new, updated).

    A feed can list the same guid twice: the first entry wins (with the highest engagement seen),
    since one INSERT ... ON CONFLICT may not touch a row twice (PostgreSQL refuses).
    """
    unique: dict[str, FeedItem] = {}
    for item in items:
        kept = unique.get(item.external_id)
        if kept is None:
            unique[item.external_id] = item
        elif item.engagement > kept.engagement:
            kept.engagement = item.engagement
    keys = list(unique)
    if not keys:
        return [], 0, 0
    with transaction.atomic():
        existing: set[str] = set()
        for chunk in _chunks(keys):
            existing.update(
                Trend.objects.filter(source=source, external_id__in=chunk).values_list("external_id", flat=True)
            )
        rows = [
            Trend(
                source=source,
                external_id=key,
                title=item.title,
                url=item.url,
                summary=item.summary,
                published=item.published,
                engagement=min(item.engagement, 2**31 - 1),
                raw=item.raw,
                first_seen=seen_at,
                last_seen=seen_at,
            )
            for key, item in unique.items()
        ]
        # ON CONFLICT DO UPDATE: safe against a parallel job inserting the same story meanwhile.
        Trend.objects.bulk_create(
            rows,
            batch_size=200,
            update_conflicts=True,
            unique_fields=["source", "external_id"],
            update_fields=_UPDATE_FIELDS,
        )
        id_by_key: dict[str, int] = {}
        for chunk in _chunks(keys):
            id_by_key.update(
                Trend.objects.filter(source=source, external_id__in=chunk).values_list("external_id", "id")
            )
    ids = [id_by_key[key] for key in keys]
    new = len(keys) - len(existing)
    return ids, new, len(existing)


def touch_known(source: str, external_ids: list[str], seen_at: datetime) -> list[int] | None:
    """Rows of a not-modified feed, in feed order, ``last_seen`` refreshed; None if any is missing."""
    keys = list(dict.fromkeys(external_ids))
    id_by_key: dict[str, int] = {}
    for chunk in _chunks(keys):
        id_by_key.update(Trend.objects.filter(source=source, external_id__in=chunk).values_list("external_id", "id"))
    if len(id_by_key) != len(keys):
        return None
    ids = [id_by_key[key] for key in keys]
    for chunk in _chunks(ids):
        Trend.objects.filter(id__in=chunk).update(last_seen=seen_at)
    return ids


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _write_listing(ctx: StageContext, output: dict[str, Any], listed: list[dict[str, Any]]) -> None:
    """``collection.json``: the output plus each story's title, for operators reading the run."""
    ids = [i for entry in listed for i in entry["trend_ids"]]
    rows = {
        t["id"]: t
        for chunk in _chunks(ids)
        for t in Trend.objects.filter(id__in=chunk).values("id", "title", "url", "engagement", "published")
    }
    stories = [
        {
            "source": entry["source"],
            "trend_id": trend_id,
            "title": rows[trend_id]["title"],
            "url": rows[trend_id]["url"],
            "engagement": rows[trend_id]["engagement"],
            "published": rows[trend_id]["published"].isoformat() if rows[trend_id]["published"] else None,
        }
        for entry in listed
        for trend_id in entry["trend_ids"]
        if trend_id in rows
    ]
    path = ctx.work_dir / "collection.json"
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps({**output, "stories": stories}, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)
