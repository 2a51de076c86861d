"""Publish destination ``instagram``: a Reel through the Graph API's resumable upload, exactly once
per job; and the Reel's insights for the analytics pull (``InstagramMetrics``).

Settings (``theme.settings["publish"]["instagram"]``, env vars as fallback). Credentials from the
environment are sent only to ``graph.facebook.com`` and ``rupload.facebook.com`` (or hosts in
``TRENDREEL_PROVIDER_HOSTS``):

* ``user_id`` (``INSTAGRAM_USER_ID``, required): the Instagram professional account's id;
* ``access_token`` (``INSTAGRAM_ACCESS_TOKEN``, required): a Facebook Login for Business user (or
  system user) token with ``instagram_basic``, ``instagram_content_publish`` (and
  ``instagram_manage_insights`` for the analytics pull). With ``app_id`` + ``app_secret``
  (``INSTAGRAM_APP_ID``, ``INSTAGRAM_APP_SECRET``) it is exchanged at ``/oauth/access_token``
  (``fb_exchange_token``) for a fresh long-lived token at the start of every run;
* ``share_to_feed`` (true), ``thumb_offset`` (ms into the video for the cover, optional),
  ``graph_url`` (``https://graph.facebook.com``), ``upload_url`` (``https://rupload.facebook.com``),
  ``api_version`` (``v21.0``), ``timeout`` (120 s), ``poll_interval`` (5 s), ``publish_wait`` (90 s).

The protocol (https://developers.facebook.com/documentation/instagram-platform/content-publishing/resumable-uploads,
the IG User ``media`` / ``media_publish`` / ``content_publishing_limit`` and IG Container references):

1. ``GET /{user}/content_publishing_limit?fields=config,quota_usage``: an account may publish
   ``config.quota_total`` posts through the API in a rolling 24 hours (50 today);
2. ``POST /{user}/media`` with ``media_type=REELS``, ``upload_type=resumable``, ``caption``
   (2200 characters, 30 hashtags, 20 @mentions at most), ``share_to_feed`` -> the container ``id``
   and its upload ``uri`` on rupload.facebook.com;
3. ``POST uri`` with ``Authorization: OAuth <token>``, ``offset: 0``, ``file_size: <bytes>`` and
   the file -> ``{"success": true}``;
4. ``GET /{container}?fields=status_code,status`` until ``FINISHED`` (``IN_PROGRESS`` meanwhile;
   ``ERROR`` with the reason in ``status``; ``EXPIRED`` after 24 hours unpublished; ``PUBLISHED``);
5. ``POST /{user}/media_publish?creation_id={container}`` -> the media id; then
   ``GET /{media}?fields=permalink,shortcode`` for its link.

Exactly once: only ``media_publish`` makes a post, and a container is published at most once. The
container id is kept in the job's Publication row before the first byte, and the row records each
step before it is asked for (uploaded, publish asked). A retry reads the container's status:
``PUBLISHED`` -> finds the media among the account's latest posts (the publish answer was lost),
``FINISHED`` -> publishes it, ``IN_PROGRESS`` -> waits (or sends the file again, whole, when the
upload never answered: bytes into a container make no post), ``ERROR`` -> fails with Meta's
reason, ``EXPIRED`` -> starts over (an expired container never became a post).

Errors (Graph's ``error.code`` / ``error_subcode``): rate limits (codes 4, 17, 32, 613, 80001-80009)
transient after ``estimated_time_to_regain_access`` from ``X-Business-Use-Case-Usage`` (minutes),
else ``Retry-After``, else a minute; the publishing limit (subcode 2207042, or a used-up
``content_publishing_limit``) transient after an hour (the window rolls); media not ready (9007 /
2207027) transient; ``is_transient`` answers and codes 1, 2 transient; 190 (token) permanent naming
``INSTAGRAM_ACCESS_TOKEN``; 10 / 200-299 (permissions) permanent naming the permission; other
codes permanent with Meta's message. rupload answers ``debug_info.retriable``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from stages import http
from stages.analytics import Reading
from stages.base import PermanentStageError, StageContext, TransientStageError
from stages.payload import PayloadError, as_dict, as_float, as_int, as_list, loads
from stages.providers import social
from stages.publish import Delivery, Package, PublicationSessionStore
from stages.text import plain_text

NAME = "instagram"
DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_UPLOAD_URL = "https://rupload.facebook.com"
DEFAULT_VERSION = "v21.0"
META_HOSTS = (DEFAULT_GRAPH_URL, DEFAULT_UPLOAD_URL)
# Reels specifications (IG User media reference): 3 s to 15 min, 300 MB.
MIN_SECONDS, MAX_SECONDS, MAX_BYTES = 3.0, 900.0, 300 * 1024 * 1024
LIMITS = social.Limits("instagram", max_chars=2200, max_hashtags=30, max_mentions=20)
TOKEN_HINT = (
    'INSTAGRAM_ACCESS_TOKEN (or theme.settings["publish"]["instagram"]["access_token"]; needs '
    "instagram_basic and instagram_content_publish)"
)
RATE_CODES = {4, 17, 32, 613, *range(80001, 80010)}
LIMIT_SUBCODE = 2207042  # "reached the maximum number of posts allowed via the API in 24 hours"
NOT_READY = {(9007, 2207027), (9007, None)}
DEFAULT_WAIT = 60.0
PUBLISHING_LIMIT_WAIT = 3600.0  # the 24-hour window rolls; Meta names no time
VERSION_PATTERN = r"v\d{1,3}\.\d{1,3}"


def _graph_error(response: httpx.Response) -> dict[str, Any]:
    try:
        data = loads(response.content[: 256 * 1024])
    except PayloadError:
        return {}
    return (as_dict(data.get("error")) or {}) if isinstance(data, dict) else {}


def _usage_wait(response: httpx.Response) -> float | None:
    """Seconds until Meta lets the app call again, from ``X-Business-Use-Case-Usage`` (minutes), else
    ``Retry-After``."""
    raw = response.headers.get("X-Business-Use-Case-Usage", "")
    try:
        usage = json.loads(raw) if raw else {}
    except ValueError:
        usage = {}
    minutes = [
        as_float(entry.get("estimated_time_to_regain_access"), low=0, high=24 * 60)
        for entries in (usage.values() if isinstance(usage, dict) else [])
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
    ]
    minutes = [m for m in minutes if m]
    if minutes:
        return max(minutes) * 60.0
    return http.retry_after_seconds(response)


def _classify(response: httpx.Response) -> None:
    """httpx response hook: Meta's error codes (Graph) and ``debug_info`` (rupload)."""
    if response.status_code < 400:
        return
    response.read()
    if response.request.url.path.startswith("/ig-api-upload/"):
        try:
            info = as_dict((loads(response.content[:65536]) or {}).get("debug_info")) or {}
        except (PayloadError, AttributeError):
            info = {}
        detail = plain_text(info.get("message"), 200) or f"HTTP {response.status_code}"
        if info.get("retriable") is True or response.status_code >= 500:
            raise TransientStageError(f"instagram: the upload failed: {detail}", retry_after=_usage_wait(response))
        raise PermanentStageError(f"instagram: the upload was refused: {detail}", hint=f"check {TOKEN_HINT}")
    error = _graph_error(response)
    if not error:
        return  # not a Graph answer: the generic status mapping decides
    code = as_int(error.get("code"), high=10**9)
    subcode = as_int(error.get("error_subcode"), high=10**9)
    message = plain_text(error.get("message"), 300)
    detail = f"instagram refused the request: ({code}{f'/{subcode}' if subcode else ''}) {message}"
    if subcode == LIMIT_SUBCODE:
        raise TransientStageError(detail, retry_after=PUBLISHING_LIMIT_WAIT)
    if code in RATE_CODES:
        wait = _usage_wait(response)
        raise TransientStageError(detail, retry_after=wait if wait is not None else DEFAULT_WAIT)
    if (code, subcode) in NOT_READY or code in (1, 2) or error.get("is_transient") is True:
        raise TransientStageError(detail)
    if code == 190:
        raise PermanentStageError(detail, hint=f"the Instagram token is invalid or expired; set {TOKEN_HINT}")
    if code == 10 or (code is not None and 200 <= code <= 299):
        raise PermanentStageError(detail, hint=f"the token lacks a permission; authorise again ({TOKEN_HINT})")
    raise PermanentStageError(detail, hint='check theme.settings["publish"]["instagram"] and the video')


