"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1): a feed format of its own, recognised by
its ``version`` URL, never taken for a Hacker News list because it has ``items``.

Items: ``id`` (the external id), ``title`` (optional in JSON Feed: microblog posts have none, the
text's start stands in), ``url`` / ``external_url`` (relative ones resolved against ``feed_url``,
``home_page_url`` or the source's URL), ``content_text`` / ``content_html`` / ``summary``,
``date_published`` / ``date_modified`` (RFC 3339), ``authors`` (1.1) or ``author`` (1.0), ``tags``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stages.feeds.documents import DocumentError
from stages.feeds.items import BadItem, FeedItem, FeedRead, as_id, http_url, make_item
from stages.payload import Skips, as_dict, as_list
from stages.text import plain_text

VERSION_PREFIX = "https://jsonfeed.org/version/"
MAX_ITEMS = 2000


def is_json_feed(data: Any) -> bool:
    version = data.get("version") if isinstance(data, dict) else None
    return isinstance(version, str) and version.strip().lower().rstrip("/").startswith(VERSION_PREFIX.rstrip("/"))


def _date(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _author(entry: dict[str, Any]) -> str:
    authors = as_list(entry.get("authors")) or [entry.get("author")]
    for author in authors:
        name = plain_text((as_dict(author) or {}).get("name"), 200)
        if name:
            return name
    return ""


def parse(data: dict[str, Any], *, base: str | None) -> FeedRead:
    items_value = data.get("items")
    entries = as_list(items_value)
    if entries is None:
        raise DocumentError(
            f"is a JSON Feed whose items is {type(items_value).__name__}, not a list", hint="check the feed's JSON"
        )
    base = http_url(data.get("feed_url"), base) or http_url(data.get("home_page_url"), base) or base
    skipped = Skips()
    items: list[FeedItem] = []
    for entry in entries[:MAX_ITEMS]:
        if not isinstance(entry, dict):
            skipped.add("item is not an object")
            continue
        try:
            items.append(_item(entry, base))
        except BadItem as exc:
            skipped.add(str(exc))
    if len(entries) > MAX_ITEMS:
        skipped["beyond the first 2000 items"] += len(entries) - MAX_ITEMS
    version = str(data.get("version")).rstrip("/").rsplit("/", 1)[-1][:8]
    notes = [f"JSON Feed {version}"]
    return FeedRead(kind="jsonfeed", items=items, skipped=skipped, notes=notes, entries=len(entries))


def _item(entry: dict[str, Any], base: str | None) -> FeedItem:
    link = http_url(entry.get("url"), base) or http_url(entry.get("external_url"), base)
    text = next(
        (v for v in (entry.get("summary"), entry.get("content_text"), entry.get("content_html")) if isinstance(v, str)),
        "",
    )
    tags = [t for t in as_list(entry.get("tags")) or [] if isinstance(t, str)][:10]
    raw: dict[str, Any] = {"kind": "jsonfeed"}
    author = _author(entry)
    if author:
        raw["author"] = author
    if tags:
        raw["tags"] = [plain_text(t, 60) for t in tags]
    external = http_url(entry.get("external_url"), base)
    if external and external != link:
        raw["external_url"] = external
    return make_item(
        title=entry.get("title"),
        external_id=as_id(entry.get("id")),
        url=link,
        summary=text,
        published=_date(entry.get("date_published")) or _date(entry.get("date_modified")),
        raw=raw,
        base=base,
    )
