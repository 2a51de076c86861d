"""Publish destination ``youtube``: YouTube Data API v3 resumable upload, exactly once per job.

Settings (``theme.settings["publish"]["youtube"]``, env vars as fallback):

Credentials from the environment are sent only to Google's endpoints (www.googleapis.com,
oauth2.googleapis.com) or hosts in ``TRENDREEL_PROVIDER_HOSTS``; a theme that moves ``base_url`` or
``token_url`` elsewhere needs its own.

* ``access_token`` (``YOUTUBE_ACCESS_TOKEN``) – an OAuth 2.0 token with the
  ``youtube.upload`` scope; **or** ``refresh_token`` + ``client_id`` + ``client_secret``
  (``YOUTUBE_REFRESH_TOKEN``, ``YOUTUBE_CLIENT_ID``, ``YOUTUBE_CLIENT_SECRET``), exchanged at
  ``token_url`` (default ``https://oauth2.googleapis.com/token``) for a fresh access token on every
  run. When the three refresh values are all present they win (access tokens expire after an hour);
* ``privacy``: ``private`` (default) | ``unlisted`` | ``public``; ``category_id`` (default ``"28"``,
  Science & Technology); ``made_for_kids`` (default false): ``status.selfDeclaredMadeForKids``, the
  audience declaration YouTube asks of every upload (a video left without one waits in Studio for
  the answer; a channel that makes videos for children must say true - COPPA);
* ``analytics_url`` (default ``https://youtubeanalytics.googleapis.com``): where ``YouTubeMetrics``
  reads shares and average view duration (the token needs ``yt-analytics.readonly`` for those;
  views, likes and comments come from the Data API's ``videos.list`` with the upload token);
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

Errors: 401/403 permanent naming ``YOUTUBE_ACCESS_TOKEN``; ``quotaExceeded``/``dailyLimitExceeded``
transient until the daily quota resets (midnight Pacific time, per the Data API's quota guide);
``uploadLimitExceeded`` (the channel's own limit) transient after an hour; ``rateLimitExceeded``,
429, 5xx, timeouts transient. A transient
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
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
from django.utils import timezone

from stages import egress, http
from stages.analytics import Reading, chunks
from stages.base import PermanentStageError, StageContext, TransientStageError
from stages.payload import PayloadError, as_dict, as_int, as_list, loads
from stages.providers import social
from stages.publish import Delivery, Package
from stages.text import plain_text

NAME = "youtube"
DEFAULT_BASE_URL = "https://www.googleapis.com"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_ANALYTICS_URL = "https://youtubeanalytics.googleapis.com"
GOOGLE_HOSTS = (DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, "https://youtube.googleapis.com", DEFAULT_ANALYTICS_URL)
DEFAULT_CHUNK = 8 * 1024 * 1024
MAX_RECOVERIES = 3
PRIVACY = ("private", "unlisted", "public")
TOKEN_HINT = (
    'YOUTUBE_ACCESS_TOKEN (or theme.settings["publish"]["youtube"]["access_token"]; needs the youtube.upload scope)'
)
REFRESH_HINT = "YOUTUBE_REFRESH_TOKEN / YOUTUBE_CLIENT_ID / YOUTUBE_CLIENT_SECRET"
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}
UPLOAD_LIMIT_WAIT = 3600.0
QUOTA_ZONE = ZoneInfo("America/Los_Angeles")  # "Daily quotas reset at midnight Pacific Time"
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
    """Google's error reason (``quotaExceeded``...) from an error answer; "" when there is none."""
    try:
        data = loads(response.content[: 256 * 1024])
    except PayloadError:
        return ""
    error = as_dict(data.get("error")) if isinstance(data, dict) else None
    if error is None:
        return ""
    for item in as_list(error.get("errors")) or []:
        reason = item.get("reason") if isinstance(item, dict) else None
        if isinstance(reason, str) and reason:
            return plain_text(reason, 100)
    return plain_text(error.get("status"), 100)


def until_quota_reset(now: datetime | None = None) -> float:
    """Seconds until the API's daily quota resets (midnight Pacific time), plus a minute."""
    here = (now or datetime.now(UTC)).astimezone(QUOTA_ZONE)
    midnight = (here + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - here).total_seconds() + 60.0


def _classify(response: httpx.Response) -> None:
    """httpx response hook: Google's reasons that the generic status mapping cannot see."""
    status = response.status_code
    if response.request.method == "PUT" and status in (404, 410):
        raise _SessionGone()
    if status in (400, 403, 429):
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > 256 * 1024:
            return  # not one of Google's error answers: the generic mapping says 400/403/429
        response.read()
        reason = _reason(response)
        if reason == "uploadLimitExceeded":  # the channel's own limit (400), over a rolling day
            raise TransientStageError(
                f"youtube refused the upload: {reason}",
                hint="the channel uploaded as many videos as YouTube allows for now; the next attempt is in an hour",
                retry_after=UPLOAD_LIMIT_WAIT,
            )
        if reason in QUOTA_REASONS:
            raise TransientStageError(
                f"youtube refused the upload: {reason}",
                hint="the YouTube API quota is used up for today; it resets at midnight Pacific time, when the "
                "next attempt runs (or raise the quota in the Google Cloud console and retry the job)",
                retry_after=until_quota_reset(),
            )
        if reason in RATE_REASONS:
            raise TransientStageError(
                f"youtube is rate limiting ({reason})", retry_after=http.retry_after_seconds(response)
            )


