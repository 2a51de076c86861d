"""Pexels stock media for scene_generation: search, pick a file of the frame's shape, download, probe, cache.

Settings (``theme.settings["scene_generation"]["pexels"]``, all optional but the key)::

    {"api_key": "...",            # or the PEXELS_API_KEY environment variable
     "base_url": "https://api.pexels.com",
     "media": "photos" | "videos",  # default "photos": composition takes stills today
     "orientation": "portrait",     # passed to the search (default: the frame's, from the aspect)
     "per_page": 5,                 # hits per search (1-20)
     "max_mb": 50,                  # a file bigger than this is skipped / aborted
     "timeout": 20,                 # seconds per HTTP read
     "download_timeout": 120,       # seconds for one whole file
     "attempts": 3}                 # tries per search (429/5xx/timeouts), Retry-After honoured

Why it is shaped this way:

* Searches go through ``stages.http`` (``PexelsSource`` is an ``HttpProvider``: 429/5xx/timeouts
  transient with short in-call retries, 401/403 permanent with a hint naming the key's settings,
  the key never in a message). The key is sent only to the API host: downloads use a client
  without it; ``PEXELS_API_KEY`` from the environment goes only to api.pexels.com (or hosts in
  ``TRENDREEL_PROVIDER_HOSTS``).
* The search answer is read for what it is: a hit without a usable id or files, a photographer
  that is not text, sizes of ``1e999`` are skipped or clamped, never an exception.
* From each hit the file closest to the frame (1080x1920 by default) is chosen (its orientation first, "hd" preferred, nothing
  over ``max_mb``); it is streamed to a ``.part`` file, **probed** (Pillow ``verify`` + decode for
  photos; ``stages.media.probe`` for videos: a video stream, a sane duration and size), and only
  then moved into the cache (``MEDIA_ROOT/cache/pexels/<sha256(url)>.<ext>``, atomic rename), so a
  re-run of the job - or another job wanting the same file - downloads nothing. A file that fails
  the probe is deleted and the next hit is tried.
* ``PexelsSource.scene(...)`` returns the local file plus the credit Pexels asks for
  ("Photo by <name> on Pexels" with links); turning it into a 1080x1920 scene image is the stage's
  job (``stages.scene_generation``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from django.conf import settings

from stages import egress
from stages.base import PermanentStageError, StageContext, StageError, TransientStageError
from stages.http import HttpProvider, masked, new_client
from stages.look import look_for
from stages.payload import as_dict, as_float, as_http_url, as_int, as_list
from stages.text import STOPWORDS, plain_text

PROVIDER = "pexels"
ENV_KEY = "PEXELS_API_KEY"
DEFAULT_BASE = "https://api.pexels.com"
TARGET = (1080, 1920)
MEDIA = ("photos", "videos")
ORIENTATIONS = ("portrait", "landscape", "square")
MIN_SIDE = 240  # a file smaller than this is no scene
MAX_VIDEO_SECONDS = 600.0
_STOP = STOPWORDS | {"follow", "like", "stories"}  # plus words of our own calls to action
_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)


@dataclass
class Hit:
    """One search result reduced to what the stage needs."""

    id: int | str
    media: str  # "photo" or "video"
    page_url: str  # the Pexels page (for the credit)
    author: str
    author_url: str
    files: list[dict[str, Any]] = field(
        default_factory=list
    )  # candidates, best first: {url, width, height, quality, size}
    alt: str = ""


@dataclass
class Fetched:
    hit: Hit
    path: Path  # the cached file (photo or video)
    file_url: str
    width: int
    height: int
    duration: float | None = None  # videos
    from_cache: bool = False

    def credit(self) -> dict[str, Any]:
        what = "Video" if self.hit.media == "video" else "Photo"
        return {
            "id": self.hit.id,
            "media": self.hit.media,
            "url": self.hit.page_url,
            "file": self.file_url,
            "photographer": self.hit.author,
            "photographer_url": self.hit.author_url,
            "text": f"{what} by {self.hit.author or 'unknown'} on Pexels",
        }


def query_for(headline: str, keywords: list[str], *, max_words: int = 6) -> str:
    """A short search phrase: the headline's content words, then the topic keywords."""
    words: list[str] = []
    seen: set[str] = set()
    for word in _WORD.findall(headline or ""):
        low = word.lower().strip("'-")
        if len(low) < 3 or low in _STOP or low in seen:
            continue
        seen.add(low)
        words.append(low)
        if len(words) >= max_words - min(2, len(keywords)):
            break
    for keyword in keywords[:2]:
        kw = " ".join(_WORD.findall(str(keyword))).lower()
        if kw and kw not in seen:
            seen.add(kw)
            words.append(kw)
    return " ".join(words)[:100].strip()


