"""Publish destination ``youtube``: YouTube Data API v3 resumable upload, exactly once per job.

Settings (``theme.settings["publish"]["youtube"]``, env vars as fallback):

* ``access_token`` (``YOUTUBE_ACCESS_TOKEN``) – an OAuth 2.0 token with the
  ``youtube.upload`` scope; **or** ``refresh_token`` + ``client_id`` + ``client_secret``
  (``YOUTUBE_REFRESH_TOKEN``, ``YOUTUBE_CLIENT_ID``, ``YOUTUBE_CLIENT_SECRET``), exchanged at
  ``token_url`` (default ``https://oauth2.googleapis.com/token``) for a fresh access token on every
  run. When the three refresh values are all present they win (access tokens expire after an hour);
* ``privacy``: ``private`` (default) | ``unlisted`` | ``public``; ``category_id`` (default ``"28"``,
  Science & Technology);
* ``base_url`` (default ``https://www.googleapis.com``), ``chunk_bytes`` (default 8 MiB; Google wants
  a multiple of 256 KiB except for the last chunk), ``timeout`` (seconds per request, default 60).

The protocol (https://developers.google.com/youtube/v3/guides/using_resumable_upload_protocol):

1. ``POST {base}/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`` with the JSON
   metadata -> ``200`` and the session URI in ``Location``;
2. ``PUT`` the bytes to the session URI in chunks with ``Content-Range: bytes a-b/size``; the server
   answers ``308 Resume Incomplete`` with ``Range: bytes=0-N`` (it holds bytes 0..N: continue from
   N+1, which may be less than what was sent) and finally ``200``/``201`` with the video resource.
3. ``PUT`` with ``Content-Range: bytes */size`` and no body asks where a session stands: 308
   (+ Range) = continue, 200/201 = already complete (the resource again), 404/410 = expired.

Exactly once: the session URI is handed to a ``SessionStore`` (the stage keeps it in the job's
``Publication`` row for ``youtube``, state ``uploading``) *before* the first byte is sent. A later
attempt finds it, asks the session where it stands and resumes it – or, when it had completed
before the crash, just reads the video id. A second session is opened only when none was stored
(then no byte was ever sent under the old one, so no video can come of it) or when Google says
the stored one expired (404/410: an expired session never produced a video).

Errors: 401/403 permanent naming ``YOUTUBE_ACCESS_TOKEN``; ``quotaExceeded``/``uploadLimitExceeded``
permanent with a quota hint; ``rateLimitExceeded``, 429, 5xx, timeouts transient. A transient
failure while sending bytes is recovered in the call by asking the session where it stands and
continuing (up to ``MAX_RECOVERIES`` times), then left to the orchestrator's retry, which resumes
the stored session.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from stages.base import PermanentStageError, StageContext, TransientStageError
from stages.providers import http
from stages.providers.outbox import Package
from stages.providers.webhook import provider_setting

NAME = "youtube"
DEFAULT_BASE_URL = "https://www.googleapis.com"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_CHUNK = 8 * 1024 * 1024
MAX_RECOVERIES = 3
PRIVACY = ("private", "unlisted", "public")
TOKEN_HINT = (
    'YOUTUBE_ACCESS_TOKEN (or theme.settings["publish"]["youtube"]["access_token"]; needs the youtube.upload scope)'
)
REFRESH_HINT = "YOUTUBE_REFRESH_TOKEN / YOUTUBE_CLIENT_ID / YOUTUBE_CLIENT_SECRET"
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded", "uploadLimitExceeded"}
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


class SessionStore(Protocol):
    """Where the upload session URI lives between attempts. ``save`` must be durable on return."""

    def load(self) -> str | None: ...

    def save(self, uri: str) -> None: ...

    def forget(self) -> None: ...


@dataclass
class MemoryStore:
    """A store for tests and one-off use (not crash-safe)."""

    uri: str | None = None
    saved: list[str] = field(default_factory=list)

    def load(self) -> str | None:
        return self.uri

    def save(self, uri: str) -> None:
        self.uri = uri
        self.saved.append(uri)

    def forget(self) -> None:
        self.uri = None


@dataclass
class YouTubeUpload:
    video_id: str
    url: str
    privacy: str
    upload_status: str
    resumed: bool  # an earlier attempt's session was continued (or found complete)
    bytes: int


class _SessionGone(Exception):
    """The session URI answered 404/410: it expired (or never existed) and holds no video."""


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ""
    for item in error.get("errors") or []:
        if isinstance(item, dict) and item.get("reason"):
            return str(item["reason"])
    return str(error.get("status") or "")


def _classify(response: httpx.Response) -> None:
    """httpx response hook: Google's reasons that the generic status mapping cannot see."""
    status = response.status_code
    if response.request.method == "PUT" and status in (404, 410):
        raise _SessionGone()
    if status in (403, 429):
        response.read()
        reason = _reason(response)
        if reason in QUOTA_REASONS:
            raise PermanentStageError(
                f"youtube refused the upload: {reason}",
                hint="the YouTube API quota (or the channel's upload limit) is used up for today; it resets at "
                "midnight Pacific time – re-run publish then, or raise the quota in the Google Cloud console",
            )
        if reason in RATE_REASONS:
            raise TransientStageError(
                f"youtube is rate limiting ({reason})", retry_after=http.retry_after_seconds(response)
            )


