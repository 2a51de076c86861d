"""Publish destination ``tiktok``: the Content Posting API's direct post, exactly once per job; and
the video numbers for the analytics pull (``TikTokMetrics``).

Settings (``theme.settings["publish"]["tiktok"]``, env vars as fallback). Credentials from the
environment are sent only to ``open.tiktokapis.com`` (or hosts in ``TRENDREEL_PROVIDER_HOSTS``):

* ``access_token`` (``TIKTOK_ACCESS_TOKEN``): a user access token with the ``video.publish`` scope
  (``video.list`` too for the analytics pull); **or** ``refresh_token`` + ``client_key`` +
  ``client_secret`` (``TIKTOK_REFRESH_TOKEN``, ``TIKTOK_CLIENT_KEY``, ``TIKTOK_CLIENT_SECRET``),
  exchanged at ``token_url`` (default ``https://open.tiktokapis.com/v2/oauth/token/``) for a fresh
  access token on every run (TikTok's access tokens live 24 hours, refresh tokens a year);
* ``privacy_level`` (default ``SELF_ONLY``; ``PUBLIC_TO_EVERYONE``, ``MUTUAL_FOLLOW_FRIENDS``,
  ``FOLLOWER_OF_CREATOR``): must be one the creator's account offers *now* (creator info, read
  before every post). An app that has not passed TikTok's audit may post ``SELF_ONLY`` only;
* ``disable_comment`` / ``disable_duet`` / ``disable_stitch`` (false; forced on when the creator
  turned them off), ``is_aigc`` (true: the video is labelled AI-generated),
  ``brand_content_toggle`` / ``brand_organic_toggle`` (false), ``video_cover_timestamp_ms`` (1000);
* ``base_url`` (``https://open.tiktokapis.com``), ``chunk_bytes`` (10 MiB; 5-64 MiB),
  ``timeout`` (60 s per request), ``poll_interval`` (5 s), ``publish_wait`` (60 s).

The protocol (https://developers.tiktok.com/doc/content-posting-api-reference-direct-post,
https://developers.tiktok.com/doc/content-posting-api-media-transfer-guide,
https://developers.tiktok.com/doc/content-posting-api-reference-get-video-status):

1. ``POST /v2/post/publish/creator_info/query/`` -> privacy levels the account offers, whether
   comments/duets/stitches are off, the longest video it may post (20 requests/minute per token);
2. ``POST /v2/post/publish/video/init/`` with ``post_info`` (title up to 2200 UTF-16 units, privacy
   level, interaction switches) and ``source_info`` (``FILE_UPLOAD``, ``video_size``, ``chunk_size``,
   ``total_chunk_count``) -> ``publish_id`` and ``upload_url`` (6 requests/minute per token; the
   upload URL is valid for an hour);
3. ``PUT upload_url`` each chunk in order with ``Content-Range: bytes a-b/size`` (no token travels
   there): ``206`` for a chunk, ``201`` when the file is whole. Chunk rules: at least 5 MB and at
   most 64 MB, the last chunk may carry the remainder (up to 128 MB); a video under 5 MB goes whole;
   ``total_chunk_count = floor(size / chunk_size)``, 1 to 1000 chunks;
4. ``POST /v2/post/publish/status/fetch/`` with the ``publish_id`` (30 requests/minute) ->
   ``PROCESSING_UPLOAD`` (with ``uploaded_bytes``) / ``PROCESSING_DOWNLOAD`` / ``SEND_TO_USER_INBOX``
   / ``PUBLISH_COMPLETE`` (``publicaly_available_post_id`` once a public post passed moderation)
   / ``FAILED`` (``fail_reason``).

Exactly once: the ``publish_id`` and ``upload_url`` are kept in the job's Publication row
(``stages.publish.PublicationSessionStore``) *before* the first byte is sent. A retry asks the
status first: complete -> only reads the result; still processing -> waits; partly uploaded and
the upload URL still valid -> continues from the last whole chunk TikTok holds; partly uploaded
and the URL expired, or failed -> forgets it (an upload TikTok never got whole never becomes a
post) and starts over. A fresh ``init`` therefore happens only when no post can come of the old one.

Errors (``error.code`` in every answer): ``access_token_invalid`` / ``scope_not_authorized`` /
``scope_permission_missed`` permanent naming ``TIKTOK_ACCESS_TOKEN``;
``privacy_level_option_mismatch`` / ``unaudited_client_can_only_post_to_private_accounts`` /
``spam_risk_user_banned_from_posting`` / ``invalid_params`` permanent with what to change;
``rate_limit_exceeded`` (429) transient after ``Retry-After`` (else a minute: the limits are per
minute); the posting caps ``spam_risk_too_many_posts``, ``spam_risk_too_many_pending_share`` and
``reached_active_user_cap`` transient after an hour (TikTok names no time; the caps are daily);
5xx and timeouts transient.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from stages import http
from stages.analytics import Reading, chunks
from stages.base import PermanentStageError, StageContext, TransientStageError
from stages.payload import PayloadError, as_dict, as_int, as_list, loads
from stages.providers import social
from stages.publish import Delivery, Package, PublicationSessionStore
from stages.text import plain_text

NAME = "tiktok"
DEFAULT_BASE_URL = "https://open.tiktokapis.com"
TOKEN_PATH = "/v2/oauth/token/"
TIKTOK_HOSTS = (DEFAULT_BASE_URL,)
PRIVACY_LEVELS = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")
MIN_CHUNK = 5 * 1024 * 1024  # the media transfer guide's chunk rules
MAX_CHUNK = 64 * 1024 * 1024
MAX_LAST_CHUNK = 128 * 1024 * 1024
MAX_CHUNKS = 1000
DEFAULT_CHUNK = 10 * 1024 * 1024
UPLOAD_URL_TTL = timedelta(minutes=55)  # "valid for one hour"; a little margin for clocks and the request
MAX_RECOVERIES = 3
LIMITS = social.Limits("tiktok", max_chars=2200, max_hashtags=30, length=social.utf16_length)
TOKEN_HINT = (
    'TIKTOK_ACCESS_TOKEN (or theme.settings["publish"]["tiktok"]["access_token"]; needs the video.publish scope)'
)
REFRESH_HINT = "TIKTOK_REFRESH_TOKEN / TIKTOK_CLIENT_KEY / TIKTOK_CLIENT_SECRET"
# Waits for TikTok's caps (seconds): its rate limits are per minute; the posting caps are daily and
# TikTok says no more, so an hour is our guess at a useful next look.
WAITS = {
    "rate_limit_exceeded": 60.0,
    "spam_risk_too_many_posts": 3600.0,
    "spam_risk_too_many_pending_share": 3600.0,
    "reached_active_user_cap": 3600.0,
}
PERMANENT = {
    "access_token_invalid": f"the TikTok token is invalid or expired; set {TOKEN_HINT}, or {REFRESH_HINT}",
    "scope_not_authorized": f"the TikTok user did not grant video.publish to the app; authorise again ({TOKEN_HINT})",
    "scope_permission_missed": f"the token lacks a scope this call needs; authorise again ({TOKEN_HINT})",
    "privacy_level_option_mismatch": 'the account does not offer that privacy level; set theme.settings["publish"]'
    '["tiktok"]["privacy_level"] to one the creator info lists',
    "unaudited_client_can_only_post_to_private_accounts": "the TikTok app is not audited yet: it may post "
    'SELF_ONLY only (theme.settings["publish"]["tiktok"]["privacy_level"]) until TikTok audits it',
    "spam_risk_user_banned_from_posting": "TikTok stopped this account from posting; see the account in the app",
    "spam_risk_text": "TikTok judged the caption as spam; change the title or hashtags and re-run publish",
    "url_ownership_unverified": "TikTok refused a pulled URL; this publisher uploads the file instead",
    "invalid_params": "TikTok refused the request's values; see the message",
}
# fail_reason values worth another try; anything else (format, duration, size checks) is permanent
TRANSIENT_FAILURES = {"internal", "internal_error", "publish_cancelled"}


class _Expired(Exception):
    """The upload URL answered 403/404/410: it expired (an hour) or never existed."""


def _error(response: httpx.Response) -> tuple[str, str]:
    """TikTok's ``error.code`` and ``error.message`` ("", "" when the body has none)."""
    try:
        data = loads(response.content[: 256 * 1024])
    except PayloadError:
        return "", ""
    error = as_dict(data.get("error")) if isinstance(data, dict) else None
    if error is None:
        return "", ""
    return plain_text(error.get("code"), 80), plain_text(error.get("message"), 300)