def build_body(
    metadata: dict[str, Any], *, privacy: str, category_id: str, made_for_kids: bool = False
) -> dict[str, Any]:
    """The video resource for ``part=snippet,status``, within YouTube's limits (title 100
    characters, no ``<``/``>``; description 5000 bytes; tags 500 characters all told)."""

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
        "status": {"privacyStatus": privacy, "selfDeclaredMadeForKids": bool(made_for_kids)},
    }


class YouTubePublisher(http.HttpProvider):
    """The ``youtube`` destination (``stages.publish.Publisher``)."""

    name = destination = NAME

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx)
        self.token_url = str(self.setting("token_url", default=DEFAULT_TOKEN_URL))
        self.base_url = str(self.setting("base_url", default=DEFAULT_BASE_URL)).rstrip("/")
        for what, url in (("token_url", self.token_url), ("base_url", self.base_url)):
            if not url.startswith(("http://", "https://")):
                raise PermanentStageError(
                    f"youtube: {what} {url[:80]!r} is not http(s)",
                    hint=f'leave theme.settings["publish"]["youtube"]["{what}"] out',
                )

        def credential(name: str, env: str, url: str) -> str | None:
            return self.secret(name, env, url=url, hosts=GOOGLE_HOSTS, refuse=True)

        self.access_token = credential("access_token", "YOUTUBE_ACCESS_TOKEN", self.base_url)
        self.refresh_token = credential("refresh_token", "YOUTUBE_REFRESH_TOKEN", self.token_url)
        self.client_id = credential("client_id", "YOUTUBE_CLIENT_ID", self.token_url)
        self.client_secret = credential("client_secret", "YOUTUBE_CLIENT_SECRET", self.token_url)
        self.privacy = str(self.setting("privacy", default="private"))
        self.category_id = str(self.setting("category_id", default="28"))
        self.made_for_kids = social.as_flag(NAME, "made_for_kids", self.setting("made_for_kids", default=False))
        if not re.fullmatch(r"\d{1,3}", self.category_id):
            raise PermanentStageError(
                f"youtube: category_id {self.category_id[:20]!r} is not a YouTube category number",
                hint='set theme.settings["publish"]["youtube"]["category_id"], e.g. "28" (Science & Technology)',
            )
        self.timeout = http.float_setting(ctx, NAME, "timeout", 60.0)
        self.max_wait = http.float_setting(ctx, NAME, "max_wait", 5.0)
        self.chunk_bytes = as_int(self.setting("chunk_bytes", default=DEFAULT_CHUNK), low=0, high=2**40, default=0) or 0
        if self.chunk_bytes <= 0:
            raise PermanentStageError("youtube: chunk_bytes must be a positive integer", hint="e.g. 8388608 (8 MiB)")
        if self.privacy not in PRIVACY:
            raise PermanentStageError(
                f"youtube: privacy {self.privacy[:40]!r} is not one of {', '.join(PRIVACY)}",
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
    def secret_values(self) -> list[str]:
        """Everything scrubbed from messages: the credentials, the refreshed token, the session URI."""
        return [*super().secret_values, *(v for v in (self._token, self._session) if v)]

    def _client(self) -> httpx.Client:
        # 308 here means "Resume Incomplete", not a redirect
        return self.new_client(self.timeout, follow_redirects=False, event_hooks={"response": [_classify]})

    def _call(
        self, client: httpx.Client, method: str, url: str, *, hint: str = TOKEN_HINT, **kwargs: Any
    ) -> httpx.Response:
        return self.request(method, url, client=client, hint_setting=hint, max_wait=self.max_wait, **kwargs)

    def _json(self, response: httpx.Response, what: str, hint: str) -> dict[str, Any]:
        try:
            data = self.json(response, what, hint)
        except PermanentStageError:
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
            bound = next((c for c in self.secrets if c.value == self.refresh_token and c.hosts is not None), None)
            if bound is not None:  # a token made from the environment's refresh token stays on Google's hosts too
                self.secrets.append(
                    egress.bind(token, "the access token refreshed with YOUTUBE_REFRESH_TOKEN", *GOOGLE_HOSTS)
                )
        else:
            self._token = str(self.access_token)
        return self._token

    def _auth(self, client: httpx.Client) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client)}"}

    # -- protocol steps ---------------------------------------------------------------------
    def create_session(self, client: httpx.Client, package: Package, size: int) -> str:
        body = build_body(
            package.metadata, privacy=self.privacy, category_id=self.category_id, made_for_kids=self.made_for_kids
        )
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
        if not isinstance(video_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", video_id):
            raise PermanentStageError(
                "youtube: the finished upload's answer has no video id",
                hint="look in YouTube Studio before re-running (a re-run asks the same session and never uploads twice)",
            )
        status = as_dict(resource.get("status")) or {}
        return YouTubeUpload(
            video_id=video_id,
            url=f"https://www.youtube.com/watch?v={video_id}",
            privacy=plain_text(status.get("privacyStatus"), 20) or self.privacy,
            upload_status=plain_text(status.get("uploadStatus"), 40),
            resumed=resumed,
            bytes=size,
        )

    def deliver(self, package: Package, ctx: StageContext) -> Delivery:
        """The resumable upload, its session kept in the job's Publication row between attempts."""
        upload = self.upload(package, package.session_store(NAME), progress=ctx.progress)
        return Delivery(
            external_id=upload.video_id,
            location=upload.url,
            meta={
                "video_id": upload.video_id,
                "url": upload.url,
                "privacy": upload.privacy,
                "made_for_kids": self.made_for_kids,
                "upload_status": upload.upload_status,
                "resumed": upload.resumed,
                "bytes": upload.bytes,
            },
        )


class YouTubeMetrics(YouTubePublisher):
    """How uploaded videos did (``stages.analytics.MetricsReader``), with the publish settings'
    credentials.

    * views, likes, comments: ``GET {base}/youtube/v3/videos?part=statistics&id=...`` (Data API,
      50 ids a call, 1 quota unit; current numbers);
    * shares, average view duration: ``GET {analytics_url}/v2/reports?ids=channel==MINE&metrics=
      views,likes,comments,shares,averageViewDuration&dimensions=video&filters=video==...`` (YouTube
      Analytics API, which needs ``yt-analytics.readonly`` and lags a day or two). When it cannot be
      read the Data API's numbers still count, and ``raw.analytics_error`` says why.
    """

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx)
        self.analytics_url = str(self.setting("analytics_url", default=DEFAULT_ANALYTICS_URL)).rstrip("/")

    def read(self, publications: list[Any]) -> dict[int, Reading]:
        ids = {str(p.external_id): p for p in publications if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", p.external_id or "")}
        stats: dict[str, dict[str, Any]] = {}
        extra: dict[str, dict[str, Any]] = {}
        problem = ""
        with self._client() as client:
            for part in chunks(sorted(ids), 50):
                response = self._call(
                    client,
                    "GET",
                    f"{self.base_url}/youtube/v3/videos",
                    headers=self._auth(client),
                    params={"part": "statistics", "id": ",".join(part)},
                )
                for item in as_list(self._json(response, "videos.list", "check base_url").get("items")) or []:
                    if isinstance(item, dict) and str(item.get("id")) in ids:
                        stats[str(item["id"])] = as_dict(item.get("statistics")) or {}
            try:
                extra = self._analytics(client, sorted(stats), publications)
            except (PermanentStageError, TransientStageError) as exc:
                problem = exc.message
        readings = {}
        for video_id, numbers in stats.items():
            more = extra.get(video_id, {})
            readings[ids[video_id].pk] = Reading.of(
                views=numbers.get("viewCount"),
                likes=numbers.get("likeCount"),
                comments=numbers.get("commentCount"),
                shares=more.get("shares"),
                avg_view_seconds=more.get("averageViewDuration"),
                raw={"statistics": numbers, "analytics": more, **({"analytics_error": problem} if problem else {})},
            )
        return readings

    def _analytics(self, client: httpx.Client, video_ids: list[str], publications: list[Any]) -> dict[str, dict]:
        if not video_ids:
            return {}
        start = min(p.created for p in publications).date().isoformat()
        found: dict[str, dict[str, Any]] = {}
        for part in chunks(video_ids, 200):
            response = self._call(
                client,
                "GET",
                f"{self.analytics_url}/v2/reports",
                headers=self._auth(client),
                params={
                    "ids": "channel==MINE",
                    "startDate": start,
                    "endDate": timezone.now().date().isoformat(),
                    "metrics": "views,likes,comments,shares,averageViewDuration",
                    "dimensions": "video",
                    "filters": "video==" + ",".join(part),
                },
            )
            table = self._json(response, "the analytics report", "check analytics_url")
            names = [str((as_dict(h) or {}).get("name")) for h in as_list(table.get("columnHeaders")) or []]
            for row in as_list(table.get("rows")) or []:
                if isinstance(row, list) and len(row) == len(names):
                    record = dict(zip(names, row, strict=True))
                    found[str(record.get("video"))] = record
        return found
