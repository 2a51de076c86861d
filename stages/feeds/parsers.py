"""Parse one source's body into ``FeedItem``s: detect the format from the content, then read it.

``parse_feed`` is the one entry point. The document is sniffed and decoded
(``stages.feeds.documents``), then:

* JSON: a JSON Feed (``stages.feeds.jsonfeed``), a Reddit listing (``stages.providers.reddit``) or
  Hacker News items (``stages.providers.hackernews``), each recognised by its shape;
* XML: the Google Trends daily RSS (``stages.providers.google_trends``, by its namespace or the
  source's kind), else RSS 0.9x/1.0/2.0, RDF and Atom through feedparser, after ``safe_xml``.
  ``slash:comments`` and ``thr:total`` count as engagement, hnrss descriptions give points and
  comments. Relative links resolve against ``xml:base`` and the feed's URL (feedparser does both
  given the URL as Content-Location), or the channel's own link for a local file.

A body that is not a feed (empty, binary, an HTML page, JSON or XML of another kind) is a
``PermanentStageError`` naming the source. A feed with no entries is not an error: its ``FeedRead``
has no items and ``entries == 0``. Entries that cannot be used are skipped and counted by reason.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from typing import Any

import feedparser

from stages.base import PermanentStageError
from stages.feeds import jsonfeed
from stages.feeds.documents import Document, DocumentError, root_name, safe_xml
from stages.feeds.items import BadItem, FeedItem, FeedRead, as_id, count, http_url, make_item
from stages.feeds.sources import FeedSource
from stages.payload import PayloadError, Skips, loads
from stages.providers import google_trends, hackernews, reddit
from stages.text import plain_text

logger = logging.getLogger("trendreel.feeds")

MAX_ENTRIES = 2000
# feedparser flags these as "bozo" although the document was read fine.
_BENIGN_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
_HINT = "open the URL/file and check it is RSS, Atom, a JSON Feed, a Reddit listing or Hacker News items"


def _error(source: FeedSource, what: str, hint: str = _HINT) -> PermanentStageError:
    return PermanentStageError(f"source {source.name}: {source.location} {what}", hint=hint)


def parse_feed(source: FeedSource, content: bytes, *, content_type: str = "", base: str | None = None) -> FeedRead:
    """Parse a body into items; ``PermanentStageError`` (naming the source) if it is not a feed."""
    base = base or (source.url or None)
    try:
        doc = Document.read(content, content_type)
    except DocumentError as exc:
        raise _error(source, f"is not a readable feed ({exc})", exc.hint or _HINT) from None
    if source.kind == "google_trends" or (doc.kind == "xml" and google_trends.is_trends_rss(doc.text)):
        read = _parse_google_trends(source, doc)
    elif doc.kind == "json":
        read = _parse_json(source, doc, base)
    elif doc.kind == "xml":
        read = _parse_xml(source, doc, base)
    elif doc.kind == "html":
        link = doc.feed_link()
        hint = f"its feed is linked from the page: {link}" if link else "point the source at the site's RSS/Atom feed"
        raise _error(source, "is not a readable feed (an HTML page, not a feed)", hint)
    else:
        raise _error(source, "is not a readable feed (plain text: neither XML nor JSON)")
    read.notes = doc.notes + read.notes
    return read


# -- JSON ----------------------------------------------------------------------------------------
def _parse_json(source: FeedSource, doc: Document, base: str | None) -> FeedRead:
    try:
        data = loads(doc.text)
    except PayloadError as exc:
        raise _error(source, f"is not valid JSON ({exc})", "check that the URL/file is a feed in JSON") from None
    if jsonfeed.is_json_feed(data):
        try:
            read = jsonfeed.parse(data, base=base)
        except DocumentError as exc:
            raise _error(source, str(exc), exc.hint) from None
    elif reddit.is_listing(data):
        read = reddit.parse_listing(data)
    else:
        records = hackernews.records_of(data)
        if records is None:
            why = reddit.broken_listing(data)
            raise _error(
                source,
                "is JSON but neither a Reddit listing, a JSON Feed nor Hacker News items"
                + (f" (it is {why})" if why else ""),
                'expected {"version": "https://jsonfeed.org/version/1.1", "items": [...]} (JSON Feed), '
                '{"kind": "Listing", "data": {"children": [...]}} (Reddit) or a list of HN items / '
                '{"hits": [...]} (Algolia)',
            )
        if records and all(isinstance(r, int) and not isinstance(r, bool) for r in records):
            raise _error(
                source,
                "lists only item ids (like topstories.json)",
                'point the source at item objects, e.g. hnrss.org/frontpage, or use {"kind": "hackernews"}',
            )
        read = hackernews.parse_records(records)
    return read


# -- Google Trends ---------------------------------------------------------------------------------
def _parse_google_trends(source: FeedSource, doc: Document) -> FeedRead:
    if doc.kind != "xml":
        raise _error(source, f"is not a readable feed (it is {doc.kind}, not the Google Trends RSS)", _trends_hint())
    try:
        text, notes = safe_xml(doc.text)
        read = google_trends.parse(text, geo=str(source.options.get("geo") or ""))
    except DocumentError as exc:
        raise _error(source, str(exc), exc.hint) from None
    except ValueError as exc:
        raise _error(source, str(exc), _trends_hint()) from None
    read.notes = notes + read.notes
    return read


def _trends_hint() -> str:
    return "expected the Google Trends daily RSS (https://trends.google.com/trending/rss?geo=US)"


# -- RSS / Atom / RDF ------------------------------------------------------------------------------
def _parse_xml(source: FeedSource, doc: Document, base: str | None) -> FeedRead:
    try:
        text, notes = safe_xml(doc.text)
    except DocumentError as exc:
        raise _error(source, str(exc), exc.hint) from None
    # No Content-Location: feedparser would resolve <id>s against it too, and ids must not change.
    # Relative links are resolved below (xml:base inside the document feedparser applies itself).
    headers = {"content-type": "application/xml; charset=utf-8"}
    # A stream, never bytes: feedparser opens a bytes/str argument as a file name (or URL) if it
    # can, and a feed body must never make us read a local file.
    parsed = feedparser.parse(io.BytesIO(text.encode("utf-8")), response_headers=headers, sanitize_html=True)
    entries = parsed.get("entries") or []
    version = parsed.get("version") or ""
    bozo_exc = parsed.get("bozo_exception")
    bozo = bool(parsed.get("bozo")) and not isinstance(bozo_exc, _BENIGN_BOZO)
    if not entries and (bozo or not version):
        if bozo:
            reason = str(bozo_exc)[:200]
        else:
            reason = f"XML, but not RSS, Atom or RDF: its root element is <{root_name(text)[:40] or '?'}>"
        raise _error(source, f"is not a readable feed ({reason})")
    if bozo:
        notes.append(f"malformed XML ({str(bozo_exc)[:120]}); read leniently")
        logger.warning("source %s: feed is malformed (%s); kept %d entries", source.name, bozo_exc, len(entries))
    feed = parsed.get("feed") or {}
    channel_link = http_url(feed.get("link"), base)
    kind = source.kind if source.kind in ("rss", "atom", "reddit", "hn") else _detect_xml_kind(parsed, version)
    skipped = Skips()
    items: list[FeedItem] = []
    for entry in entries[:MAX_ENTRIES]:
        try:
            items.append(_entry_item(entry, kind, base or channel_link or None))
        except BadItem as exc:
            skipped.add(str(exc))
    if len(entries) > MAX_ENTRIES:
        skipped[f"beyond the first {MAX_ENTRIES} entries"] += len(entries) - MAX_ENTRIES
    return FeedRead(kind=kind, items=items, skipped=skipped, notes=notes, entries=len(entries))


def _detect_xml_kind(parsed: Any, version: str) -> str:
    feed = parsed.get("feed") or {}
    hosts = " ".join(
        [str(feed.get("link") or ""), str(feed.get("id") or "")]
        + [
            str(e.get("comments") or "") + " " + str(e.get("link") or "") + " " + str(e.get("id") or "")
            for e in parsed.entries[:5]
        ]
    ).lower()
    if "news.ycombinator.com" in hosts or "hnrss" in hosts:
        return "hn"
    if "reddit.com" in hosts:
        return "reddit"
    return "atom" if version.startswith("atom") else "rss"


def _published(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        when = entry.get(key)
        if when:
            try:
                return datetime(*when[:6], tzinfo=UTC)
            except (TypeError, ValueError, OverflowError):
                continue
    return None


def _entry_item(entry: Any, kind: str, base: str | None) -> FeedItem:
    summary_html = entry.get("summary")
    if not isinstance(summary_html, str) or not summary_html:
        content = entry.get("content")
        first = content[0] if isinstance(content, list) and content else None
        summary_html = first.get("value") if hasattr(first, "get") else ""
    summary_html = summary_html if isinstance(summary_html, str) else ""
    raw: dict[str, Any] = {"kind": kind}
    engagement = 0
    summary: str = summary_html
    if kind == "hn":
        points, comments, summary = hackernews.rss_engagement(summary_html)
        raw.update(points=points, comments=comments)
        engagement = points + comments
    for key in ("slash_comments", "thr_total"):
        if entry.get(key) is not None and "comments" not in raw:
            raw["comments"] = count(entry.get(key))
            engagement += raw["comments"]
    comments_url = http_url(entry.get("comments"), base)
    if comments_url:
        raw["comments_url"] = comments_url
    author = plain_text(entry.get("author"), 200)
    if author:
        raw["author"] = author
    link = http_url(entry.get("link"), base)
    return make_item(
        title=entry.get("title") if entry.get("title") is not None else "",
        external_id=as_id(entry.get("id")) or link,
        url=link,
        summary=summary,
        published=_published(entry),
        engagement=engagement,
        raw=raw,
        base=base,
    )