@dataclass
class Reel:
    container_id: str
    media_id: str
    url: str
    resumed: bool
    bytes: int
    found_by: str  # "publish" (this attempt published it) or "status" (an earlier attempt had)


class InstagramClient(social.PlatformClient):
    """The Graph API with the job's credentials (shared by the publisher and the analytics reader)."""

    name = NAME
    hint_setting = TOKEN_HINT
    hosts = META_HOSTS
    classify = staticmethod(_classify)

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx)
        self.graph_url = self.url_setting("graph_url", DEFAULT_GRAPH_URL)
        self.upload_url = self.url_setting("upload_url", DEFAULT_UPLOAD_URL)
        self.version = str(self.setting("api_version", default=DEFAULT_VERSION))
        if not re.fullmatch(VERSION_PATTERN, self.version):
            raise PermanentStageError(
                f"instagram: api_version {self.version[:20]!r} is not like v21.0",
                hint='set theme.settings["publish"]["instagram"]["api_version"]',
            )
        self.user_id = str(self.setting("user_id", "INSTAGRAM_USER_ID", required=True))
        if not self.user_id.isdigit():
            raise PermanentStageError(
                "instagram: user_id must be the account's numeric id",
                hint='set INSTAGRAM_USER_ID (or theme.settings["publish"]["instagram"]["user_id"])',
            )
        self.access_token = self.credential("access_token", "INSTAGRAM_ACCESS_TOKEN", self.graph_url, required=True)
        self.app_id = self.credential("app_id", "INSTAGRAM_APP_ID", self.graph_url)
        self.app_secret = self.credential("app_secret", "INSTAGRAM_APP_SECRET", self.graph_url)
        self.timeout = http.float_setting(ctx, NAME, "timeout", 120.0)
        self.max_wait = http.float_setting(ctx, NAME, "max_wait", 5.0)

    def graph(self, path: str) -> str:
        return f"{self.graph_url}/{self.version}/{path.lstrip('/')}"

    def token(self, client: httpx.Client) -> str:
        """The configured token, exchanged for a fresh long-lived one when the app's id and secret are
        set (once a run)."""
        if self._token:
            return self._token
        if not (self.app_id and self.app_secret):
            self._token = str(self.access_token)
            return self._token
        response = self.request(
            "GET",
            self.graph("oauth/access_token"),
            client=client,
            max_wait=self.max_wait,
            params={
                "grant_type": "fb_exchange_token",
                "client_id": self.app_id,
                "client_secret": self.app_secret,
                "fb_exchange_token": self.access_token,
            },
        )
        data = self.json(response, "the token exchange's answer", f"check {TOKEN_HINT}")
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise PermanentStageError(
                "instagram: the token exchange returned no access_token", hint=f"check {TOKEN_HINT}"
            )
        return self.adopt(token, made_from=self.access_token, label="the token exchanged for INSTAGRAM_ACCESS_TOKEN")

    def call(self, client: httpx.Client, method: str, path: str, **params: Any) -> dict[str, Any]:
        """A Graph call (the token in the Authorization header, never in a URL); its JSON object."""
        response = self.request(
            method,
            self.graph(path),
            client=client,
            max_wait=self.max_wait,
            headers={"Authorization": f"OAuth {self.token(client)}"},
            **({"params": params} if method == "GET" else {"data": params}),
        )
        data = self.json(response, f"the answer of {path.split('?')[0]}", "check graph_url")
        if not isinstance(data, dict):
            raise PermanentStageError(f"instagram: the answer of {path} is not a JSON object")
        return data


