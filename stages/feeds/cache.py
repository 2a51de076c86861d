"""Conditional GET memory for HTTP trend sources: ETag / Last-Modified per URL.

One small JSON file per URL under ``settings.VAR_DIR/feed-cache/`` (written atomically, so
parallel jobs never fight over one shared file), named by a hash of the URL (URLs may hold tokens:
they are never stored in clear). A file rather than a marker ``Trend`` row keeps fake rows out of
the trend lists; the cache also remembers which item ids the feed held, so a 304 can hand the
stage the stories it already stored. If those rows are gone (a fresh database), the stage simply
asks again without validators, so a stale cache can never hide a feed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from stages.feeds.sources import redact_url

logger = logging.getLogger("trendreel.feeds")


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
