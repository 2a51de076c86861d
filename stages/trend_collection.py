"""Stage: trend_collection. Read the theme's feeds and upsert what they hold as ``Trend`` rows.

Why it is shaped this way:

* Each source is read on its own (``stages.providers.feeds``). One broken source must not cost the
  job the others: its error is recorded in the output and the stage goes on. Only when *every*
  source fails does the stage fail - transient if any failure was transient (a retry may help),
  else permanent.
* Rows are upserted on the unique (source, external_id), in bulk, so re-running the stage (a
  retry, a resumed job, the next job of the theme) never duplicates a story; a re-read refreshes
  title, engagement and ``last_seen`` and keeps ``first_seen``.
* An HTTP 304 is not an error and adds nothing new: the stage still lists the stories the feed
  held at its last full read (their rows are looked up and their ``last_seen`` touched), so
  analysis sees the same stories. If those rows are missing, the feed is read again in full.

Sources (``theme.sources``): ``{"name", "url"}`` / ``{"name", "path"}`` feeds (RSS, Atom, Reddit
listing JSON, HN JSON), or API kinds ``{"name", "kind": "reddit", "subreddit", "listing", "limit"}``,
``{"name", "kind": "hackernews", "limit"}``, ``{"name", "kind": "google_trends", "geo"}`` (see
``stages.providers.feeds``). Every HTTP read is conditional (ETag / Last-Modified).

Settings (``theme.settings["trend_collection"]``): ``provider`` ("feeds", the default; "offline"
is accepted as its alias - bundled files are local work), ``timeout`` seconds per HTTP read (10).

Output::

    {"sources": [{"name", "kind", "items", "new", "updated", "error", "not_modified", "location"}],
     "trend_ids": [int, ...],  # every story the sources hold now, source order, no repeats
     "count": int}
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from jobs.models import Trend
from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageError, StageResult, TransientStageError
from stages.providers.feeds import FeedItem, FeedProvider, FeedReader, FeedSource

PROVIDERS = ("feeds", "offline")
_CHUNK = 400  # keeps IN (...) lists under every database's parameter limit
_UPDATE_FIELDS = ["title", "url", "summary", "published", "engagement", "raw", "last_seen"]


def run(ctx: StageContext) -> StageResult:
    sources = load_sources(ctx.theme)
    settings = ctx.stage_settings
    provider_name = str(settings.get("provider") or "feeds")
    if provider_name not in PROVIDERS:
        raise PermanentStageError(
            f"trend_collection provider {provider_name!r} is unknown",
            hint=f"set theme.settings.trend_collection.provider to one of: {', '.join(PROVIDERS)}",
        )
    try:
        timeout = float(settings.get("timeout", 10))
    except (TypeError, ValueError):
        raise PermanentStageError(f"trend_collection timeout {settings.get('timeout')!r} is not a number") from None
    if not 0 < timeout <= 120:
        raise PermanentStageError(f"trend_collection timeout {timeout:g}s must be between 0 and 120 seconds")
    with FeedReader(timeout=timeout) as reader:
        return collect(ctx, sources, reader)


def load_sources(theme: dict[str, Any]) -> list[FeedSource]:
    raw = theme.get("sources") or []
    if not isinstance(raw, list) or not raw:
        raise PermanentStageError(
            f"theme {theme.get('slug') or theme.get('name') or '?'} has no sources",
            hint='add feeds to the theme, e.g. [{"name": "hn", "url": "https://hnrss.org/frontpage"}]',
        )
    sources = [FeedSource.from_config(item, i) for i, item in enumerate(raw)]
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise PermanentStageError(
                f"theme source name {source.name!r} is used twice",
                hint="source names key the stored trends: give each source its own name",
            )
        seen.add(source.name)
    return sources


def collect(ctx: StageContext, sources: list[FeedSource], reader: FeedProvider) -> StageResult:
    """Read every source, upsert its items, and report per source (the testable core)."""
    total = len(sources)
    reports: list[dict[str, Any]] = []
    failures: list[StageError] = []
    trend_ids: list[int] = []
    listed: list[dict[str, Any]] = []
    for index, source in enumerate(sources):
        ctx.progress(index / total, f"Reading {source.name} ({index + 1}/{total})")
        report: dict[str, Any] = {
            "name": source.name,
            "kind": source.guessed_kind(),
            "items": 0,
            "new": 0,
            "updated": 0,
            "error": None,
            "not_modified": False,
            "location": source.location,
        }
        reports.append(report)
        try:
            read = reader.read(source)
            report["kind"] = read.kind
            seen_at = timezone.now()
            if read.not_modified:
                ids = touch_known(source.name, read.known_external_ids, seen_at)
                if ids is None:  # the cache names rows this database lacks: read in full
                    read = reader.read(source, conditional=False)
                    report["kind"] = read.kind
                else:
                    report["not_modified"] = True
                    ctx.logger.info("source %s not modified (304); %d known stories", source.name, len(ids))
            if not report["not_modified"]:
                ids, new, updated = upsert_items(source.name, read.items, seen_at)
                report.update(items=len(read.items), new=new, updated=updated)
        except StageError as exc:
            failures.append(exc)
            report["error"] = exc.message
            ctx.logger.warning("source %s failed: %s", source.name, exc.message)
            ctx.progress((index + 1) / total, f"{source.name}: failed ({exc.kind})")
            continue
        for trend_id in ids:
            if trend_id not in trend_ids:
                trend_ids.append(trend_id)
        listed.append({"source": source.name, "trend_ids": ids})
        done = "not modified" if report["not_modified"] else f"{report['items']} items, {report['new']} new"
        ctx.progress((index + 1) / total, f"{source.name}: {done}")

    if len(failures) == total:
        detail = "; ".join(f"{r['name']}: {r['error']}" for r in reports)
        retry_after = max((f.retry_after or 0.0 for f in failures), default=0.0) or None
        if any(not f.permanent for f in failures):
            raise TransientStageError(
                f"all {total} sources failed - {detail}",
                hint="the feeds could not be reached; the stage retries with backoff",
                retry_after=retry_after,
            )
        raise PermanentStageError(
            f"all {total} sources failed - {detail}",
            hint=failures[0].hint or "check the theme's sources",
        )

    output = {"sources": reports, "trend_ids": trend_ids, "count": len(trend_ids)}
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
