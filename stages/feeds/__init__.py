"""Trend sources for trend_collection: which sources a theme names, how they are fetched and parsed.

* ``sources``: ``FeedSource`` (a theme's entry, validated; local paths confined to allowed folders);
* ``reader``: ``FeedReader`` (files and http(s), conditional, size-capped, guarded) - the stage's
  ``FeedProvider``;
* ``cache``: the ETag / Last-Modified memory behind conditional requests;
* ``documents``: sniffing, encodings and safe XML;
* ``parsers``: format detection and RSS/Atom/RDF; ``jsonfeed``: JSON Feed 1.0/1.1; the vendors
  (Reddit, Hacker News, Google Trends) live in ``stages.providers``;
* ``items``: ``FeedItem`` / ``FeedRead`` and the rules every parsed item obeys.
"""

from __future__ import annotations

from stages.feeds.items import FeedItem, FeedRead
from stages.feeds.parsers import parse_feed
from stages.feeds.reader import FeedProvider, FeedReader
from stages.feeds.sources import FeedSource, redact_url

__all__ = ["FeedItem", "FeedProvider", "FeedRead", "FeedReader", "FeedSource", "parse_feed", "redact_url"]
