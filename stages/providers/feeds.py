"""Feed reading for trend_collection: fetch one source and turn it into plain ``FeedItem``s.

Why a module of its own: the stage (``stages/trend_collection.py``) only decides *what* to read
and how to store it; everything about *how* a feed is fetched and understood lives here, behind
the small ``FeedProvider`` protocol, so a test or a future vendor client can stand in for it.

Formats understood (the theme's ``kind`` may name one; otherwise it is detected):

* RSS 0.9x/1.0/2.0 and Atom, through feedparser (``slash:comments`` and ``thr:total`` count as
  engagement);
* Reddit: the ``.rss``/Atom listing (no scores in it) and the listing JSON
  ``{"data": {"children": [{"data": {...}}]}}`` (score + comments);
* Hacker News: hnrss-style RSS (``Points: 123`` / ``# Comments: 45`` in the description), Firebase
  item JSON (a list of items, or ``{"items": [...]}``) and Algolia search JSON (``{"hits": [...]}``).

API sources name a ``kind`` instead of a URL (the URL is built; ``base_url`` moves it, for tests or
a mirror): ``{"kind": "reddit", "subreddit": "technology", "listing": "hot"|"top"|"new"|"rising",
"limit": 25}`` reads ``/r/<sub>/<listing>.json`` (score + comments); ``{"kind": "hackernews",
"limit": 30}`` reads the Firebase API's ``topstories.json`` and then ``item/<id>.json`` for the
first ``limit`` ids (a few in parallel; one source; score + descendants); ``{"kind":
"google_trends", "geo": "US"}`` reads the daily RSS (``ht:approx_traffic`` "20,000+" becomes the
engagement, ``ht:news_item`` articles the url and summary). An optional ``user_agent`` replaces
the default descriptive one (Reddit asks for ``<platform>:<app id>:<version> (by /u/<name>)``).

Sources are bundled files (a relative ``path`` resolves against ``stages/assets/``; absolute paths
work too) or ``http(s)`` URLs fetched with httpx. Each GET gets short in-call retries for 429/5xx/
connection errors (the policy of ``stages.providers.http``: a short ``Retry-After`` is waited, a
long one goes to the orchestrator); timeouts are left to the stage's retry. HTTP fetches are conditional: the ETag and
Last-Modified of the last good response are remembered per URL in a small JSON file under
``settings.VAR_DIR/feed-cache/`` (one file per URL, written atomically, so parallel jobs never
fight over one shared file). A file rather than a marker ``Trend`` row keeps fake rows out of the
trend lists; the cache also remembers which item ids the feed held, so a 304 can hand the stage
the stories it already stored. If those rows are gone (a fresh database), the stage simply asks
again without validators, so a stale cache can never hide a feed.

Errors are the stage's own: ``TransientStageError`` for timeouts, connection errors, 429 and 5xx;
``PermanentStageError`` for 4xx, bad configuration and bodies that are not a feed. Every message
names the source.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import logging
import math
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import feedparser
import httpx
from django.conf import settings
from django.utils.html import strip_tags

from stages.base import PermanentStageError, StageError, TransientStageError
from stages.providers import http

logger = logging.getLogger("trendreel.feeds")

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
# Formats a feed body may have (declared or detected) and the API kinds a source may name instead
# of a URL: "reddit" with a "subreddit", "hackernews" (Firebase API), "google_trends" (daily RSS).
KINDS = ("rss", "atom", "reddit", "hn", "hackernews", "google_trends")
API_KINDS = ("reddit", "hackernews", "google_trends")
REDDIT_BASE = "https://www.reddit.com"
REDDIT_LISTINGS = ("hot", "top", "new", "rising")
HN_API_BASE = "https://hacker-news.firebaseio.com/v0"
HN_CONCURRENCY = 6  # item reads in flight at once for one "hackernews" source
GOOGLE_TRENDS_URL = "https://trends.google.com/trending/rss?geo={geo}"
_SUBREDDIT = re.compile(r"^[A-Za-z0-9_]{2,21}(\+[A-Za-z0-9_]{2,21})*$")
_GEO = re.compile(r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$")
USER_AGENT = "Trendreel/1.0 (trend collection; +https://github.com/trendreel)"
MAX_BYTES = 10 * 1024 * 1024  # a feed bigger than this is a mistake, not a feed
TITLE_MAX = 500  # Trend.title
URL_MAX = 1000  # Trend.url
EXTERNAL_ID_MAX = 500  # Trend.external_id
SUMMARY_MAX = 2000
HN_ITEM_URL = "https://news.ycombinator.com/item?id={}"

# feedparser flags these as "bozo" although the document was read fine.
_BENIGN_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
_HN_POINTS = re.compile(r"points:\s*(\d+)", re.IGNORECASE)
_HN_COMMENTS = re.compile(r"#\s*comments:\s*(\d+)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# hnrss puts these lines in every description; they are metadata, not a summary.
_HN_BOILERPLATE = re.compile(r"(article url|comments url):\s*\S+|points:\s*\d+|#\s*comments:\s*\d+", re.IGNORECASE)


# -- data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeedSource:
    """One entry of ``theme.sources``, validated."""

    name: str
    kind: str | None  # declared kind, None = detect from the content
    url: str = ""
    path: Path | None = None
    location: str = ""  # as written in the theme (for messages and the output)
    # API sources: "hackernews" (read in two steps) or "" (one document: file or URL).
    api: str = ""
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_http(self) -> bool:
        return bool(self.url)

    @classmethod
    def from_config(cls, raw: Any, index: int) -> FeedSource:
        """Validate one source dict; ``PermanentStageError`` names the entry that is wrong."""
        if not isinstance(raw, dict):
            raise PermanentStageError(
                f"theme source #{index + 1} is not an object: {raw!r}",
                hint='each source looks like {"name": "hn", "url": "https://…"} or {"name": "x", "path": "feeds/x.xml"}',
            )
        url = str(raw.get("url") or "").strip()
        path_value = str(raw.get("path") or "").strip()
        name = str(raw.get("name") or "").strip()
        label = name or f"#{index + 1}"
        declared = str(raw.get("kind") or "").strip().lower()
        api = declared in API_KINDS and not path_value and (not url or declared == "google_trends")
        if api and (declared != "reddit" or raw.get("subreddit")):
            return cls._api_source(raw, declared, name, label, url)
        if bool(url) == bool(path_value):
            raise PermanentStageError(
                f"theme source {label} needs exactly one of 'url' or 'path'",
                hint="give an http(s) URL or a file path (relative paths resolve against stages/assets/)",
            )
        kind = raw.get("kind")
        if kind is not None:
            kind = str(kind).strip().lower() or None
        if kind is not None and kind not in KINDS:
            raise PermanentStageError(
                f"theme source {label} has unknown kind {kind!r}",
                hint=f"use one of {', '.join(KINDS)}, or leave 'kind' out to detect it",
            )
        if url:
            scheme = urlsplit(url).scheme.lower()
            if scheme not in ("http", "https"):
                raise PermanentStageError(
                    f"theme source {label} has URL {redact_url(url)!r} with unsupported scheme {scheme or '(none)'!r}",
                    hint="use an http(s) URL, or a 'path' for a local file",
                )
            if not name:
                name = urlsplit(url).hostname or url
            return cls(name=name[:200], kind=kind, url=url, location=redact_url(url))
        path = Path(path_value).expanduser()
        if not path.is_absolute():
            path = ASSETS_DIR / path
        if not name:
            name = path.stem
        return cls(name=name[:200], kind=kind, path=path, location=path_value)

    @classmethod
    def _api_source(cls, raw: dict[str, Any], kind: str, name: str, label: str, url: str) -> FeedSource:
        """A source named by its API kind: the URL is built from the entry's fields."""

        def base(default: str) -> str:
            value = str(raw.get("base_url") or default).strip().rstrip("/")
            if urlsplit(value).scheme.lower() not in ("http", "https"):
                raise PermanentStageError(
                    f"theme source {label} has base_url {redact_url(value)!r} that is not http(s)",
                    hint=f"leave base_url out to use {default}",
                )
            return value

        def limit(default: int, top: int) -> int:
            value = raw.get("limit", default)
            try:
                number = int(value)
            except (TypeError, ValueError):
                number = 0
            if not 1 <= number <= top:
                raise PermanentStageError(
                    f"theme source {label} has limit {value!r}", hint=f"use a whole number from 1 to {top}"
                )
            return number

        ua = str(raw.get("user_agent") or "").strip()
        options: dict[str, Any] = {"user_agent": ua} if ua else {}
        if kind == "reddit":
            sub = str(raw.get("subreddit") or "").strip().removeprefix("r/").removeprefix("/r/")
            if not _SUBREDDIT.match(sub):
                raise PermanentStageError(
                    f"theme source {label} has subreddit {sub!r}", hint='use the name only, e.g. "technology"'
                )
            listing = str(raw.get("listing") or "hot").strip().lower()
            if listing not in REDDIT_LISTINGS:
                raise PermanentStageError(
                    f"theme source {label} has listing {listing!r}", hint=f"use one of {', '.join(REDDIT_LISTINGS)}"
                )
            query = {"limit": limit(25, 100), "raw_json": 1}
            if listing == "top":
                query["t"] = str(raw.get("period") or "day")
            url = f"{base(REDDIT_BASE)}/r/{sub}/{listing}.json?{urlencode(query)}"
            name = name or f"r-{sub.lower()}"
        elif kind == "hackernews":
            url = f"{base(HN_API_BASE)}/topstories.json"
            options["limit"] = limit(30, 200)
            name = name or "hackernews"
        else:  # google_trends
            geo = str(raw.get("geo") or "US").strip().upper()
            if not _GEO.match(geo):
                raise PermanentStageError(
                    f"theme source {label} has geo {geo!r}", hint='use a country code such as "US", "GB" or "DE"'
                )
            options["geo"] = geo
            if url and urlsplit(url).scheme.lower() not in ("http", "https"):
                raise PermanentStageError(
                    f"theme source {label} has URL {redact_url(url)!r} that is not http(s)",
                    hint="leave 'url' out to read the Google Trends daily RSS",
                )
            url = url or GOOGLE_TRENDS_URL.format(geo=geo)
            name = name or f"google-trends-{geo.lower()}"
        return cls(
            name=name[:200],
            kind=kind,
            url=url,
            location=redact_url(url),
            api="hackernews" if kind == "hackernews" else "",
            options=options,
        )

    def guessed_kind(self) -> str:
        """The declared kind, else a guess from the location (used when reading failed)."""
        if self.kind:
            return self.kind
        loc = self.location.lower()
        if "reddit" in loc:
            return "reddit"
        if "ycombinator" in loc or "hnrss" in loc:
            return "hn"
        if loc.endswith(".atom"):
            return "atom"
        if loc.endswith((".rss", ".xml")):
            return "rss"
        return "unknown"


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


