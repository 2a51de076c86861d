"""A theme's trend sources, validated: what to read, and whether it may be read at all.

``theme.sources`` entries are ``{"name", "url"}`` (http/https), ``{"name", "path"}`` (a file under
the bundled ``stages/assets/`` or a folder listed in ``TRENDREEL_SOURCE_DIRS``), or an API kind
whose URL the vendor module builds (``stages.providers.reddit``, ``hackernews``,
``google_trends``). ``kind`` may declare the format; otherwise it is detected from the content.

A bad entry is that source's error (``FeedSource.broken``), not the stage's: the other sources are
still read. Local paths are resolved (symlinks, ``..``) before the folder check, so a link inside
the assets cannot point at ``/etc/passwd``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stages.base import PermanentStageError, StageError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SOURCE_DIRS_SETTING = "TRENDREEL_SOURCE_DIRS"
# Formats a feed body may have (declared or detected) and the API kinds a source may name instead
# of a URL: "reddit" with a "subreddit", "hackernews" (Firebase API), "google_trends" (daily RSS).
KINDS = ("rss", "atom", "jsonfeed", "reddit", "hn", "hackernews", "google_trends")
API_KINDS = ("reddit", "hackernews", "google_trends")
NAME_MAX = 200


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
    # A configuration problem found while validating: reading this source fails with it.
    broken: StageError | None = field(default=None, compare=False, hash=False)

    @property
    def is_http(self) -> bool:
        return bool(self.url)

    @classmethod
    def from_config(cls, raw: Any, index: int) -> FeedSource:
        """Validate one source dict; ``PermanentStageError`` names the entry that is wrong."""
        if not isinstance(raw, dict):
            raise PermanentStageError(
                f"theme source #{index + 1} is not an object: {str(raw)[:80]!r}",
                hint='each source looks like {"name": "hn", "url": "https://…"} or {"name": "x", "path": "feeds/x.xml"}',
            )
        url = _text(raw.get("url"))
        path_value = _text(raw.get("path"))
        name = _text(raw.get("name"))
        label = name or f"#{index + 1}"
        declared = _text(raw.get("kind")).lower()
        api = declared in API_KINDS and not path_value and (not url or declared == "google_trends")
        if api and (declared != "reddit" or raw.get("subreddit")):
            return cls._api_source(raw, declared, name, label, url)
        if bool(url) == bool(path_value):
            raise PermanentStageError(
                f"theme source {label} needs exactly one of 'url' or 'path'",
                hint="give an http(s) URL or a file path (relative paths resolve against stages/assets/)",
            )
        kind = declared or None
        if kind is not None and kind not in KINDS:
            raise PermanentStageError(
                f"theme source {label} has unknown kind {kind!r}",
                hint=f"use one of {', '.join(KINDS)}, or leave 'kind' out to detect it",
            )
        if url:
            check_http_url(url, label)
            if not name:
                name = urlsplit(url).hostname or url
            return cls(name=name[:NAME_MAX], kind=kind, url=url, location=redact_url(url))
        path = Path(path_value).expanduser()
        if not path.is_absolute():
            path = ASSETS_DIR / path
        return cls(name=(name or path.stem)[:NAME_MAX], kind=kind, path=path, location=path_value)

    @classmethod
    def failed(cls, raw: Any, index: int, error: StageError) -> FeedSource:
        """A source whose entry is wrong: it keeps its place (and name) and reports the error."""
        name = _text(raw.get("name")) if isinstance(raw, dict) else ""
        location = _text(raw.get("url") or raw.get("path")) if isinstance(raw, dict) else ""
        return cls(
            name=(name or f"#{index + 1}")[:NAME_MAX],
            kind=None,
            location=redact_url(location) if location else "",
            broken=error,
        )

    @classmethod
    def _api_source(cls, raw: dict[str, Any], kind: str, name: str, label: str, url: str) -> FeedSource:
        """A source named by its API kind: the vendor module builds the URL from the entry's fields."""
        from stages.providers import google_trends, hackernews, reddit

        vendor = {"reddit": reddit, "hackernews": hackernews, "google_trends": google_trends}[kind]
        ua = _text(raw.get("user_agent"))
        options: dict[str, Any] = {"user_agent": ua} if ua else {}
        url, default_name, more = vendor.source_url(raw, label, url)
        options.update(more)
        return cls(
            name=(name or default_name)[:NAME_MAX],
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
        if loc.endswith(".json"):
            return "json"
        return "unknown"

    def local_file(self) -> Path:
        """The file a ``path`` source names, once resolved, if it lies in an allowed folder."""
        assert self.path is not None
        try:
            resolved = self.path.resolve(strict=False)
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise PermanentStageError(f"source {self.name}: cannot resolve {self.location}: {exc}") from None
        allowed = source_dirs()
        if not any(resolved == folder or folder in resolved.parents for folder in allowed):
            raise PermanentStageError(
                f"source {self.name}: {self.location} is outside the folders sources may read",
                hint=f"put the file under stages/assets/ or list its folder in {SOURCE_DIRS_SETTING} "
                "(comma-separated); symlinks and '..' count where they lead",
            )
        return resolved


def source_dirs() -> list[Path]:
    """The folders ``path`` sources may read: the bundled assets plus ``TRENDREEL_SOURCE_DIRS``."""
    from django.conf import settings

    extra = getattr(settings, SOURCE_DIRS_SETTING, None) or []
    if isinstance(extra, str):
        extra = [p for p in extra.split(",") if p.strip()]
    folders = [ASSETS_DIR.resolve()]
    for folder in extra:
        try:
            folders.append(Path(folder).expanduser().resolve())
        except (OSError, RuntimeError):
            continue
    return folders


def check_http_url(url: str, label: str, *, what: str = "URL") -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise PermanentStageError(
            f"theme source {label} has {what} {redact_url(url)!r} with unsupported scheme {scheme or '(none)'!r}",
            hint="use an http(s) URL, or a 'path' for a local file",
        )


def limit_setting(raw: dict[str, Any], label: str, default: int, top: int) -> int:
    """An API source's ``limit``: a whole number from 1 to ``top``, or a permanent error naming it."""
    from stages.payload import as_int

    value = raw.get("limit", default)
    number = None if isinstance(value, bool) else as_int(value, low=-1, high=10**6, default=None)
    if number is None or not 1 <= number <= top:
        raise PermanentStageError(
            f"theme source {label} has limit {str(value)[:40]!r}", hint=f"use a whole number from 1 to {top}"
        )
    return number


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


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
