"""The feed reader: fetch one source's bytes (a local file or an http(s) URL) and parse them.

Local files must lie under ``stages/assets`` or a folder in ``TRENDREEL_SOURCE_DIRS``
(``FeedSource.local_file``) and are read up to ``MAX_BYTES``, like URL bodies. HTTP goes through
``stages.http.new_client`` (public addresses only unless ``TRENDREEL_FETCH_ALLOW`` lists them,
every redirect re-checked). Each GET gets short in-call retries for 429/5xx/connection errors (the
policy of ``stages.http.retrying``: a short ``Retry-After`` is waited, a long one goes to the
orchestrator); timeouts are left to the stage's retry. Fetches are conditional
(``stages.feeds.cache``): a 304 hands back the ids the feed held at its last full read.

Errors are the stage's own: ``TransientStageError`` for timeouts, connection errors, 429 and 5xx;
``PermanentStageError`` for 4xx, refused addresses, bad configuration and bodies that are not a
feed. Every message names the source.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from stages import http
from stages.base import PermanentStageError, TransientStageError
from stages.feeds.cache import ValidatorCache
from stages.feeds.items import FeedRead
from stages.feeds.parsers import parse_feed
from stages.feeds.sources import FeedSource, redact_url
from stages.payload import PayloadError, loads
from stages.providers import hackernews

logger = logging.getLogger("trendreel.feeds")

USER_AGENT = "Trendreel/1.0 (trend collection; +https://github.com/trendreel)"
MAX_BYTES = 10 * 1024 * 1024  # a feed bigger than this is a mistake, not a feed
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, "
    "application/json;q=0.9, text/xml;q=0.8, */*;q=0.5"
)


class FeedProvider(Protocol):
    """What trend_collection needs from a reader (the stage's provider protocol)."""

    def read(self, source: FeedSource, *, conditional: bool = True) -> FeedRead: ...


@dataclass
class _Fetched:
    status: int
    content: bytes = b""
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""
    url: str = ""  # where the body came from, after redirects (the base for relative links)


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
            self._client = http.new_client(
                httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                max_redirects=5,
                headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
                provider="feed",
            )
        return self._client

    def read(self, source: FeedSource, *, conditional: bool = True) -> FeedRead:
        if source.broken is not None:
            raise source.broken
        if not source.is_http:
            return parse_feed(source, self._read_file(source))
        return self._read_http(source, conditional=conditional)

    def _read_file(self, source: FeedSource) -> bytes:
        path = source.local_file()
        try:
            with open(path, "rb") as fh:
                content = fh.read(MAX_BYTES + 1)
        except FileNotFoundError:
            raise PermanentStageError(
                f"source {source.name}: file {source.location} not found ({source.path})",
                hint="relative paths resolve against stages/assets/; check the theme's sources",
            ) from None
        except IsADirectoryError:
            raise PermanentStageError(f"source {source.name}: {source.location} is a folder, not a feed file") from None
        except OSError as exc:
            raise PermanentStageError(f"source {source.name}: cannot read {source.path}: {exc}") from None
        if len(content) > MAX_BYTES:
            raise PermanentStageError(
                f"source {source.name}: {source.location} is larger than {MAX_BYTES // (1024 * 1024)} MB",
                hint="point the source at a feed, not a download",
            )
        return content

    def _read_http(self, source: FeedSource, *, conditional: bool) -> FeedRead:
        url = source.url
        cached = self.cache.load(url) if conditional else None
        headers: dict[str, str] = {}
        if cached:
            if isinstance(cached.get("etag"), str) and cached["etag"]:
                headers["If-None-Match"] = cached["etag"]
            if isinstance(cached.get("last_modified"), str) and cached["last_modified"]:
                headers["If-Modified-Since"] = cached["last_modified"]
        fetched = self._fetch(source, url, headers=headers)
        if fetched.status == 304:
            known = [i for i in (cached or {}).get("external_ids") or [] if isinstance(i, str)]
            kind = (cached or {}).get("kind")
            return FeedRead(
                kind=kind if isinstance(kind, str) and kind else source.guessed_kind(),
                items=[],
                not_modified=True,
                known_external_ids=known,
            )
        if source.api == "hackernews":
            read = self._read_hn_items(source, fetched.content)
        else:
            read = parse_feed(source, fetched.content, content_type=fetched.content_type, base=fetched.url or url)
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
        hint = "the Hacker News API's topstories.json answers [123, 456, ...]; check base_url"
        try:
            ids = loads(content)
        except PayloadError as exc:
            raise PermanentStageError(
                f"source {source.name}: {source.location} is not valid JSON ({exc})", hint=hint
            ) from None
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise PermanentStageError(f"source {source.name}: {source.location} is not a list of story ids", hint=hint)
        ids = [i for i in dict.fromkeys(ids) if 0 < i < 2**53][: int(source.options.get("limit") or 30)]
        base = source.url.rsplit("/", 1)[0]

        def fetch(item_id: int) -> bytes:
            return self._fetch(source, f"{base}/item/{item_id}.json").content

        def note(message: str) -> None:
            logger.warning("source %s: %s", source.name, message)

        return hackernews.read_items(source.name, ids, fetch, on_error=note)

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
                    etag=response.headers.get("ETag", "")[:500],
                    last_modified=response.headers.get("Last-Modified", "")[:100],
                    content_type=response.headers.get("Content-Type", "")[:200],
                    url=str(response.url.copy_with(username=None, password=None)),
                )
        except PermanentStageError as exc:
            if exc.message.startswith(f"source {source.name}:"):
                raise
            raise PermanentStageError(f"source {source.name}: {exc.message}", hint=exc.hint) from None
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
