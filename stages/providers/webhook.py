"""Publish destination ``webhook``: a signed JSON POST to a URL the operator controls.

Settings (``theme.settings["publish"]["webhook"]``, env vars as fallback):

* ``url`` (``TRENDREEL_WEBHOOK_URL``, required) – where to POST;
* ``secret`` (``TRENDREEL_WEBHOOK_SECRET``, required) – HMAC key for the signature. The
  environment's secret signs only requests to ``TRENDREEL_WEBHOOK_URL``'s host (or hosts in
  ``TRENDREEL_PROVIDER_HOSTS``): a theme that points the webhook elsewhere needs its own secret;
* ``video_url`` (optional) – a template such as ``"https://cdn.example/outbox/{job_id}/video.mp4"``
  for receivers that fetch the file over HTTP; the payload always carries the local path too;
* ``timeout`` (optional, seconds, default 20).

Every request carries ``X-Trendreel-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` and
``X-Trendreel-Delivery: <id>``, where the id is ``sha256("<job id>:webhook")``: the same for every
attempt of the same job, so a receiver that remembers ids ignores a repeat. A repeat can only
happen when an attempt died between the receiver's 2xx and the Publication row being written
(or when the receiver answered 5xx after acting): delivery is at-least-once plus the dedupe id.

Only a 2xx counts as delivered. Redirects are not followed (a signed POST must not silently go
elsewhere); 3xx and other non-2xx answers are permanent with a hint to check the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import httpx

from stages import http
from stages.base import PermanentStageError, StageContext
from stages.payload import as_float
from stages.providers.outbox import sha256_file
from stages.publish import Delivery, Package
from stages.text import plain_text

NAME = "webhook"
SIGNATURE_HEADER = "X-Trendreel-Signature"
DELIVERY_HEADER = "X-Trendreel-Delivery"


def provider_setting(
    ctx: StageContext, section: str, name: str, env: str | None, *, required: bool = True, default: Any = None
) -> Any:
    """Publishing settings are required unless said otherwise (a destination without its URL or
    secret must not half-work)."""
    return http.provider_setting(ctx, section, name, env, required=required, default=default)


def delivery_id(job_id: int, destination: str = NAME) -> str:
    return hashlib.sha256(f"{int(job_id)}:{destination}".encode()).hexdigest()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookPublisher(http.HttpProvider):
    """The ``webhook`` destination (``stages.publish.Publisher``)."""

    name = destination = NAME
    hint_setting = (
        'theme.settings["publish"]["webhook"] url and secret, or TRENDREEL_WEBHOOK_URL / TRENDREEL_WEBHOOK_SECRET'
    )

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx)
        self.url = str(provider_setting(ctx, NAME, "url", "TRENDREEL_WEBHOOK_URL"))
        if not self.url.startswith(("http://", "https://")):
            raise PermanentStageError(
                "webhook: url must start with http:// or https://",
                hint='check theme.settings["publish"]["webhook"]["url"] or TRENDREEL_WEBHOOK_URL',
            )
        secret = self.secret(
            "secret",
            "TRENDREEL_WEBHOOK_SECRET",
            url=self.url,
            hosts=[os.environ.get("TRENDREEL_WEBHOOK_URL")],
            required=True,
        )
        self.signing_key = str(secret)
        self.video_url = provider_setting(ctx, NAME, "video_url", None, required=False, default="")
        timeout = as_float(provider_setting(ctx, NAME, "timeout", None, required=False, default=20.0))
        if timeout is None or not 0 < timeout <= 600:
            raise PermanentStageError("webhook: timeout must be a number of seconds up to 600", hint=self.hint_setting)
        self.timeout = timeout

    def payload(self, package: Package, earlier: dict[str, dict[str, Any]]) -> dict[str, Any]:
        meta = package.metadata
        outbox = earlier.get("outbox") or {}
        video_path = outbox.get("video") or str(package.video)
        thumbnail = None
        if package.thumbnail is not None:
            thumbnail = {"path": str(package.thumbnail)}
            folder = outbox.get("location")
            if folder:
                candidate = Path(folder) / ("thumbnail" + (package.thumbnail.suffix.lower() or ".jpg"))
                if candidate.exists():
                    thumbnail["path"] = str(candidate)
        video: dict[str, Any] = {
            "path": video_path,
            "bytes": package.video.stat().st_size,
            "sha256": sha256_file(package.video),
        }
        if self.video_url:
            video["url"] = str(self.video_url).format(job_id=package.job_id)
        return {
            "event": "video.published",
            "delivery_id": delivery_id(package.job_id),
            "job_id": package.job_id,
            "title": meta.get("title", ""),
            "description": meta.get("description", ""),
            "hashtags": list(meta.get("hashtags") or []),
            "sources": list(meta.get("sources") or []),
            "duration": meta.get("duration"),
            "width": meta.get("width"),
            "height": meta.get("height"),
            "theme": meta.get("theme", ""),
            "video": video,
            "thumbnail": thumbnail,
            # Destinations delivered before this one (list the webhook last to get the YouTube link).
            "published": {
                name: {k: v for k, v in result.items() if k in ("external_id", "url", "location", "video_id")}
                for name, result in earlier.items()
                if name != NAME
            },
        }

    def deliver(
        self, package: Package, ctx: StageContext | None = None, *, client: httpx.Client | None = None
    ) -> Delivery:
        payload = self.payload(package, package.published)
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        did = payload["delivery_id"]
        own = client is None
        client = client or self.new_client(self.timeout, follow_redirects=False)
        try:
            response = self.request(
                "POST",
                self.url,
                client=client,
                content=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    SIGNATURE_HEADER: sign(self.signing_key, body),
                    DELIVERY_HEADER: did,
                },
                max_bytes=256 * 1024,
            )
        finally:
            if own:
                client.close()
        shown = _safe_url(self.url)
        if not 200 <= response.status_code < 300:
            raise PermanentStageError(
                f"webhook answered HTTP {response.status_code} (not 2xx) at {shown}",
                hint='the webhook URL redirects or is not a receiver; check theme.settings["publish"]["webhook"]["url"]',
            )
        excerpt = ""
        if response.content:  # the receiver's words, as text: shown in the console, never parsed
            excerpt = http.masked(
                plain_text(response.content[:4096].decode("utf-8", "replace"), 200), self.secret_values
            )
        return Delivery(
            external_id=did,
            location=shown,
            meta={"delivery_id": did, "status_code": response.status_code, "url": shown, "response": excerpt},
        )


def response_excerpt(content: bytes, secrets: list[str]) -> str:
    """The receiver's answer as one short line of text for the console (never parsed, never trusted)."""
    if not content:
        return ""
    return http.masked(plain_text(content[:4096].decode("utf-8", "replace"), 200), secrets)


def _safe_url(url: str) -> str:
    """The URL without query or credentials: receivers often put a token there."""
    parts = httpx.URL(url)
    return str(parts.copy_with(query=None, fragment=None, userinfo=b""))
