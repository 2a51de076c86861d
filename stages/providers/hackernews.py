"""Hacker News as a trend source, in every shape it comes in.

* The Firebase API (``{"kind": "hackernews", "limit": 30, "base_url": ...}``): ``topstories.json``
  (a list of ids), then ``item/<id>.json`` for the first ``limit`` ids, a few in parallel, as one
  source; score + descendants are the engagement. ``read_items`` does the second step.
* Item JSON from a ``url``/``path``: a list of Firebase items, one item, or an Algolia search answer
  (``{"hits": [...]}`` with ``objectID``) - recognised because the records *look like* Hacker News
  items (an id and a type, author, score or time), not because a key is called ``items``.
* hnrss-style RSS (``Points: 123`` / ``# Comments: 45`` in the description) goes through the XML
  parser; ``rss_engagement`` reads those lines.

All ids agree: the discussion URL ``https://news.ycombinator.com/item?id=<id>`` (hnrss's guid).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from stages.base import PermanentStageError, StageError
from stages.chain import all_failed
from stages.feeds.items import BadItem, FeedItem, FeedRead, count, from_timestamp, http_url, make_item
from stages.payload import PayloadError, Skips, as_dict, as_list, loads
from stages.text import plain_text

BASE_URL = "https://hacker-news.firebaseio.com/v0"
ITEM_URL = "https://news.ycombinator.com/item?id={}"
CONCURRENCY = 6  # item reads in flight at once for one "hackernews" source
STORY_TYPES = (None, "story", "poll", "job")
ALL_TYPES = ("story", "comment", "job", "poll", "pollopt")
MAX_RECORDS = 1000
_POINTS = re.compile(r"points:\s*(\d{1,12})", re.IGNORECASE)
_COMMENTS = re.compile(r"#\s*comments:\s*(\d{1,12})", re.IGNORECASE)
# hnrss puts these lines in every description; they are metadata, not a summary.
BOILERPLATE = re.compile(r"(article url|comments url):\s*\S+|points:\s*\d+|#\s*comments:\s*\d+", re.IGNORECASE)


def source_url(raw: dict[str, Any], label: str, url: str) -> tuple[str, str, dict[str, Any]]:
    from stages.feeds.sources import check_http_url, limit_setting

    limit = limit_setting(raw, label, 30, 200)
    base = str(raw.get("base_url") or BASE_URL).strip().rstrip("/")
    check_http_url(base, label, what="base_url")
    return f"{base}/topstories.json", "hackernews", {"limit": limit}


# -- item JSON -------------------------------------------------------------------------------------
def _looks_like_item(record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    ident = record.get("id", record.get("objectID"))
    if isinstance(ident, bool) or not isinstance(ident, (int, str)):
        return False
    return record.get("type") in ALL_TYPES or any(k in record for k in ("by", "score", "descendants", "points"))


def records_of(data: Any) -> list[Any] | None:
    """The item records of a Hacker News JSON answer, or None when it is not one."""
    if isinstance(data, dict):
        hits = as_list(data.get("hits"))
        if hits is not None and ("nbHits" in data or any(isinstance(h, dict) and "objectID" in h for h in hits[:5])):
            return hits  # Algolia
        for key in ("items", "stories"):
            records = as_list(data.get(key))
            if records and sum(_looks_like_item(r) for r in records[:10]) >= max(1, len(records[:10]) // 2):
                return records
        return [data] if _looks_like_item(data) and "title" in data else None
    if isinstance(data, list):
        if data and all(isinstance(r, int) and not isinstance(r, bool) for r in data[:50]):
            return data  # ids only: the caller says what to do with them
        if data and sum(_looks_like_item(r) for r in data[:10]) >= max(1, len(data[:10]) // 2):
            return data
    return None


def parse_records(records: list[Any]) -> FeedRead:
    skipped = Skips()
    items: list[FeedItem] = []
    for record in records[:MAX_RECORDS]:
        try:
            item = record_item(record)
        except BadItem as exc:
            skipped.add(str(exc))
            continue
        items.append(item)
    if len(records) > MAX_RECORDS:
        skipped[f"beyond the first {MAX_RECORDS} records"] += len(records) - MAX_RECORDS
    return FeedRead(kind="hn", items=items, skipped=skipped, entries=len(records))


def record_item(record: Any) -> FeedItem:
    """One Firebase or Algolia record as an item; ``BadItem`` for comments, dead posts, junk."""
    if not isinstance(record, dict):
        raise BadItem("record is not an object")
    if record.get("deleted") or record.get("dead"):
        raise BadItem("deleted or dead")
    kind = record.get("type")
    if not isinstance(kind, str | None):
        raise BadItem(f"type is {type(kind).__name__}, not text")
    if kind not in STORY_TYPES:
        raise BadItem(f"not a story ({kind[:10]})")
    raw_id = record.get("id", record.get("objectID"))
    if isinstance(raw_id, str) and raw_id.strip().isdigit() and len(raw_id.strip()) <= 15:
        item_id = int(raw_id)
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool) and 0 < raw_id < 2**53:
        item_id = raw_id
    else:
        raise BadItem("no usable id")
    discussion = ITEM_URL.format(item_id)
    points = count(record.get("score", record.get("points")))
    comments = count(record.get("descendants", record.get("num_comments")))
    title = record.get("title") or record.get("story_title")
    return make_item(
        title=title,
        # The hnrss guid is the discussion URL too: both HN formats agree on ids.
        external_id=discussion,
        url=http_url(record.get("url")) or discussion,
        summary=next((v for v in (record.get("text"), record.get("story_text")) if isinstance(v, str)), ""),
        published=from_timestamp(record.get("time", record.get("created_at_i"))),
        engagement=points + comments,
        raw={
            "kind": "hn",
            "points": points,
            "comments": comments,
            "comments_url": discussion,
            "author": plain_text(record.get("by") or record.get("author"), 100),
        },
        title_from_summary=False,
    )


# -- hnrss RSS -------------------------------------------------------------------------------------
def rss_engagement(description_html: str) -> tuple[int, int, str]:
    """(points, comments, summary without hnrss's boilerplate lines) from an hnrss description."""
    text = html.unescape(plain_text(description_html, 20_000))
    points = _POINTS.search(text)
    comments = _COMMENTS.search(text)
    summary = plain_text(BOILERPLATE.sub(" ", text), 2000)
    return count(points.group(1) if points else 0), count(comments.group(1) if comments else 0), summary


# -- the Firebase API, step two --------------------------------------------------------------------
def read_items(
    source_name: str, ids: list[int], fetch: Callable[[int], bytes], *, on_error: Callable[[str], None]
) -> FeedRead:
    """Read ``item/<id>.json`` for each id (``fetch`` GETs one), a few at a time; keep the ranking.

    One item that fails is skipped and counted; only when every one fails does the source fail
    (transient if any failure was).
    """
    skipped = Skips()
    if not ids:
        return FeedRead(kind="hackernews", items=[], skipped=skipped)

    def one(item_id: int) -> FeedItem | None:
        try:
            record = loads(fetch(item_id), max_bytes=1024 * 1024)
        except PayloadError as exc:
            raise PermanentStageError(
                f"source {source_name}: item {item_id} is not valid JSON ({exc})", hint="check the Hacker News base_url"
            ) from None
        if record is None:  # Firebase answers null for an id it does not have
            return None
        if as_dict(record) is None:
            raise PermanentStageError(f"source {source_name}: item {item_id} is not an object")
        return record_item(record)

    results: dict[int, FeedItem | None] = {}
    errors: list[StageError] = []
    with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(ids))) as pool:
        futures = {pool.submit(one, item_id): item_id for item_id in ids}
        for future in as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except BadItem as exc:
                skipped.add(str(exc))
            except StageError as exc:
                errors.append(exc)
    if errors and len(errors) == len(ids):
        first = errors[0]
        more = f" (and every other of the {len(ids)} items failed too)" if len(ids) > 1 else ""
        raise all_failed(first.message + more, errors, hint=first.hint)
    if errors:
        skipped[f"unreadable item ({errors[0].kind})"] += len(errors)
        on_error(f"{len(errors)} of {len(ids)} Hacker News items could not be read, e.g. {errors[0].message}")
    items = [results[i] for i in ids if results.get(i) is not None]
    return FeedRead(kind="hackernews", items=items, skipped=skipped, entries=len(ids))  # type: ignore[misc]