class InstagramPublisher(InstagramClient):
    """The ``instagram`` destination (``stages.publish.Publisher``)."""

    destination = NAME

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx)
        self.share_to_feed = social.as_flag(NAME, "share_to_feed", self.setting("share_to_feed", default=True))
        raw_offset = self.setting("thumb_offset")
        self.thumb_offset = None if raw_offset is None else as_int(raw_offset, low=0, high=900_000)
        if raw_offset is not None and self.thumb_offset is None:
            raise PermanentStageError("instagram: thumb_offset must be milliseconds into the video")
        self.poll_interval = social.seconds(NAME, "poll_interval", self.setting("poll_interval", default=5.0))
        self.publish_wait = social.seconds(NAME, "publish_wait", self.setting("publish_wait", default=90.0))

    # -- steps ------------------------------------------------------------------------------
    def check_limit(self, client: httpx.Client) -> None:
        """The account's API publishing quota, before a container is made."""
        data = self.call(client, "GET", f"{self.user_id}/content_publishing_limit", fields="config,quota_usage")
        entry = next(iter(as_list(data.get("data")) or []), None)
        if not isinstance(entry, dict):
            return
        total = as_int((as_dict(entry.get("config")) or {}).get("quota_total"), high=10**6)
        used = as_int(entry.get("quota_usage"), high=10**6)
        if total is not None and used is not None and used >= total:
            raise TransientStageError(
                f"instagram: the account published {used} of {total} posts the API allows in 24 hours",
                hint="the window rolls; the next attempt tries in an hour",
                retry_after=PUBLISHING_LIMIT_WAIT,
            )

    def check_video(self, package: Package, size: int) -> None:
        social.check_duration(
            NAME,
            package.metadata.get("duration"),
            low=MIN_SECONDS,
            high=MAX_SECONDS,
            hint="a Reel is 3 s to 15 min long; re-run from script_generation with another length",
        )
        if size > MAX_BYTES:
            raise PermanentStageError(
                f"instagram: the video is {size // (1024 * 1024)} MB; a Reel takes 300 MB at most",
                hint="re-run from composition",
            )

    def create(self, client: httpx.Client, cap: social.Caption) -> dict[str, Any]:
        params: dict[str, Any] = {
            "media_type": "REELS",
            "upload_type": "resumable",
            "caption": cap.text,
            "share_to_feed": "true" if self.share_to_feed else "false",
        }
        if self.thumb_offset is not None:
            params["thumb_offset"] = str(self.thumb_offset)
        data = self.call(client, "POST", f"{self.user_id}/media", **params)
        container = data.get("id")
        if not isinstance(container, str) or not container.isdigit():
            raise PermanentStageError("instagram: the media container came back without an id")
        uri = data.get("uri") if isinstance(data.get("uri"), str) else ""
        default = f"{self.upload_url}/ig-api-upload/{self.version}/{container}"
        return {"container": container, "uri": str(httpx.URL(self.upload_url).join(uri)) if uri else default}

    def send(self, client: httpx.Client, session: dict[str, Any], package: Package, size: int) -> None:
        """The whole file into the container (offset 0). Sending it again is harmless: bytes in a
        container make no post until ``media_publish``."""
        response = self.request(
            "POST",
            str(session["uri"]),
            client=client,
            max_wait=self.max_wait,
            headers={
                "Authorization": f"OAuth {self.token(client)}",
                "offset": "0",
                "file_size": str(size),
                "Content-Type": "application/octet-stream",
            },
            content=package.video.read_bytes(),
        )
        data = self.json(response, "the upload's answer")
        if not (isinstance(data, dict) and data.get("success") is True):
            raise TransientStageError("instagram: the upload did not say success; the next attempt sends it again")

    def container_status(self, client: httpx.Client, container: str) -> tuple[str, str]:
        data = self.call(client, "GET", container, fields="status_code,status")
        return plain_text(data.get("status_code"), 40), plain_text(data.get("status"), 300)

    def wait_finished(self, client: httpx.Client, session: dict[str, Any], store: PublicationSessionStore) -> str:
        """FINISHED or PUBLISHED; ERROR and EXPIRED raise (and forget the container)."""

        def probe() -> str | None:
            code, status = self.container_status(client, str(session["container"]))
            if code in ("FINISHED", "PUBLISHED"):
                return code
            if code == "ERROR":
                store.forget()
                raise PermanentStageError(
                    f"instagram: Meta could not process the video ({status or 'no reason given'})",
                    hint="see the reason; fix the video (re-run from composition) or the settings, then re-run publish",
                )
            if code == "EXPIRED":
                store.forget()
                raise TransientStageError("instagram: the container expired unpublished; the next attempt starts over")
            return None

        return social.wait_for(
            self.ctx, probe, interval=self.poll_interval, timeout=self.publish_wait, what="instagram"
        )

    def find_published(self, client: httpx.Client, session: dict[str, Any]) -> str:
        """The media an earlier attempt published (its answer was lost): the account's latest posts,
        matched by caption, no older than the publish request."""
        asked = parse_datetime(str(session.get("publish_asked") or "")) or timezone.now() - timedelta(days=1)
        data = self.call(client, "GET", f"{self.user_id}/media", fields="id,caption,timestamp", limit="25")
        for item in as_list(data.get("data")) or []:
            if not isinstance(item, dict) or not str(item.get("id") or "").isdigit():
                continue
            when = parse_datetime(str(item.get("timestamp") or "").replace("+0000", "+00:00"))
            if item.get("caption") == session.get("caption") and (when is None or when >= asked - timedelta(minutes=5)):
                return str(item["id"])
        raise PermanentStageError(
            f"instagram: container {session['container']} is published but its post is not among the latest 25",
            hint="look at the account: the Reel is there; nothing was posted twice",
        )

    def publish(self, client: httpx.Client, session: dict[str, Any], store: PublicationSessionStore) -> str:
        store.update({**session, "publish_asked": timezone.now().isoformat()})  # before the one call that posts
        data = self.call(client, "POST", f"{self.user_id}/media_publish", creation_id=str(session["container"]))
        media = data.get("id")
        if not isinstance(media, str) or not media.isdigit():
            raise PermanentStageError(
                "instagram: media_publish answered without a media id",
                hint="look at the account before re-running (a re-run finds the published Reel, never posts twice)",
            )
        return media

    def permalink(self, client: httpx.Client, media: str) -> str:
        data = self.call(client, "GET", media, fields="permalink,shortcode")
        link = data.get("permalink")
        return link if isinstance(link, str) and link.startswith("https://") else ""

    # -- the whole thing --------------------------------------------------------------------
    def reel(self, package: Package, store: PublicationSessionStore, progress) -> Reel:
        size = package.video.stat().st_size
        if size <= 0:
            raise PermanentStageError("instagram: the video file is empty", hint="re-run from composition")
        with self.client() as client:
            session = store.load()
            resumed = isinstance(session, dict) and bool(session.get("container"))
            code = ""
            if resumed:
                progress(0.0, "Asking Instagram about an earlier attempt's container")
                code, _ = self.container_status(client, str(session["container"]))
                if code == "EXPIRED":
                    self.ctx.logger.warning("instagram: the stored container expired unpublished; starting over")
                    store.forget()
                    resumed, code = False, ""
            if not resumed:
                self.check_video(package, size)
                cap = social.caption(package.metadata, LIMITS)
                self.check_limit(client)
                session = {**self.create(client, cap), "caption": cap.text, "uploaded": False, "size": size}
                store.save(session)  # before the first byte: a crash from here on resumes, never posts twice
            if code != "PUBLISHED" and not session.get("uploaded"):
                progress(0.1, "Uploading to Instagram")
                self.send(client, session, package, size)
                session = {**session, "uploaded": True}
                store.update(session)
            progress(0.7, "Waiting for Instagram to process the Reel")
            code = code if code == "PUBLISHED" else self.wait_finished(client, session, store)
            if code == "PUBLISHED":
                media, found_by = self.find_published(client, session), "status"
            else:
                progress(0.9, "Publishing the Reel")
                media, found_by = self.publish(client, session, store), "publish"
            url = self.permalink(client, media)
        return Reel(
            container_id=str(session["container"]),
            media_id=media,
            url=url,
            resumed=resumed,
            bytes=size,
            found_by=found_by,
        )

    def deliver(self, package: Package, ctx: StageContext) -> Delivery:
        """The Reel, its container kept in the job's Publication row between attempts."""
        reel = self.reel(package, package.session_store(NAME), ctx.progress)
        return Delivery(
            external_id=reel.media_id,
            location=reel.url,
            meta={
                "media_id": reel.media_id,
                "container_id": reel.container_id,
                "url": reel.url,
                "upload_status": "PUBLISHED",
                "resumed": reel.resumed,
                "found_by": reel.found_by,
                "bytes": reel.bytes,
            },
        )


