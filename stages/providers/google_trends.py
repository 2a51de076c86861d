"""Google Trends' daily RSS as a trend source: search terms with their approximate traffic.

Source: ``{"kind": "google_trends", "geo": "US"}`` reads ``https://trends.google.com/trending/rss?geo=US``
(``url`` may point elsewhere, e.g. a mirror). A document in the ``ht:`` namespace is recognised by
its content too, whatever the source declares. ``ht:approx_traffic`` ("20,000+", "2K+") becomes
the engagement, ``ht:news_item`` articles the url and summary.

Read with ElementTree rather than feedparser, which flattens the nested news items; the document
has been through ``stages.feeds.documents.safe_xml`` first (no DTD, no entity declarations).
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Any
from xml.etree import ElementTree

from stages.base import PermanentStageError
from stages.feeds.items import BadItem, FeedItem, FeedRead, count, fit_id, http_url, make_item
from stages.payload import Skips, as_float
from stages.text import plain_text

URL = "https://trends.google.com/trending/rss?geo={geo}"
NAMESPACE = "https://trends.google.com/trending/rss"
_GEO = re.compile(r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$")
_TRAFFIC = re.compile(r"([\d.,]{1,20})\s*([KkMm]?)")
_SPACE = re.compile(r"\s+")
MAX_ITEMS = 500


def source_url(raw: dict[str, Any], label: str, url: str) -> tuple[str, str, dict[str, Any]]:
    from stages.feeds.sources import check_http_url

    geo = str(raw.get("geo") or "US").strip().upper()
    if not _GEO.match(geo):
        raise PermanentStageError(
            f"theme source {label} has geo {geo[:40]!r}", hint='use a country code such as "US", "GB" or "DE"'
        )
    if url:
        check_http_url(url, label)
    return url or URL.format(geo=geo), f"google-trends-{geo.lower()}", {"geo": geo}


def parse_traffic(value: str) -> int:
    """Google's approximate search volume: "20,000+" -> 20000, "2K+" -> 2000, "1M+" -> 1000000."""
    match = _TRAFFIC.search(value or "")
    if not match:
        return 0
    number = as_float(match.group(1).replace(",", ""))
    if number is None:
        return 0
    return count(number * {"k": 1_000, "m": 1_000_000}.get(match.group(2).lower(), 1))


def is_trends_rss(text: str) -> bool:
    return NAMESPACE in text[:4096]


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1] if isinstance(tag, str) else ""


def _child_text(element: Any, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def parse(xml_text: str, *, geo: str) -> FeedRead:
    """Items of the daily RSS; ``ValueError`` when the document is not that RSS."""
    try:
        root = ElementTree.fromstring(xml_text.encode("utf-8"))
    except ElementTree.ParseError as exc:
        raise ValueError(f"is not a readable feed ({exc})") from None
    channel = next((c for c in root if _local(c.tag) == "channel"), None)
    if _local(root.tag) != "rss" or channel is None:
        raise ValueError("is not an RSS document")
    skipped = Skips()
    items: list[FeedItem] = []
    elements = [e for e in channel if _local(e.tag) == "item"]
    for element in elements[:MAX_ITEMS]:
        try:
            items.append(_item(element, geo))
        except BadItem as exc:
            skipped.add(str(exc))
    return FeedRead(kind="google_trends", items=items, skipped=skipped, entries=len(elements))


def _item(element: Any, geo: str) -> FeedItem:
    title = plain_text(_child_text(element, "title"), 500)
    if not title:
        raise BadItem("no title")
    traffic_text = plain_text(_child_text(element, "approx_traffic"), 40)
    news = []
    for child in element:
        if _local(child.tag) == "news_item" and len(news) < 20:
            news.append(
                {
                    "title": plain_text(_child_text(child, "news_item_title"), 300),
                    "url": http_url(_child_text(child, "news_item_url")),
                    "source": plain_text(_child_text(child, "news_item_source"), 100),
                }
            )
    published = None
    when = _child_text(element, "pubDate")
    if when and len(when) < 64:
        try:
            published = parsedate_to_datetime(when)
        except (TypeError, ValueError, IndexError, OverflowError):
            published = None
    first_url = next((n["url"] for n in news if n["url"]), "")
    normal = _SPACE.sub(" ", title.casefold()).strip()
    return make_item(
        title=title,
        # One row per search term and region: a term trending again refreshes its row.
        external_id=fit_id(f"google-trends:{geo.lower() or 'any'}:{normal}"),
        url=first_url or http_url(_child_text(element, "link")),
        summary=" · ".join(n["title"] for n in news if n["title"]),
        published=published,
        engagement=parse_traffic(traffic_text),
        raw={
            "kind": "google_trends",
            "traffic": traffic_text,
            "geo": geo,
            "news": news[:5],
            "picture": http_url(_child_text(element, "picture")),
            "picture_source": plain_text(_child_text(element, "picture_source"), 100),
        },
    )