def _classify(response: httpx.Response) -> None:
    """httpx response hook: TikTok's error codes, which the generic status mapping cannot read."""
    if response.request.method == "PUT":  # the upload URL (not TikTok's JSON API)
        if response.status_code in (403, 404, 410):
            raise _Expired()
        return
    if response.status_code < 400:
        return
    response.read()
    code, message = _error(response)
    detail = f"tiktok refused the request: {code}" + (f" ({message})" if message else "")
    if code in WAITS:
        after = http.retry_after_seconds(response)
        raise TransientStageError(detail, retry_after=after if after is not None else WAITS[code])
    if code in PERMANENT:
        raise PermanentStageError(detail, hint=PERMANENT[code])


def chunk_plan(size: int, chunk_bytes: int) -> tuple[int, int]:
    """(chunk_size, total_chunk_count) by the media transfer guide's rules."""
    if size < MIN_CHUNK:
        return size, 1  # "uploaded as a whole, with chunk_size equal to the entire video"
    chunk = max(MIN_CHUNK, min(MAX_CHUNK, chunk_bytes, size))
    count = size // chunk
    if size - (count - 1) * chunk > MAX_LAST_CHUNK or count > MAX_CHUNKS:
        raise PermanentStageError(
            f"tiktok: a {size // (1024 * 1024)} MiB video does not fit TikTok's chunk rules with {chunk} byte chunks",
            hint='raise theme.settings["publish"]["tiktok"]["chunk_bytes"] (up to 64 MiB)',
        )
    return chunk, count