class InstagramMetrics(InstagramClient):
    """How published Reels did (``stages.analytics.MetricsReader``), with the publish settings'
    credentials (the token needs ``instagram_manage_insights``).

    ``GET /{media}/insights?metric=views,likes,comments,shares,ig_reels_avg_watch_time`` per Reel
    (the IG Media insights reference; ``views`` replaced ``plays`` in 2025;
    ``ig_reels_avg_watch_time`` is in milliseconds). A Reel Meta no longer knows (deleted) is left
    out; a token or rate-limit error stops the platform's read.
    """

    METRICS = ("views", "likes", "comments", "shares", "ig_reels_avg_watch_time")

    def read(self, publications: list[Any]) -> dict[int, Reading]:
        readings: dict[int, Reading] = {}
        with self.client() as client:
            for pub in publications:
                if not str(pub.external_id or "").isdigit():
                    continue
                try:
                    data = self.call(client, "GET", f"{pub.external_id}/insights", metric=",".join(self.METRICS))
                except PermanentStageError as exc:
                    if "(100" in exc.message:  # this media is gone or has no insights: the others still count
                        self.ctx.logger.info("instagram: no insights for %s: %s", pub.external_id, exc.message)
                        continue
                    raise
                values: dict[str, Any] = {}
                for item in as_list(data.get("data")) or []:
                    if not isinstance(item, dict):
                        continue
                    first = next(iter(as_list(item.get("values")) or []), None)
                    total = as_dict(item.get("total_value"))
                    value = (first or {}).get("value") if isinstance(first, dict) else None
                    values[str(item.get("name"))] = total.get("value") if total else value
                watch_ms = as_float(values.get("ig_reels_avg_watch_time"), low=0, high=86_400_000)
                readings[pub.pk] = Reading.of(
                    views=values.get("views"),
                    likes=values.get("likes"),
                    comments=values.get("comments"),
                    shares=values.get("shares"),
                    avg_view_seconds=watch_ms / 1000.0 if watch_ms is not None else None,
                    raw=values,
                )
        return readings
