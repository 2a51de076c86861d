"""Publish destination ``webhook``: a signed JSON POST to a URL the operator controls.

Settings (``theme.settings["publish"]["webhook"]``, env vars as fallback):

* ``url`` (``TRENDREEL_WEBHOOK_URL``, required) – where to POST;
* ``secret`` (``TRENDREEL_WEBHOOK_SECRET``, required) – HMAC key for the signature;
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stages.base import PermanentStageError, StageContext
from stages.providers import http
from stages.providers.outbox import Package, sha256_file

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


@dataclass
class WebhookDelivery:
    delivery_id: str
    status_code: int
    url: str  # masked: scheme + host + path, no query string (may carry a token)
    response_excerpt: str


class WebhookPublisher:
    destination = NAME

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.url = str(provider_setting(ctx, NAME, "url", "TRENDREEL_WEBHOOK_URL"))
        self.secret = str(provider_setting(ctx, NAME, "secret", "TRENDREEL_WEBHOOK_SECRET"))
        if not self.url.startswith(("http://", "https://")):
            raise PermanentStageError(
                "webhook: url must start with http:// or https://",
                hint='check theme.settings["publish"]["webhook"]["url"] or TRENDREEL_WEBHOOK_URL',
            )
        self.video_url = provider_setting(ctx, NAME, "video_url", None, required=False, default="")
        self.timeout = float(provider_setting(ctx, NAME, "timeout", None, required=False, default=20.0))

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
        self, package: Package, earlier: dict[str, dict[str, Any]] | None = None, *, client: httpx.Client | None = None
    ) -> WebhookDelivery:
        payload = self.payload(package, earlier or {})
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        did = payload["delivery_id"]
        own = client is None
        client = client or httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
            headers={"User-Agent": http.USER_AGENT},
            follow_redirects=False,
        )
        try:
            response = http.request(
                self.ctx,
                "POST",
                self.url,
                provider="webhook",
                hint_setting='theme.settings["publish"]["webhook"] url and secret, or TRENDREEL_WEBHOOK_URL / TRENDREEL_WEBHOOK_SECRET',
                secrets=[self.secret],
                client=client,
                content=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    SIGNATURE_HEADER: sign(self.secret, body),
                    DELIVERY_HEADER: did,
                },
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
        excerpt = http.masked(" ".join(response.text.split())[:200], [self.secret]) if response.content else ""
        return WebhookDelivery(delivery_id=did, status_code=response.status_code, url=shown, response_excerpt=excerpt)


def _safe_url(url: str) -> str:
    """The URL without query or credentials: receivers often put a token there."""
    parts = httpx.URL(url)
    return str(parts.copy_with(query=None, fragment=None, userinfo=b""))