def chunk_range(index: int, chunk: int, count: int, size: int) -> tuple[int, int]:
    """Bytes [start, end] of chunk ``index``; the last one carries the remainder."""
    start = index * chunk
    end = size - 1 if index == count - 1 else start + chunk - 1
    return start, end


@dataclass
class TikTokPost:
    publish_id: str
    post_id: str | None
    url: str
    privacy: str
    status: str
    resumed: bool
    bytes: int
    username: str = ""


class TikTokClient(social.PlatformClient):
    """TikTok's API with the job's credentials: token refresh, calls, error mapping (shared by the
    publisher and the analytics reader)."""

    name = NAME
    hint_setting = TOKEN_HINT
    hosts = TIKTOK_HOSTS
    classify = staticmethod(_classify)

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx)
        self.base_url = self.url_setting("base_url", DEFAULT_BASE_URL)
        self.token_url = self.url_setting("token_url", self.base_url + TOKEN_PATH, base=False)
        self.access_token = self.credential("access_token", "TIKTOK_ACCESS_TOKEN", self.base_url)
        self.refresh_token = self.credential("refresh_token", "TIKTOK_REFRESH_TOKEN", self.token_url)
        self.client_key = self.credential("client_key", "TIKTOK_CLIENT_KEY", self.token_url)
        self.client_secret = self.credential("client_secret", "TIKTOK_CLIENT_SECRET", self.token_url)
        self.refreshable = bool(self.refresh_token and self.client_key and self.client_secret)
        if not self.refreshable and not self.access_token:
            raise PermanentStageError(
                "tiktok: missing access_token", hint=f"set {TOKEN_HINT}, or {REFRESH_HINT} for the refresh flow"
            )
        self.timeout = http.float_setting(ctx, NAME, "timeout", 60.0)
        self.max_wait = http.float_setting(ctx, NAME, "max_wait", 5.0)

    def token(self, client: httpx.Client) -> str:
        """The access token: the configured one, or a fresh one from the refresh token (once a run)."""
        if self._token:
            return self._token
        if not self.refreshable:
            self._token = str(self.access_token)
            return self._token
        response = self.request(
            "POST",
            self.token_url,
            client=client,
            hint_setting=REFRESH_HINT,
            max_wait=self.max_wait,
            data={
                "client_key": self.client_key,
                "client_secret": self.client_secret,
                "grant_type": "refresh_token",
                "refresh_token": self.refresh_token,
            },
        )
        data = self.json(response, "the token endpoint's answer", f"check {REFRESH_HINT}")
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            error = plain_text(data.get("error"), 80) if isinstance(data, dict) else ""
            raise PermanentStageError(
                "tiktok: the token endpoint returned no access_token" + (f" ({error})" if error else ""),
                hint=f"check {REFRESH_HINT}",
            )
        self.adopt(token, made_from=self.refresh_token, label="the access token refreshed with TIKTOK_REFRESH_TOKEN")
        if data.get("refresh_token") not in (None, self.refresh_token):
            self.ctx.logger.warning(
                "tiktok: the token endpoint rotated the refresh token; the configured one still works"
            )
        return token

    def call(
        self, client: httpx.Client, path: str, body: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """POST a JSON body to the API; its ``data`` object (an ``error.code`` other than ok raises)."""
        response = self.request(
            "POST",
            f"{self.base_url}{path}",
            client=client,
            max_wait=self.max_wait,
            headers={
                "Authorization": f"Bearer {self.token(client)}",
                "Content-Type": "application/json; charset=UTF-8",
            },
            content=json.dumps(body or {}, ensure_ascii=False).encode("utf-8"),
            **kwargs,
        )
        data = self.json(response, f"the answer of {path}", "check base_url")
        if not isinstance(data, dict):
            raise PermanentStageError(f"tiktok: the answer of {path} is not a JSON object", hint="check base_url")
        code, message = _error(response)
        if code and code != "ok":
            raise PermanentStageError(f"tiktok: {path} answered {code}" + (f" ({message})" if message else ""))
        return as_dict(data.get("data")) or {}

    def status(self, client: httpx.Client, publish_id: str) -> dict[str, Any]:
        """A post's status (``/v2/post/publish/status/fetch/``; 30 requests/minute per token)."""
        return self.call(client, "/v2/post/publish/status/fetch/", {"publish_id": publish_id})


class TikTokPublisher(TikTokClient):
    """The ``tiktok`` destination (``stages.publish.Publisher``)."""

    destination = NAME

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx)
        self.privacy = social.check_choice(
            NAME,
            "privacy_level",
            self.setting("privacy_level", default="SELF_ONLY"),
            PRIVACY_LEVELS,
            setting='theme.settings["publish"]["tiktok"]["privacy_level"]',
        )
        self.flags = {
            name: social.as_flag(NAME, name, self.setting(name, default=default))
            for name, default in (
                ("disable_comment", False),
                ("disable_duet", False),
                ("disable_stitch", False),
                ("is_aigc", True),
                ("brand_content_toggle", False),
                ("brand_organic_toggle", False),
            )
        }
        self.cover_ms = as_int(self.setting("video_cover_timestamp_ms", default=1000), low=0, high=3_600_000)
        if self.cover_ms is None:
            raise PermanentStageError("tiktok: video_cover_timestamp_ms must be a number of milliseconds")
        self.chunk_bytes = as_int(self.setting("chunk_bytes", default=DEFAULT_CHUNK), low=1, high=MAX_CHUNK, default=0)
        if not self.chunk_bytes:
            raise PermanentStageError("tiktok: chunk_bytes must be 5 to 64 MiB", hint="e.g. 10485760 (10 MiB)")
        self.poll_interval = social.seconds(NAME, "poll_interval", self.setting("poll_interval", default=5.0))
        self.publish_wait = social.seconds(NAME, "publish_wait", self.setting("publish_wait", default=60.0))

    # -- steps ------------------------------------------------------------------------------
    def creator_info(self, client: httpx.Client) -> dict[str, Any]:
        return self.call(client, "/v2/post/publish/creator_info/query/")

    def post_info(self, metadata: dict[str, Any], creator: dict[str, Any]) -> tuple[dict[str, Any], social.Caption]:
        """The post's metadata, checked against TikTok's limits and what this account offers now."""
        options = [str(o) for o in as_list(creator.get("privacy_level_options")) or [] if isinstance(o, str)]
        if options and self.privacy not in options:
            raise PermanentStageError(
                f"tiktok: the account does not offer privacy level {self.privacy} (it offers {', '.join(options)})",
                hint='set theme.settings["publish"]["tiktok"]["privacy_level"] to one of those',
            )
        longest = as_int(creator.get("max_video_post_duration_sec"), low=1, high=86_400)
        if longest:
            social.check_duration(
                NAME, metadata.get("duration"), low=1, high=longest, hint="this account cannot post videos that long"
            )
        cap = social.caption(metadata, LIMITS)
        info: dict[str, Any] = {
            "title": cap.text,
            "privacy_level": self.privacy,
            "video_cover_timestamp_ms": self.cover_ms,
        }
        for name in ("disable_comment", "disable_duet", "disable_stitch"):
            # the creator's own switch wins: a feature they turned off stays off
            info[name] = self.flags[name] or bool(creator.get(name.replace("disable_", "") + "_disabled"))
        for name in ("is_aigc", "brand_content_toggle", "brand_organic_toggle"):
            info[name] = self.flags[name]
        return info, cap

    def upload(
        self,
        client: httpx.Client,
        session: dict[str, Any],
        path,
        offset: int,
        progress: Callable[[float, str], None],
    ) -> None:
        """PUT the chunks from the one holding ``offset`` on, in order; a failed chunk asks the status
        for the bytes TikTok holds and continues (``MAX_RECOVERIES`` times), then fails transient."""
        size, chunk, count = int(session["size"]), int(session["chunk_size"]), int(session["chunks"])
        index = min(offset // chunk, count - 1) if offset < size else count
        recoveries = 0
        with open(path, "rb") as fh:
            while index < count:
                start, end = chunk_range(index, chunk, count, size)
                fh.seek(start)
                body = fh.read(end - start + 1)
                try:
                    response = self.request(
                        "PUT",
                        str(session["upload_url"]),
                        client=client,
                        attempts=1,
                        max_wait=self.max_wait,
                        headers={
                            "Content-Type": "video/mp4",
                            "Content-Range": f"bytes {start}-{end}/{size}",
                        },
                        content=body,
                    )
                except _Expired:
                    raise TransientStageError(
                        "tiktok: the upload URL expired mid-upload; the next attempt asks where it stands"
                    ) from None
                except TransientStageError as exc:
                    recoveries += 1
                    if recoveries > MAX_RECOVERIES or (exc.retry_after or 0) > self.max_wait:
                        raise
                    self.ctx.logger.warning("tiktok: chunk %d failed (%s); asking the status", index, exc.message)
                    time.sleep(exc.retry_after if exc.retry_after is not None else min(2.0, 0.25 * 2**recoveries))
                    held = as_int(self.status(client, str(session["publish_id"])).get("uploaded_bytes"), high=2**62)
                    index = min((held or 0) // chunk, index)
                    continue
                if response.status_code not in (200, 201, 206):
                    raise PermanentStageError(f"tiktok: the upload URL answered HTTP {response.status_code}")
                index += 1
                done = min(size, (end + 1))
                progress(done / size, f"Uploaded {done // 1024} of {size // 1024} KiB to TikTok")

    def outcome(self, data: dict[str, Any]) -> str | None:
        """ "done" / "failed" / None (still on its way) for a status answer."""
        state = plain_text(data.get("status"), 40)
        if state in ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX"):
            return "done"
        if state == "FAILED":
            return "failed"
        return None

    def failed(self, data: dict[str, Any], store: PublicationSessionStore) -> None:
        """A FAILED post: no video came of it; forget it so a re-run starts over, and say why."""
        reason = plain_text(data.get("fail_reason"), 120) or "unknown"
        store.forget()
        message = f"tiktok: the post failed ({reason})"
        if reason in TRANSIENT_FAILURES:
            raise TransientStageError(message + "; the next attempt posts again")
        raise PermanentStageError(message, hint="TikTok refused the video; see fail_reason, fix it and re-run publish")

    def wait(self, client: httpx.Client, session: dict[str, Any], store: PublicationSessionStore) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            data = self.status(client, str(session["publish_id"]))
            verdict = self.outcome(data)
            if verdict == "failed":
                self.failed(data, store)
            return data if verdict == "done" else None

        return social.wait_for(self.ctx, probe, interval=self.poll_interval, timeout=self.publish_wait, what="tiktok")

    def resume(
        self, client: httpx.Client, session: dict[str, Any], package: Package, store: PublicationSessionStore, progress
    ) -> dict[str, Any] | None:
        """An earlier attempt's post: its final status, or None when it cannot become a post (then a
        new one is started)."""
        data = self.status(client, str(session["publish_id"]))
        verdict = self.outcome(data)
        if verdict == "done":
            return data
        if verdict == "failed":
            self.failed(data, store)
        held = as_int(data.get("uploaded_bytes"), high=2**62) or 0
        size = int(session["size"])
        if held < size:
            started = parse_datetime(str(session.get("started") or "")) or datetime.min.replace(tzinfo=UTC)
            if timezone.now() - started > UPLOAD_URL_TTL:
                self.ctx.logger.warning("tiktok: the stored upload expired before it was whole; starting a new post")
                store.forget()
                return None
            progress(held / size, f"Resuming the TikTok upload at {held // 1024} KiB")
            self.upload(client, session, package.video, held, progress)
        return self.wait(client, session, store)

    # -- the whole thing --------------------------------------------------------------------
    def post(self, package: Package, store: PublicationSessionStore, progress) -> TikTokPost:
        size = package.video.stat().st_size
        if size <= 0:
            raise PermanentStageError("tiktok: the video file is empty", hint="re-run from composition")
        with self.client() as client:
            session = store.load()
            data = None
            resumed = False
            if isinstance(session, dict) and session.get("publish_id"):
                progress(0.0, "Asking TikTok about an earlier attempt's post")
                data = self.resume(client, session, package, store, progress)
                resumed = data is not None
            if data is None:
                creator = self.creator_info(client)
                info, cap = self.post_info(package.metadata, creator)
                chunk, count = chunk_plan(size, self.chunk_bytes)
                init = self.call(
                    client,
                    "/v2/post/publish/video/init/",
                    {
                        "post_info": info,
                        "source_info": {
                            "source": "FILE_UPLOAD",
                            "video_size": size,
                            "chunk_size": chunk,
                            "total_chunk_count": count,
                        },
                    },
                )
                publish_id, upload_url = init.get("publish_id"), init.get("upload_url")
                if not isinstance(publish_id, str) or not publish_id or not isinstance(upload_url, str):
                    raise PermanentStageError("tiktok: the post was initialised without a publish_id or upload_url")
                session = {
                    "publish_id": publish_id,
                    "upload_url": str(httpx.URL(self.base_url).join(upload_url)),
                    "size": size,
                    "chunk_size": chunk,
                    "chunks": count,
                    "started": timezone.now().isoformat(),
                    "privacy": self.privacy,
                    "username": plain_text(creator.get("creator_username"), 100),
                    "caption_style": cap.style,
                }
                store.save(session)  # before the first byte: a crash from here on resumes, never posts twice
                progress(0.0, "Uploading to TikTok")
                self.upload(client, session, package.video, 0, progress)
                progress(1.0, "Waiting for TikTok to publish")
                data = self.wait(client, session, store)
        ids = [str(i) for i in as_list(data.get("publicaly_available_post_id")) or [] if str(i).isdigit()]
        post_id = ids[0] if ids else None
        username = str(session.get("username") or "")
        url = f"https://www.tiktok.com/@{username}/video/{post_id}" if post_id and username else ""
        return TikTokPost(
            publish_id=str(session["publish_id"]),
            post_id=post_id,
            url=url,
            privacy=str(session.get("privacy") or self.privacy),
            status=plain_text(data.get("status"), 40),
            resumed=resumed,
            bytes=size,
            username=username,
        )

    def deliver(self, package: Package, ctx: StageContext) -> Delivery:
        """The direct post, its publish id kept in the job's Publication row between attempts."""
        post = self.post(package, package.session_store(NAME), ctx.progress)
        return Delivery(
            external_id=post.post_id or post.publish_id,
            location=post.url,
            meta={
                "publish_id": post.publish_id,
                "post_id": post.post_id,
                "url": post.url,
                "privacy": post.privacy,
                "username": post.username,
                "upload_status": post.status,
                "resumed": post.resumed,
                "bytes": post.bytes,
            },
        )


class TikTokMetrics(TikTokClient):
    """How posted videos did (``stages.analytics.MetricsReader``), with the publish settings'
    credentials (the token needs ``video.list``).

    ``POST /v2/video/query/?fields=id,view_count,like_count,comment_count,share_count`` with
    ``{"filters": {"video_ids": [...]}}``, 20 ids a call
    (https://developers.tiktok.com/doc/tiktok-api-v2-video-query). TikTok reports no average view
    duration to apps. A public post gets its post id only after moderation: a publication recorded
    without one is asked about again (status fetch) and completed when TikTok has it.
    """

    def read(self, publications: list[Any]) -> dict[int, Reading]:
        with self.client() as client:
            by_post: dict[str, Any] = {}
            for pub in publications:
                meta = pub.meta or {}
                post_id = meta.get("post_id")
                if not post_id and meta.get("publish_id"):
                    post_id = self.learn_post_id(client, pub)
                if post_id:
                    by_post[str(post_id)] = pub
            readings: dict[int, Reading] = {}
            fields = "id,view_count,like_count,comment_count,share_count"
            for part in chunks(sorted(by_post), 20):
                data = self.call(client, f"/v2/video/query/?fields={fields}", {"filters": {"video_ids": part}})
                for video in as_list(data.get("videos")) or []:
                    if isinstance(video, dict) and str(video.get("id")) in by_post:
                        readings[by_post[str(video["id"])].pk] = Reading.of(
                            views=video.get("view_count"),
                            likes=video.get("like_count"),
                            comments=video.get("comment_count"),
                            shares=video.get("share_count"),
                            raw=video,
                        )
        return readings

    def learn_post_id(self, client: httpx.Client, publication: Any) -> str | None:
        """The public post id of a post recorded before moderation finished (None: not yet, or private)."""
        data = self.status(client, str(publication.meta["publish_id"]))
        ids = [str(i) for i in as_list(data.get("publicaly_available_post_id")) or [] if str(i).isdigit()]
        if not ids:
            return None
        meta = publication.meta or {}
        username = (meta.get("username") or "") if isinstance(meta, dict) else ""
        publication.external_id = ids[0]
        publication.meta = {**meta, "post_id": ids[0]}
        if username:
            publication.location = publication.meta["url"] = f"https://www.tiktok.com/@{username}/video/{ids[0]}"
        publication.save(update_fields=["external_id", "location", "meta"])
        return ids[0]