def build_body(metadata: dict[str, Any], *, privacy: str, category_id: str) -> dict[str, Any]:
    """The video resource for ``part=snippet,status``, within YouTube's limits."""

    def clean(text: str) -> str:
        return str(text or "").replace("<", "").replace(">", "").strip()

    title = " ".join(clean(metadata.get("title")).split()) or "Untitled"
    if len(title) > 100:
        title = title[:99].rstrip() + "…"
    hashtags = [str(h) for h in metadata.get("hashtags") or [] if str(h).strip()]
    tags: list[str] = []
    total = 0
    for tag in hashtags:
        tag = clean(tag.lstrip("#"))
        if not tag or tag in tags:
            continue
        cost = len(tag) + (2 if " " in tag else 0) + (1 if tags else 0)
        if total + cost > 500:
            break
        tags.append(tag)
        total += cost
    parts = [clean(metadata.get("description"))]
    if hashtags:
        parts.append(" ".join(clean(h) for h in hashtags))
    sources = [s for s in metadata.get("sources") or [] if isinstance(s, dict) and s.get("url")]
    if sources:
        parts.append("Sources:\n" + "\n".join(clean(s["url"]) for s in sources))
    description = "\n\n".join(p for p in parts if p)
    while len(description.encode("utf-8")) > 5000:
        description = description[: len(description) - 100]
    return {
        "snippet": {"title": title, "description": description, "tags": tags, "categoryId": str(category_id)},
        "status": {"privacyStatus": privacy, "selfDeclaredMadeForKids": False},
    }


