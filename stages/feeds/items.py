"""What a read of one source produces: ``FeedItem``s that are safe to store, and why others were not.

Every parser (RSS/Atom/RDF, JSON Feed, Reddit, Hacker News, Google Trends) builds its items through
``make_item``, so the same rules hold whatever the format: the title is text (a list, a number or
``True`` is not a title), cleaned of markup, entities and invisible characters and cut to the
column's size; links are http(s), resolved against the feed's URL; ids fit their column;
engagement is a finite whole number in range; dates are real dates; ``raw`` is JSON any database
stores. An item that breaks a rule raises ``BadItem`` with the reason, which the parser counts in
``FeedRead.skipped`` and moves on.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stages.payload import Skips, as_float, as_http_url, as_int, json_safe
from stages.text import plain_text

TITLE_MAX = 500  # Trend.title
URL_MAX = 1000  # Trend.url
EXTERNAL_ID_MAX = 500  # Trend.external_id
SUMMARY_MAX = 2000
ENGAGEMENT_MAX = 2**31 - 1  # Trend.engagement is an integer column
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_SPACE = re.compile(r"\s+")


class BadItem(ValueError):
    """An item a parser cannot use; the message is the reason counted in ``FeedRead.skipped``."""


@dataclass
class FeedItem:
    external_id: str
    title: str
    url: str
    summary: str
    published: datetime | None
    engagement: int
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeedRead:
    """What one read of one source produced."""

    kind: str
    items: list[FeedItem]
    not_modified: bool = False
    # On a 304: the external ids the feed held at its last 200 (the stage looks the rows up).
    known_external_ids: list[str] = field(default_factory=list)
    skipped: Skips = field(default_factory=Skips)
    notes: list[str] = field(default_factory=list)  # what the operator should know (encoding guessed...)
    entries: int = 0  # entries the document held, usable or not (0 and no error = an empty feed)


def http_url(value: Any, base: str | None = None) -> str:
    """An absolute http(s) URL that fits ``Trend.url``, resolved against ``base``; "" if there is none."""
    return as_http_url(value, base, max_length=URL_MAX)


def title_hash(title: str) -> str:
    normal = _SPACE.sub(" ", title.casefold()).strip()
    return "sha1:" + hashlib.sha1(normal.encode("utf-8")).hexdigest()


def fit_id(value: str) -> str:
    value = value.replace("\x00", "").strip()
    if len(value) <= EXTERNAL_ID_MAX:
        return value
    return "sha1:" + hashlib.sha1(value.encode("utf-8")).hexdigest()


def as_id(value: Any) -> str:
    """An item id from a payload: text or a whole number; anything else is no id."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def from_timestamp(value: Any) -> datetime | None:
    """A Unix timestamp (seconds) as a date, or None when it is not a plausible one."""
    number = as_float(value)
    if number is None or not math.isfinite(number) or number <= 0:
        return None
    try:
        return sane_date(datetime.fromtimestamp(number, tz=UTC))
    except (OverflowError, OSError, ValueError):
        return None


def sane_date(when: datetime | None) -> datetime | None:
    """``when`` (made aware, UTC if naive) if it lies in 1970-9999, else None."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when if EARLIEST <= when <= LATEST else None
    except (OverflowError, ValueError):
        return None


def make_item(
    *,
    title: Any,
    external_id: str = "",
    url: Any = "",
    summary: Any = "",
    published: datetime | None = None,
    engagement: Any = 0,
    raw: dict[str, Any] | None = None,
    base: str | None = None,
    title_from_summary: bool = True,
) -> FeedItem:
    """A ``FeedItem`` that is safe to store, or ``BadItem`` saying why not."""
    if title is not None and not isinstance(title, str):
        raise BadItem(f"title is {type(title).__name__}, not text")
    summary_text = plain_text(summary, SUMMARY_MAX) if isinstance(summary, str) else ""
    clean_title = plain_text(title, TITLE_MAX)
    if not clean_title and title_from_summary:
        clean_title = plain_text(summary_text, 120)
    if not clean_title:
        raise BadItem("no title")
    link = http_url(url, base)
    ident = fit_id(external_id or link or title_hash(clean_title))
    return FeedItem(
        external_id=ident,
        title=clean_title,
        url=link,
        summary=summary_text,
        published=sane_date(published),
        engagement=as_int(engagement, default=0) or 0,
        raw=json_safe(raw or {}),
    )


def count(value: Any) -> int:
    """An engagement count (points, comments, score) from a payload: finite, clamped, never negative."""
    return as_int(value, low=0, high=ENGAGEMENT_MAX, default=0) or 0