class FeedProvider(Protocol):
    def read(self, source: FeedSource, *, conditional: bool = True) -> FeedRead: ...


# -- conditional GET memory --------------------------------------------------------------------
class ValidatorCache:
    """ETag / Last-Modified per URL, one small JSON file each under ``<VAR_DIR>/feed-cache``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else Path(settings.VAR_DIR) / "feed-cache"

    @staticmethod
    def _key(url: str) -> str:
        return hashlib.sha256(url.encode("utf-8")).hexdigest()  # URLs may hold tokens: never stored

    def _file(self, url: str) -> Path:
        return self.directory / (self._key(url)[:32] + ".json")

    def load(self, url: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._file(url).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != self._key(url):
            return None
        return data

    def save(self, url: str, *, kind: str, etag: str, last_modified: str, external_ids: list[str]) -> None:
        if not etag and not last_modified:
            self.forget(url)
            return
        data = {
            "key": self._key(url),
            "location": redact_url(url),
            "kind": kind,
            "etag": etag,
            "last_modified": last_modified,
            "external_ids": external_ids,
            "saved_at": datetime.now(UTC).isoformat(),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".cache-", suffix=".part")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, self._file(url))
        except OSError as exc:  # a cache we cannot write only costs a full download next time
            logger.warning("cannot save feed validators for %s: %s", url, exc)

    def forget(self, url: str) -> None:
        with contextlib.suppress(OSError):
            self._file(url).unlink()


# -- the reader ------------------------------------------------------------------------------
class FeedReader:
    """The default ``FeedProvider``: bundled/local files and http(s) URLs."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        cache: ValidatorCache | None = None,
        client: httpx.Client | None = None,
        attempts: int = 3,
        max_wait: float = 5.0,
        budget: float = 20.0,
    ) -> None:
        self.timeout = float(timeout)
        self.attempts = max(1, int(attempts))
        self.max_wait = float(max_wait)
        self.budget = float(budget)
        self.cache = cache if cache is not None else ValidatorCache()
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> FeedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                follow_redirects=True,
                max_redirects=5,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
                    "application/json;q=0.9, text/xml;q=0.8, */*;q=0.5",
                },
            )
        return self._client

    def read(self, source: FeedSource, *, conditional: bool = True) -> FeedRead:
        if not source.is_http:
            assert source.path is not None
            try:
                content = source.path.read_bytes()
            except FileNotFoundError:
                raise PermanentStageError(
                    f"source {source.name}: file {source.location} not found ({source.path})",
                    hint="relative paths resolve against stages/assets/; check the theme's sources",
                ) from None
            except OSError as exc:
                raise PermanentStageError(f"source {source.name}: cannot read {source.path}: {exc}") from None
            return parse_feed(source, content, content_type="")
        return self._read_http(source, conditional=conditional)

    def _read_http(self, source: FeedSource, *, conditional: bool) -> FeedRead:
        url = source.url
        cached = self.cache.load(url) if conditional else None
        headers: dict[str, str] = {}
        if cached:
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
        fetched = self._fetch(source, url, headers=headers)
        if fetched.status == 304:
            if not cached:  # a 304 we did not ask for: treat the feed as unchanged and empty
                return FeedRead(kind=source.guessed_kind(), items=[], not_modified=True)
            return FeedRead(
                kind=cached.get("kind") or source.guessed_kind(),
                items=[],
                not_modified=True,
                known_external_ids=list(cached.get("external_ids") or []),
            )
        if source.api == "hackernews":
            read = self._read_hn_items(source, fetched.content)
        else:
            read = parse_feed(source, fetched.content, content_type=fetched.content_type)
        # Remember validators only for a body we understood, so a 304 always means "same good feed".
        self.cache.save(
            source.url,
            kind=read.kind,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            external_ids=[i.external_id for i in read.items],
        )
        return read

    # -- Hacker News (Firebase API): the id list, then one item per id ------------------------------
    def _read_hn_items(self, source: FeedSource, content: bytes) -> FeedRead:
        ids = _json_body(source, content, hint="the Hacker News API should answer a list of story ids; check base_url")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise PermanentStageError(
                f"source {source.name}: {source.location} is not a list of story ids",
                hint="the Hacker News API's topstories.json answers [123, 456, ...]; check base_url",
            )
        ids = list(dict.fromkeys(ids))[: int(source.options.get("limit") or 30)]
        if not ids:
            return FeedRead(kind="hackernews", items=[])
        base = source.url.rsplit("/", 1)[0]

        def one(item_id: int) -> FeedItem | None:
            fetched = self._fetch(source, f"{base}/item/{item_id}.json")
            try:
                record = json.loads(fetched.content.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise PermanentStageError(
                    f"source {source.name}: item {item_id} is not valid JSON ({exc})",
                    hint="check the Hacker News base_url",
                ) from None
            if record is None:  # Firebase answers null for an id it does not have
                return None
            if not isinstance(record, dict):
                raise PermanentStageError(f"source {source.name}: item {item_id} is not an object")
            return _hn_item(record)

        results: dict[int, FeedItem | None] = {}
        errors: list[StageError] = []
        with ThreadPoolExecutor(max_workers=min(HN_CONCURRENCY, len(ids))) as pool:
            futures = {pool.submit(one, item_id): item_id for item_id in ids}
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except StageError as exc:
                    errors.append(exc)
        if errors and len(errors) == len(ids):
            first = errors[0]
            raise type(first)(
                f"{first.message} (and every other of the {len(ids)} items failed too)"
                if len(ids) > 1
                else first.message,
                hint=first.hint,
                retry_after=max((e.retry_after or 0.0 for e in errors), default=0.0) or None,
            )
        if errors:
            logger.warning(
                "source %s: %d of %d Hacker News items could not be read, e.g. %s",
                source.name,
                len(errors),
                len(ids),
                errors[0].message,
            )
        items = [results[i] for i in ids if results.get(i) is not None]
        return FeedRead(kind="hackernews", items=items)  # type: ignore[arg-type]

    # -- one GET with short in-call retries ----------------------------------------------------
    def _fetch(self, source: FeedSource, url: str, *, headers: dict[str, str] | None = None) -> _Fetched:
        """GET ``url`` for ``source``; blips (429, 5xx, connection errors) are retried in the call
        with the providers' policy (``http.retrying``), on a streamed, size-capped read that also
        understands 304. A timeout is not retried here (``http.final``): the read already waited
        ``timeout`` seconds; the stage's own retry takes it."""
        return http.retrying(
            lambda: self._fetch_once(source, url, headers or {}),
            attempts=self.attempts,
            budget=self.budget,
            max_wait=self.max_wait,
        )

    def _fetch_once(self, source: FeedSource, url: str, headers: dict[str, str]) -> _Fetched:
        where = redact_url(url)
        # user:password@ travels as an Authorization header, so httpx's request log never shows it.
        parts = urlsplit(url)
        auth = None
        if parts.username is not None:
            auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
            url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        headers = dict(headers)
        if source.options.get("user_agent"):
            headers["User-Agent"] = str(source.options["user_agent"])
        deadline = time.monotonic() + self.timeout * 3  # httpx times each read; this bounds the whole body
        try:
            with self.client.stream("GET", url, headers=headers, auth=auth) as response:
                status = response.status_code
                if status == 304:
                    return _Fetched(status=304)
                if status == 429 or status >= 500:
                    raise TransientStageError(
                        f"source {source.name}: {where} answered HTTP {status}",
                        hint="the feed server is busy or failing; the stage retries with backoff",
                        retry_after=http.parse_retry_after(response.headers.get("Retry-After")),
                    )
                if status >= 400:
                    raise PermanentStageError(
                        f"source {source.name}: {where} answered HTTP {status}",
                        hint="check the URL (and any access rules of the site) in the theme's sources",
                    )
                if status >= 300:
                    raise PermanentStageError(
                        f"source {source.name}: {where} answered HTTP {status} without a usable redirect",
                        hint="use the feed's final URL",
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise PermanentStageError(
                            f"source {source.name}: {where} is larger than {MAX_BYTES // (1024 * 1024)} MB",
                            hint="point the source at a feed, not a download",
                        )
                    if time.monotonic() > deadline:
                        raise http.final(
                            TransientStageError(
                                f"source {source.name}: {where} took longer than {self.timeout * 3:.0f}s to download"
                            )
                        )
                    chunks.append(chunk)
                return _Fetched(
                    status=status,
                    content=b"".join(chunks),
                    etag=response.headers.get("ETag", ""),
                    last_modified=response.headers.get("Last-Modified", ""),
                    content_type=response.headers.get("Content-Type", ""),
                )
        except httpx.TimeoutException:
            raise http.final(
                TransientStageError(
                    f"source {source.name}: {where} timed out after {self.timeout:g}s",
                    hint="the feed server is slow or unreachable; the stage retries with backoff",
                )
            ) from None
        except httpx.UnsupportedProtocol as exc:
            raise PermanentStageError(f"source {source.name}: cannot fetch {where}: {exc}") from None
        except httpx.TooManyRedirects:
            raise PermanentStageError(f"source {source.name}: {where} redirects in a loop") from None
        except httpx.TransportError as exc:
            raise TransientStageError(
                f"source {source.name}: cannot reach {where}: {exc.__class__.__name__}: {exc}",
                hint="network or DNS trouble; the stage retries with backoff",
            ) from None
        except httpx.HTTPError as exc:  # DecodingError (a broken gzip body) and the like
            raise TransientStageError(
                f"source {source.name}: reading {where} failed: {exc.__class__.__name__}: {exc}"
            ) from None
        except httpx.InvalidURL as exc:
            raise PermanentStageError(f"source {source.name}: invalid URL {where!r}: {exc}") from None


@dataclass
class _Fetched:
    status: int
    content: bytes = b""
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""


# -- parsing ---------------------------------------------------------------------------------
def _json_body(source: FeedSource, content: bytes, *, hint: str) -> Any:
    """A JSON body (BOM tolerated), or ``PermanentStageError`` naming the source."""
    try:
        return json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PermanentStageError(
            f"source {source.name}: {source.location} is not valid JSON ({exc})", hint=hint
        ) from None


def parse_feed(source: FeedSource, content: bytes, *, content_type: str = "") -> FeedRead:
    """Parse a body into items; ``PermanentStageError`` (naming the source) if it is not a feed."""
    if source.kind == "google_trends":
        return _parse_google_trends(source, content)
    head = content.lstrip()[:1]
    if head in (b"{", b"[") or "json" in content_type.lower():
        return _parse_json(
            source, _json_body(source, content, hint="check that the URL/file is a Reddit listing or Hacker News items")
        )
    return _parse_xml(source, content, content_type)


def _parse_xml(source: FeedSource, content: bytes, content_type: str) -> FeedRead:
    headers = {"content-type": content_type} if content_type else None
    # A stream, never bytes: feedparser opens a bytes/str argument as a file name (or URL) if it
    # can, and a feed body must never make us read a local file.
    parsed = feedparser.parse(io.BytesIO(content), response_headers=headers, sanitize_html=True)
    entries = parsed.get("entries") or []
    version = parsed.get("version") or ""
    bozo = parsed.get("bozo") and not isinstance(parsed.get("bozo_exception"), _BENIGN_BOZO)
    if not entries and (bozo or not version):
        reason = parsed.get("bozo_exception") if bozo else "no RSS or Atom document found"
        raise PermanentStageError(
            f"source {source.name}: {source.location} is not a readable feed ({reason})",
            hint="open the URL/file and check it is RSS, Atom, a Reddit listing or Hacker News JSON",
        )
    if bozo:
        logger.warning(
            "source %s: feed is malformed (%s); kept %d entries",
            source.name,
            parsed.get("bozo_exception"),
            len(entries),
        )
    kind = source.kind or _detect_xml_kind(parsed, version)
    items: list[FeedItem] = []
    for entry in entries:
        item = _entry_item(entry, kind)
        if item is not None:
            items.append(item)
    return FeedRead(kind=kind, items=items)


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


def _entry_item(entry: Any, kind: str) -> FeedItem | None:
    summary_html = str(entry.get("summary") or "")
    if not summary_html and entry.get("content"):
        summary_html = str(entry["content"][0].get("value") or "")
    summary = clean_text(summary_html, SUMMARY_MAX)
    title = clean_text(str(entry.get("title") or ""), TITLE_MAX) or clean_text(summary, 120)
    if not title:
        return None
    link = _http_url(entry.get("link"))
    raw: dict[str, Any] = {"kind": kind}
    engagement = 0
    if kind == "hn":
        text = strip_tags(summary_html)
        points = _int(_first(_HN_POINTS, text))
        comments = _int(_first(_HN_COMMENTS, text))
        raw.update(points=points, comments=comments)
        engagement = points + comments
        summary = clean_text(_HN_BOILERPLATE.sub(" ", html.unescape(text)), SUMMARY_MAX)
    for key, label in (("slash_comments", "comments"), ("thr_total", "comments")):
        if entry.get(key) is not None and "comments" not in raw:
            raw[label] = _int(entry.get(key))
            engagement += raw[label]
    if entry.get("comments"):
        raw["comments_url"] = _http_url(entry.get("comments"))
    if entry.get("author"):
        raw["author"] = clean_text(str(entry.get("author")), 200)
    when = entry.get("published_parsed") or entry.get("updated_parsed")
    published = datetime(*when[:6], tzinfo=UTC) if when else None
    external_id = str(entry.get("id") or "").strip() or link or title_hash(title)
    return FeedItem(
        external_id=_fit_id(external_id),
        title=title,
        url=link,
        summary=summary,
        published=published,
        engagement=engagement,
        raw=raw,
    )


def _parse_json(source: FeedSource, data: Any) -> FeedRead:
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "children" in data["data"]:
        kind = source.kind or "reddit"
        children = data["data"].get("children") or []
        items = [i for i in (_reddit_item(c.get("data") if isinstance(c, dict) else None) for c in children) if i]
        return FeedRead(kind=kind, items=items)
    records: list[Any] | None = None
    if isinstance(data, list):
        records = data
    elif isinstance(data, dict):
        for key in ("hits", "items", "stories"):
            if isinstance(data.get(key), list):
                records = data[key]
                break
        if records is None and "title" in data and ("id" in data or "objectID" in data):
            records = [data]  # a single Firebase item
    if records is None:
        raise PermanentStageError(
            f"source {source.name}: {source.location} is JSON but neither a Reddit listing nor Hacker News items",
            hint='expected {"data": {"children": [...]}} (Reddit) or a list of HN items / {"hits": [...]} (Algolia)',
        )
    if records and all(isinstance(r, int) for r in records):
        raise PermanentStageError(
            f"source {source.name}: {source.location} lists only item ids (like topstories.json)",
            hint="point the source at item objects, e.g. hnrss.org/frontpage or the Algolia search API",
        )
    items = [i for i in (_hn_item(r) for r in records) if i]
    return FeedRead(kind=source.kind or "hn", items=items)


# -- Google Trends daily RSS --------------------------------------------------------------------
_TRAFFIC = re.compile(r"([\d.,]+)\s*([KkMm]?)")


def parse_traffic(value: str) -> int:
    """Google's approximate search volume: "20,000+" -> 20000, "2K+" -> 2000, "1M+" -> 1000000."""
    match = _TRAFFIC.search(value or "")
    if not match:
        return 0
    digits, unit = match.group(1).replace(",", ""), match.group(2).lower()
    try:
        number = float(digits)
    except ValueError:
        return 0
    return int(number * {"k": 1_000, "m": 1_000_000}.get(unit, 1))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1]


def _child_text(element: Any, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def _parse_google_trends(source: FeedSource, content: bytes) -> FeedRead:
    """Items with ``ht:approx_traffic`` (engagement) and ``ht:news_item`` (articles about the term).

    Read with ElementTree rather than feedparser, which flattens the nested news items. The body is
    refused if it declares a DOCTYPE (entity tricks), and it is size-capped by the fetch already.
    """
    from xml.etree import ElementTree

    if b"<!DOCTYPE" in content[:4096].upper() or b"<!ENTITY" in content.upper():
        raise PermanentStageError(
            f"source {source.name}: {source.location} declares a DOCTYPE; refusing it",
            hint="point the source at the Google Trends daily RSS",
        )
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as exc:
        raise PermanentStageError(
            f"source {source.name}: {source.location} is not a readable feed ({exc})",
            hint="open the URL/file and check it is the Google Trends daily RSS",
        ) from None
    channel = next((c for c in root if _local(c.tag) == "channel"), None)
    if _local(root.tag) != "rss" or channel is None:
        raise PermanentStageError(
            f"source {source.name}: {source.location} is not an RSS document",
            hint="expected the Google Trends daily RSS (https://trends.google.com/trending/rss?geo=US)",
        )
    geo = str(source.options.get("geo") or "")
    items: list[FeedItem] = []
    for element in channel:
        if _local(element.tag) != "item":
            continue
        title = clean_text(_child_text(element, "title"), TITLE_MAX)
        if not title:
            continue
        traffic_text = _child_text(element, "approx_traffic")
        news = []
        for child in element:
            if _local(child.tag) == "news_item":
                news.append(
                    {
                        "title": clean_text(_child_text(child, "news_item_title"), 300),
                        "url": _http_url(_child_text(child, "news_item_url")),
                        "source": clean_text(_child_text(child, "news_item_source"), 100),
                    }
                )
        published = None
        when = _child_text(element, "pubDate")
        if when:
            try:
                published = parsedate_to_datetime(when)
                if published.tzinfo is None:
                    published = published.replace(tzinfo=UTC)
            except (TypeError, ValueError):
                published = None
        first_url = next((n["url"] for n in news if n["url"]), "")
        summary = clean_text(" · ".join(n["title"] for n in news if n["title"]), SUMMARY_MAX)
        normal = _SPACE.sub(" ", title.casefold()).strip()
        items.append(
            FeedItem(
                # One row per search term and region: a term trending again refreshes its row.
                external_id=_fit_id(f"google-trends:{geo.lower() or 'any'}:{normal}"),
                title=title,
                url=first_url or _http_url(_child_text(element, "link")),
                summary=summary,
                published=published,
                engagement=parse_traffic(traffic_text),
                raw={
                    "kind": "google_trends",
                    "traffic": traffic_text,
                    "geo": geo,
                    "news": news[:5],
                    "picture": _http_url(_child_text(element, "picture")),
                    "picture_source": clean_text(_child_text(element, "picture_source"), 100),
                },
            )
        )
    return FeedRead(kind="google_trends", items=items)


def _reddit_item(data: Any) -> FeedItem | None:
    if not isinstance(data, dict):
        return None
    title = clean_text(str(data.get("title") or ""), TITLE_MAX)
    if not title:
        return None
    permalink = str(data.get("permalink") or "")
    discussion = ("https://www.reddit.com" + permalink) if permalink.startswith("/") else _http_url(permalink)
    url = _http_url(data.get("url_overridden_by_dest") or data.get("url")) or discussion
    score = _int(data.get("score", data.get("ups")))
    comments = _int(data.get("num_comments"))
    created = data.get("created_utc")
    published = _from_timestamp(created)
    external_id = str(
        data.get("name") or (f"t3_{data['id']}" if data.get("id") else "") or discussion or url or title_hash(title)
    )
    return FeedItem(
        external_id=_fit_id(external_id),
        title=title,
        url=url,
        summary=clean_text(html.unescape(str(data.get("selftext") or "")), SUMMARY_MAX),
        published=published,
        engagement=score + comments,
        raw={
            "kind": "reddit",
            "score": score,
            "comments": comments,
            "comments_url": discussion,
            "subreddit": str(data.get("subreddit") or ""),
            "author": str(data.get("author") or ""),
        },
    )


def _hn_item(record: Any) -> FeedItem | None:
    if not isinstance(record, dict) or record.get("deleted") or record.get("dead"):
        return None
    if record.get("type") not in (None, "story", "poll", "job"):
        return None  # comments and poll options are not stories
    title = clean_text(str(record.get("title") or record.get("story_title") or ""), TITLE_MAX)
    item_id = record.get("id", record.get("objectID"))
    if not title or item_id in (None, ""):
        return None
    discussion = HN_ITEM_URL.format(item_id)
    points = _int(record.get("score", record.get("points")))
    comments = _int(record.get("descendants", record.get("num_comments")))
    when = record.get("time", record.get("created_at_i"))
    return FeedItem(
        # The hnrss guid is the discussion URL too: both HN formats agree on ids.
        external_id=_fit_id(discussion),
        title=title,
        url=_http_url(record.get("url")) or discussion,
        summary=clean_text(str(record.get("text") or record.get("story_text") or ""), SUMMARY_MAX),
        published=_from_timestamp(when),
        engagement=points + comments,
        raw={
            "kind": "hn",
            "points": points,
            "comments": comments,
            "comments_url": discussion,
            "author": str(record.get("by") or record.get("author") or ""),
        },
    )


# -- small helpers ---------------------------------------------------------------------------
_SECRET_PARAM = re.compile(r"key|token|secret|pass|sig|auth|session", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL for messages and outputs: no user:password@, secret-looking query values masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url.split("?", 1)[0]
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    query = urlencode(
        [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def clean_text(value: str, limit: int) -> str:
    """HTML to one line of plain text, cut at ``limit`` characters (on a word when possible)."""
    text = _SPACE.sub(" ", html.unescape(strip_tags(value or ""))).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "…"


def title_hash(title: str) -> str:
    normal = _SPACE.sub(" ", title.casefold()).strip()
    return "sha1:" + hashlib.sha1(normal.encode("utf-8")).hexdigest()


def _fit_id(value: str) -> str:
    value = value.strip()
    if len(value) <= EXTERNAL_ID_MAX:
        return value
    return "sha1:" + hashlib.sha1(value.encode("utf-8")).hexdigest()


def _http_url(value: Any) -> str:
    url = str(value or "").strip()
    if not url or len(url) > URL_MAX or urlsplit(url).scheme.lower() not in ("http", "https"):
        return ""
    return url


def _int(value: Any) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return 0
    return max(0, number)


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


def _from_timestamp(value: Any) -> datetime | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    try:
        return datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