class YouTubePublisher:
    destination = NAME

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

        def opt(name: str, env: str | None = None, default: Any = None) -> Any:
            return provider_setting(ctx, NAME, name, env, required=False, default=default)

        self.access_token = opt("access_token", "YOUTUBE_ACCESS_TOKEN")
        self.refresh_token = opt("refresh_token", "YOUTUBE_REFRESH_TOKEN")
        self.client_id = opt("client_id", "YOUTUBE_CLIENT_ID")
        self.client_secret = opt("client_secret", "YOUTUBE_CLIENT_SECRET")
        self.token_url = str(opt("token_url", None, DEFAULT_TOKEN_URL))
        self.base_url = str(opt("base_url", None, DEFAULT_BASE_URL)).rstrip("/")
        self.privacy = str(opt("privacy", None, "private"))
        self.category_id = str(opt("category_id", None, "28"))
        self.timeout = float(opt("timeout", None, 60.0))
        self.max_wait = float(opt("max_wait", None, 5.0))
        try:
            self.chunk_bytes = int(opt("chunk_bytes", None, DEFAULT_CHUNK))
        except (TypeError, ValueError):
            self.chunk_bytes = 0
        if self.chunk_bytes <= 0:
            raise PermanentStageError("youtube: chunk_bytes must be a positive integer", hint="e.g. 8388608 (8 MiB)")
        if self.privacy not in PRIVACY:
            raise PermanentStageError(
                f"youtube: privacy {self.privacy!r} is not one of {', '.join(PRIVACY)}",
                hint='set theme.settings["publish"]["youtube"]["privacy"]',
            )
        self.refreshable = bool(self.refresh_token and self.client_id and self.client_secret)
        if not self.refreshable and not self.access_token:
            raise PermanentStageError(
                "youtube: missing access_token",
                hint=f"set {TOKEN_HINT}, or {REFRESH_HINT} for the refresh flow",
            )
        self._token: str | None = None
        self._session: str | None = None

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def secrets(self) -> list[str | None]:
        return [self.access_token, self.refresh_token, self.client_secret, self._token, self._session]

    def _client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
            headers={"User-Agent": http.USER_AGENT},
            follow_redirects=False,  # 308 here means "Resume Incomplete", not a redirect
            event_hooks={"response": [_classify]},
        )

    def _call(
        self, client: httpx.Client, method: str, url: str, *, hint: str = TOKEN_HINT, **kwargs: Any
    ) -> httpx.Response:
        return http.request(
            self.ctx,
            method,
            url,
            provider="youtube",
            hint_setting=hint,
            secrets=self.secrets,
            client=client,
            max_wait=self.max_wait,
            **kwargs,
        )

    def _json(self, response: httpx.Response, what: str, hint: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PermanentStageError(f"youtube: {what} was not a JSON object", hint=hint)
        return data

    def token(self, client: httpx.Client) -> str:
        if self._token:
            return self._token
        if self.refreshable:
            response = self._call(
                client,
                "POST",
                self.token_url,
                hint=REFRESH_HINT,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": self.refresh_token,
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
            )
            data = self._json(response, "the token endpoint's answer", f"check token_url and {REFRESH_HINT}")
            token = data.get("access_token")
            if not isinstance(token, str) or not token:
                raise PermanentStageError(
                    "youtube: the token endpoint returned no access_token", hint=f"check {REFRESH_HINT}"
                )
            self._token = token
        else:
            self._token = str(self.access_token)
        return self._token

    def _auth(self, client: httpx.Client) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client)}"}

    # -- protocol steps ---------------------------------------------------------------------
    def create_session(self, client: httpx.Client, package: Package, size: int) -> str:
        body = build_body(package.metadata, privacy=self.privacy, category_id=self.category_id)
        response = self._call(
            client,
            "POST",
            f"{self.base_url}/upload/youtube/v3/videos",
            params={"uploadType": "resumable", "part": "snippet,status"},
            headers={
                **self._auth(client),
                "Content-Type": "application/json; charset=UTF-8",
                "X-Upload-Content-Length": str(size),
                "X-Upload-Content-Type": "video/mp4",
            },
            content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        )
        location = response.headers.get("Location")
        if response.status_code != 200 or not location:
            raise PermanentStageError(
                f"youtube: starting the upload answered HTTP {response.status_code} without a session Location",
                hint='check theme.settings["publish"]["youtube"]["base_url"]',
            )
        return str(httpx.URL(self.base_url).join(location))

    def query(self, client: httpx.Client, session: str, size: int) -> tuple[str, Any]:
        """Where a session stands: ("done", resource) | ("at", next byte) | ("gone", None)."""
        try:
            response = self._call(
                client,
                "PUT",
                session,
                headers={**self._auth(client), "Content-Range": f"bytes */{size}", "Content-Length": "0"},
            )
        except _SessionGone:
            return "gone", None
        return self._state(response, size)

    def _state(self, response: httpx.Response, size: int) -> tuple[str, Any]:
        if response.status_code in (200, 201):
            return "done", self._json(
                response,
                "the finished upload's answer",
                "the upload finished but the answer carried no video; look in YouTube Studio before re-running "
                "(a re-run asks the same session again and never uploads twice)",
            )
        if response.status_code == 308:
            match = _RANGE.search(response.headers.get("Range", ""))
            offset = int(match.group(2)) + 1 if match else 0
            if offset > size:
                raise PermanentStageError(f"youtube acknowledged {offset} bytes of a {size}-byte file")
            return "at", offset
        raise PermanentStageError(
            f"youtube: the upload session answered HTTP {response.status_code}",
            hint='check theme.settings["publish"]["youtube"]["base_url"]',
        )

    def send(
        self, client: httpx.Client, session: str, path, size: int, offset: int, progress: Callable[[float, str], None]
    ) -> dict[str, Any]:
        recoveries = 0
        stalls = 0
        with open(path, "rb") as fh:
            while True:
                fh.seek(offset)
                chunk = fh.read(self.chunk_bytes)
                end = offset + len(chunk) - 1
                try:
                    response = self._call(
                        client,
                        "PUT",
                        session,
                        attempts=1,
                        headers={
                            **self._auth(client),
                            "Content-Type": "video/mp4",
                            "Content-Range": f"bytes {offset}-{end}/{size}",
                        },
                        content=chunk,
                    )
                    state, value = self._state(response, size)
                except _SessionGone:
                    raise TransientStageError(
                        "youtube: the upload session expired mid-upload; the next attempt starts a new one"
                    ) from None
                except TransientStageError as exc:
                    recoveries += 1
                    if recoveries > MAX_RECOVERIES or (exc.retry_after or 0) > self.max_wait:
                        raise
                    self.ctx.logger.warning(
                        "youtube: chunk at byte %d failed (%s); asking the session", offset, exc.message
                    )
                    time.sleep(exc.retry_after if exc.retry_after is not None else min(2.0, 0.25 * 2**recoveries))
                    try:
                        state, value = self.query(client, session, size)
                    except TransientStageError:
                        continue  # resend from the same offset; the recovery budget bounds this
                    if state == "gone":
                        raise TransientStageError(
                            "youtube: the upload session expired mid-upload; the next attempt starts a new one"
                        ) from None
                if state == "done":
                    return value
                stalls = stalls + 1 if value <= offset and chunk else 0
                if stalls > MAX_RECOVERIES:
                    raise TransientStageError(f"youtube keeps acknowledging only {value} of {size} bytes")
                offset = value
                progress(offset / size, f"Uploaded {offset // 1024} of {size // 1024} KiB to YouTube")

    # -- the whole thing --------------------------------------------------------------------
    def upload(
        self,
        package: Package,
        store: SessionStore,
        *,
        progress: Callable[[float, str], None] | None = None,
        client: httpx.Client | None = None,
    ) -> YouTubeUpload:
        progress = progress or (lambda f, m: None)
        size = package.video.stat().st_size
        if size <= 0:
            raise PermanentStageError("youtube: the video file is empty", hint="re-run from composition")
        own = client is None
        client = client or self._client()
        try:
            session = store.load()
            resumed = False
            offset = 0
            if session:
                self._session = session
                progress(0.0, "Resuming the YouTube upload of an earlier attempt")
                state, value = self.query(client, session, size)
                if state == "done":
                    return self._finish(value, size, resumed=True)
                if state == "at":
                    offset, resumed = value, True
                else:
                    self.ctx.logger.warning("youtube: the stored upload session expired; starting a new one")
                    store.forget()
                    session = None
            if not session:
                session = self.create_session(client, package, size)
                self._session = session
                store.save(session)  # before the first byte: a crash from here on resumes, never re-uploads
            progress(offset / size, "Uploading to YouTube")
            resource = self.send(client, session, package.video, size, offset, progress)
            return self._finish(resource, size, resumed=resumed)
        finally:
            if own:
                client.close()

    def _finish(self, resource: dict[str, Any], size: int, *, resumed: bool) -> YouTubeUpload:
        video_id = resource.get("id")
        if not isinstance(video_id, str) or not video_id:
            raise PermanentStageError(
                "youtube: the finished upload's answer has no video id",
                hint="look in YouTube Studio before re-running (a re-run asks the same session and never uploads twice)",
            )
        status = resource.get("status") if isinstance(resource.get("status"), dict) else {}
        return YouTubeUpload(
            video_id=video_id,
            url=f"https://www.youtube.com/watch?v={video_id}",
            privacy=str(status.get("privacyStatus") or self.privacy),
            upload_status=str(status.get("uploadStatus") or ""),
            resumed=resumed,
            bytes=size,
        )