class PexelsSource(HttpProvider):
    """Pexels search + download for one stage run (holds its HTTP clients; ``close`` them)."""

    name = PROVIDER

    def __init__(self, ctx: StageContext, conf: dict[str, Any] | None = None, *, cache_dir: Path | None = None) -> None:
        super().__init__(ctx)
        conf = conf if conf is not None else (ctx.stage_settings.get(PROVIDER) or {})
        if not isinstance(conf, dict):
            raise PermanentStageError(
                f'theme.settings["{ctx.stage}"]["pexels"] must be an object', hint='e.g. {"media": "photos"}'
            )
        conf = dict(conf)
        self.hint_setting = f'theme.settings["{ctx.stage}"]["pexels"]["api_key"] or {ENV_KEY}'
        self.base = str(conf.get("base_url") or DEFAULT_BASE).rstrip("/")
        if urlsplit(self.base).scheme not in ("http", "https"):
            raise PermanentStageError(
                f"pexels: base_url {self.base[:80]!r} is not http(s)", hint="leave it out for the real API"
            )
        if conf.get("api_key"):
            secret = egress.Secret(value=str(conf["api_key"]), setting=self.hint_setting)
        elif os.environ.get(ENV_KEY):
            secret = egress.bind(os.environ[ENV_KEY], ENV_KEY, DEFAULT_BASE)
            if not secret.allows(self.base):
                raise secret.refusal(self.base, PROVIDER)
        else:
            raise PermanentStageError(
                "pexels: no API key", hint=f"set {self.hint_setting} (free key: https://www.pexels.com/api/)"
            )
        self.secrets.append(secret)
        self.key = secret.value
        self.media = str(conf.get("media") or "photos").lower()
        if self.media in ("photo", "video"):
            self.media += "s"
        if self.media not in MEDIA:
            raise PermanentStageError(f"pexels: media {self.media!r} is unknown", hint='use "photos" or "videos"')
        # the frame the scenes fill (theme.settings.composition.aspect): the search asks for that
        # orientation and each hit's file closest to that size is chosen
        frame = look_for(ctx.theme.get("settings")).frame
        self.target = (frame.width, frame.height)
        shape = "portrait" if frame.height > frame.width else "landscape" if frame.width > frame.height else "square"
        self.orientation = str(conf.get("orientation") or shape).lower()
        if self.orientation not in ORIENTATIONS:
            raise PermanentStageError(
                f"pexels: orientation {self.orientation!r} is unknown", hint=f"use one of {', '.join(ORIENTATIONS)}"
            )
        try:
            self.per_page = max(1, min(20, int(conf.get("per_page", 5))))
            self.max_bytes = int(float(conf.get("max_mb", 50)) * 1024 * 1024)
            timeout = float(conf.get("timeout", 20))
            self.download_seconds = float(conf.get("download_timeout", 120))
            self.attempts = max(1, int(conf.get("attempts", 3)))
        except (TypeError, ValueError) as exc:
            raise PermanentStageError(f"pexels: per_page/max_mb/timeout/attempts must be numbers ({exc})") from None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(settings.MEDIA_ROOT) / "cache" / "pexels"
        if not 0 < timeout < 3600 or not 0 < self.download_seconds < 86400:
            raise PermanentStageError("pexels: timeout/download_timeout must be positive numbers of seconds")
        # The key goes only to the API; file downloads (a CDN) get a client without it.
        self.api = self.new_client(timeout)
        self.files = new_client(timeout, provider=PROVIDER)
        self.downloads = 0  # files actually fetched (not served from the cache)

    def close(self) -> None:
        self.api.close()
        self.files.close()

    def __enter__(self) -> PexelsSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- search --------------------------------------------------------------------------------
    def search(self, query: str) -> list[Hit]:
        path = "/videos/search" if self.media == "videos" else "/v1/search"
        params = {"query": query, "orientation": self.orientation, "per_page": self.per_page}
        response = self.request(
            "GET",
            f"{self.base}{path}?{urlencode(params)}",
            client=self.api,
            attempts=self.attempts,
            headers={"Authorization": self.key},
            max_bytes=4 * 1024 * 1024,
        )
        hint = f"check {self.base} is the Pexels API (pexels base_url)"
        try:
            data = self.json(response, hint=hint)
        except PermanentStageError:
            raise PermanentStageError(
                f"pexels answered HTTP {response.status_code} with a body that is not JSON: "
                f"{masked(' '.join(response.text.split())[:120], [self.key])}",
                hint=hint,
            ) from None
        return parse_search(data, self.media, self.max_bytes, hint=hint, target=self.target)

    # -- download --------------------------------------------------------------------------------
    def fetch(self, hit: Hit) -> Fetched:
        """The first candidate file of ``hit`` that downloads and passes the probe."""
        errors: list[str] = []
        for candidate in hit.files[:3]:
            self.ctx.check_cancelled()
            try:
                return self._fetch_file(hit, candidate)
            except StageError as exc:
                errors.append(exc.message)
        raise TransientStageError(f"pexels {hit.media} {hit.id}: no usable file ({'; '.join(errors)})")

    def _fetch_file(self, hit: Hit, candidate: dict[str, Any]) -> Fetched:
        url = str(candidate["url"])
        ext = ".mp4" if hit.media == "video" else _photo_ext(url)
        cached = self.cache_dir / (hashlib.sha256(url.encode("utf-8")).hexdigest() + ext)
        if cached.is_file() and cached.stat().st_size > 0:
            try:
                width, height, duration = self._probe(cached, hit.media)
            except StageError:
                cached.unlink(missing_ok=True)  # a cache entry that no longer probes is dropped
            else:
                with contextlib.suppress(OSError):
                    os.utime(cached)  # used: the cache evicts least recently used files first
                return Fetched(hit, cached, url, width, height, duration, from_cache=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.cache_dir, prefix=".dl-", suffix=ext + ".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                self._stream(url, out, hit)
            width, height, duration = self._probe(tmp, hit.media)
            os.replace(tmp, cached)
        finally:
            tmp.unlink(missing_ok=True)
        removed = prune_cache(self.cache_dir, settings.TRENDREEL_CACHE_MB * 1024 * 1024)
        if removed:
            self.ctx.logger.info(
                "pexels: cache over TRENDREEL_CACHE_MB, removed %d least recently used files", len(removed)
            )
        return Fetched(hit, cached, url, width, height, duration)

    def _stream(self, url: str, out: Any, hit: Hit) -> None:
        where = _short(url)
        what = f"pexels {hit.media} {hit.id}"
        self.downloads += 1
        deadline = time.monotonic() + self.download_seconds
        try:
            with self.files.stream("GET", url) as response:
                status = response.status_code
                if status >= 400:
                    error = TransientStageError if status in (408, 429) or status >= 500 else PermanentStageError
                    raise error(f"{what}: {where} answered HTTP {status}")
                size = 0
                for chunk in response.iter_bytes(256 * 1024):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PermanentStageError(
                            f"{what}: {where} is larger than {self.max_bytes / (1024 * 1024):g} MB"
                        )
                    if time.monotonic() > deadline:
                        raise TransientStageError(
                            f"{what}: {where} took longer than {self.download_seconds:g}s to download"
                        )
                    out.write(chunk)
                    self.ctx.check_cancelled()
        except httpx.TimeoutException:
            raise TransientStageError(f"{what}: download of {where} timed out") from None
        except httpx.HTTPError as exc:
            raise TransientStageError(f"{what}: download of {where} failed: {type(exc).__name__}") from None
        if size == 0:
            raise PermanentStageError(f"{what}: {where} is empty")

    def _probe(self, path: Path, media: str) -> tuple[int, int, float | None]:
        if media == "video":
            return probe_video(path, self.ctx)
        width, height = probe_photo(path)
        return width, height, None


# -- the download cache ------------------------------------------------------------------------
CACHE_KEEP_SECONDS = 600.0  # used this recently: a running job may be about to open it
ABANDONED_SECONDS = 3600.0  # a ".dl-*.part" this old belongs to a download that was killed


def prune_cache(folder: Path, max_bytes: int, *, now: float | None = None) -> list[Path]:
    """Remove least recently used files (by mtime: a cache hit touches its file) until ``folder``
    holds at most ``max_bytes``, never one used in the last ``CACHE_KEEP_SECONDS``; and partial
    downloads abandoned for ``ABANDONED_SECONDS``. Safe with other workers pruning or downloading
    at the same time (vanished files are skipped). Returns what was removed."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    entries: list[tuple[float, int, Path]] = []
    try:
        listing = list(folder.iterdir())
    except FileNotFoundError:
        return removed
    for path in listing:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if path.name.startswith("."):  # a download in flight, or one that was killed
            if path.name.startswith(".dl-") and now - st.st_mtime > ABANDONED_SECONDS:
                path.unlink(missing_ok=True)
                removed.append(path)
            continue
        entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    for mtime, size, path in sorted(entries):
        if total <= max_bytes or now - mtime < CACHE_KEEP_SECONDS:
            break  # sorted oldest first: everything after is newer still
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed


# -- probing -------------------------------------------------------------------------------------
def probe_photo(path: Path) -> tuple[int, int]:
    """Pillow ``verify`` (structure) and a full decode (pixels); returns (width, height)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                image.load()
                width, height = image.size
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise PermanentStageError(f"downloaded file is not a readable image ({type(exc).__name__}: {exc})") from None
    if min(width, height) < MIN_SIDE:
        raise PermanentStageError(f"downloaded image is only {width}x{height}")
    return width, height


def probe_video(path: Path, ctx: StageContext | None = None) -> tuple[int, int, float]:
    """``stages.media.probe``: a video stream, a sane size and duration; returns (w, h, seconds)."""
    from stages import media

    info = media.probe(path, ctx)
    if "video" not in info.streams or not info.width or not info.height:
        raise PermanentStageError("downloaded file has no video stream")
    if min(info.width, info.height) < MIN_SIDE or max(info.width, info.height) > 8192:
        raise PermanentStageError(f"downloaded video is {info.width}x{info.height}")
    if not info.duration or not 0.5 <= info.duration <= MAX_VIDEO_SECONDS:
        raise PermanentStageError(f"downloaded video lasts {info.duration}s")
    return info.width, info.height, info.duration


# -- response parsing ----------------------------------------------------------------------------
def parse_search(
    data: Any, media: str, max_bytes: int, *, hint: str = "", target: tuple[int, int] = TARGET
) -> list[Hit]:
    """The usable hits of a search answer (at most 80); ``PermanentStageError`` when it has no list."""
    key = "videos" if media == "videos" else "photos"
    records = as_list(data.get(key)) if isinstance(data, dict) else None
    if records is None:
        raise PermanentStageError(f"pexels search answered JSON without a {key!r} list", hint=hint)
    parse = _video_hit if media == "videos" else _photo_hit
    return [h for h in (parse(r, max_bytes, target) for r in records[:80] if isinstance(r, dict)) if h and h.files]


def _hit_id(value: Any) -> int | str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    if isinstance(value, str) and 0 < len(value.strip()) <= 64:
        return value.strip()
    return None


def _user(record: dict[str, Any]) -> tuple[str, str]:
    user = as_dict(record.get("user")) or {}
    name = plain_text(record.get("photographer"), 200) or plain_text(user.get("name"), 200)
    url = _http_url(record.get("photographer_url")) or _http_url(user.get("url"))
    return name, url


def _photo_hit(record: dict[str, Any], max_bytes: int, target: tuple[int, int] = TARGET) -> Hit | None:
    hit_id = _hit_id(record.get("id"))
    if hit_id is None:
        return None
    src = as_dict(record.get("src")) or {}
    files: list[dict[str, Any]] = []
    original = _http_url(src.get("original"))
    if original:
        # Pexels resizes on the fly: ask for exactly the scene size, cropped (a ~200-400 kB JPEG).
        sep = "&" if "?" in original else "?"
        files.append(
            {
                "url": f"{original}{sep}auto=compress&cs=tinysrgb&fit=crop&w={target[0]}&h={target[1]}",
                "width": target[0],
                "height": target[1],
            }
        )
    for name in ("large2x", "portrait", "large"):
        url = _http_url(src.get(name))
        if url and all(f["url"] != url for f in files):
            files.append({"url": url, "width": None, "height": None})
    author, author_url = _user(record)
    return Hit(
        id=hit_id,
        media="photo",
        page_url=_http_url(record.get("url")),
        author=author,
        author_url=author_url,
        files=files,
        alt=plain_text(record.get("alt"), 300),
    )


def _video_hit(record: dict[str, Any], max_bytes: int, target: tuple[int, int] = TARGET) -> Hit | None:
    hit_id = _hit_id(record.get("id"))
    if hit_id is None:
        return None
    files = []
    for f in (as_list(record.get("video_files")) or [])[:50]:
        if not isinstance(f, dict):
            continue
        url = _http_url(f.get("link"))
        kind = f.get("file_type") if isinstance(f.get("file_type"), str) else ""
        if not url or (kind and kind != "video/mp4"):
            continue
        size = as_float(f.get("size"))
        if size is not None and size > max_bytes:
            continue
        quality = f.get("quality") if isinstance(f.get("quality"), str) else None
        files.append({"url": url, "width": _int(f.get("width")), "height": _int(f.get("height")), "quality": quality})
    files.sort(key=lambda f: _video_rank(f, target))
    author, author_url = _user(record)
    return Hit(
        id=hit_id,
        media="video",
        page_url=_http_url(record.get("url")),
        author=author,
        author_url=author_url,
        files=files,
    )


def _video_rank(f: dict[str, Any], target: tuple[int, int] = TARGET) -> tuple[int, int, int]:
    """The frame's orientation first (portrait for 9:16), then "hd" (720p-1080p: big enough, not a 4K
    download), then closest to the frame's size."""
    w, h = f.get("width") or 0, f.get("height") or 0
    shape = (w > h) - (h > w)  # 1 landscape, -1 portrait, 0 square
    same_shape = 0 if w and h and shape == (target[0] > target[1]) - (target[1] > target[0]) else 1
    hd = 0 if f.get("quality") == "hd" else 1
    distance = abs(w - target[0]) + abs(h - target[1]) if w and h else 10**6
    return (same_shape, hd, distance)


def _photo_ext(url: str) -> str:
    suffix = Path(urlsplit(url).path).suffix.lower()
    return suffix if suffix in (".jpg", ".jpeg", ".png", ".webp") else ".jpg"


def _http_url(value: Any) -> str:
    return as_http_url(value)


def _int(value: Any) -> int | None:
    return as_int(value, low=0, high=100_000)


def _short(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def copy_into(src: Path, dest: Path) -> None:
    """Put a cached file into the stage folder: a hard link when possible (no copy), else a copy."""
    from stages import media

    media.link_or_copy(src, dest)
