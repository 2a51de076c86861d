"""Reddit as a trend source: a subreddit's listing JSON (score + comments) or its Atom feed.

Source: ``{"kind": "reddit", "subreddit": "technology", "listing": "hot"|"top"|"new"|"rising",
"limit": 25, "period": "day", "base_url": "https://www.reddit.com", "user_agent": "..."}`` reads
``/r/<sub>/<listing>.json`` (Reddit asks for a descriptive User-Agent:
``<platform>:<app id>:<version> (by /u/<name>)``). A ``url``/``path`` source holding a listing is
recognised by its content: ``{"kind": "Listing", "data": {"children": [{"kind": "t3", "data":
{...}}]}}``; the ``.rss`` Atom listing goes through the XML parser (it has no scores).

Every field is read for what it is: a title that is not text, a child that is not a post (``t1``
comments, ``more``), an id that is a list... skips that child with its reason; scores of
``1e999`` are clamped, a ``children`` that is not a list is not a listing.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from stages.base import PermanentStageError
from stages.feeds.items import BadItem, FeedItem, FeedRead, as_id, count, from_timestamp, http_url, make_item
from stages.payload import Skips, as_dict, as_list
from stages.text import plain_text

BASE_URL = "https://www.reddit.com"
LISTINGS = ("hot", "top", "new", "rising")
_SUBREDDIT = re.compile(r"^[A-Za-z0-9_]{2,21}(\+[A-Za-z0-9_]{2,21})*$")
MAX_CHILDREN = 1000


def source_url(raw: dict[str, Any], label: str, url: str) -> tuple[str, str, dict[str, Any]]:
    """The listing URL for a ``{"kind": "reddit", "subreddit": ...}`` source: (url, name, options)."""
    from stages.feeds.sources import check_http_url, limit_setting

    sub = str(raw.get("subreddit") or "").strip().removeprefix("r/").removeprefix("/r/")
    if not _SUBREDDIT.match(sub):
        raise PermanentStageError(
            f"theme source {label} has subreddit {sub[:40]!r}", hint='use the name only, e.g. "technology"'
        )
    listing = str(raw.get("listing") or "hot").strip().lower()
    if listing not in LISTINGS:
        raise PermanentStageError(
            f"theme source {label} has listing {listing[:40]!r}", hint=f"use one of {', '.join(LISTINGS)}"
        )
    limit = limit_setting(raw, label, 25, 100)
    query: dict[str, Any] = {"limit": limit, "raw_json": 1}
    if listing == "top":
        query["t"] = str(raw.get("period") or "day")
    base = str(raw.get("base_url") or BASE_URL).strip().rstrip("/")
    check_http_url(base, label, what="base_url")
    return f"{base}/r/{sub}/{listing}.json?{urlencode(query)}", f"r-{sub.lower()}", {}


def is_listing(data: Any) -> bool:
    """A Reddit listing: ``data.children`` is a list and the document says it is one (``kind``
    Listing) or its children are Reddit "things" (``{"kind": "t3", "data": {...}}``)."""
    inner = as_dict(data.get("data")) if isinstance(data, dict) else None
    children = as_list(inner.get("children")) if inner is not None else None
    if children is None:
        return False
    if data.get("kind") == "Listing":
        return True
    things = [c for c in children[:20] if isinstance(c, dict) and isinstance(c.get("kind"), str) and "data" in c]
    return bool(things) and len(things) == len(children[:20])


def broken_listing(data: Any) -> str:
    """Why a document that says it is a listing is not one ("" when it does not say so)."""
    if not isinstance(data, dict) or data.get("kind") != "Listing":
        return ""
    inner = data.get("data")
    if not isinstance(inner, dict):
        return f"a Reddit listing whose data is {type(inner).__name__}, not an object"
    return f"a Reddit listing whose children is {type(inner.get('children')).__name__}, not a list"


def parse_listing(data: dict[str, Any]) -> FeedRead:
    children = data["data"]["children"]
    skipped = Skips()
    items: list[FeedItem] = []
    for child in children[:MAX_CHILDREN]:
        thing = as_dict(child)
        post = as_dict(thing.get("data")) if thing else None
        if post is None:
            skipped.add("child is not a post object")
            continue
        kind = thing.get("kind")
        if not isinstance(kind, str | None):
            skipped.add(f"kind is {type(kind).__name__}, not text")
            continue
        if kind not in (None, "t3"):
            skipped.add(f"not a post ({kind[:10]})")
            continue
        try:
            items.append(post_item(post))
        except BadItem as exc:
            skipped.add(str(exc))
    if len(children) > MAX_CHILDREN:
        skipped[f"beyond the first {MAX_CHILDREN} posts"] += len(children) - MAX_CHILDREN
    return FeedRead(kind="reddit", items=items, skipped=skipped, entries=len(children))


def post_item(data: dict[str, Any]) -> FeedItem:
    permalink = data.get("permalink") if isinstance(data.get("permalink"), str) else ""
    discussion = http_url(permalink, BASE_URL) if permalink.startswith("/") else http_url(permalink)
    url = http_url(data.get("url_overridden_by_dest")) or http_url(data.get("url")) or discussion
    score = count(data.get("score", data.get("ups")))
    comments = count(data.get("num_comments"))
    name = as_id(data.get("name"))
    post_id = as_id(data.get("id"))
    external_id = name or (f"t3_{post_id}" if post_id else "") or discussion or url
    return make_item(
        title=data.get("title"),
        external_id=external_id,
        url=url,
        summary=data.get("selftext") if isinstance(data.get("selftext"), str) else "",
        published=from_timestamp(data.get("created_utc")),
        engagement=score + comments,
        raw={
            "kind": "reddit",
            "score": score,
            "comments": comments,
            "comments_url": discussion,
            "subreddit": plain_text(data.get("subreddit"), 100),
            "author": plain_text(data.get("author"), 100),
        },
        title_from_summary=False,
    )
