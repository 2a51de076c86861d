"""Reading how published videos did: the platform readers the scheduled analytics pull
(``jobs.analytics``) calls, one per destination that has numbers to give.

A reader is built like its publisher, from a ``StageContext`` of the job's theme for the publish
stage, so it uses the same settings and credentials (``theme.settings["publish"][<platform>]`` or
the environment), and reads many videos in few calls::

    reader = READERS.build("youtube", context_for(theme))
    readings = reader.read(publications)  # {publication id: Reading}

A video the platform no longer knows is simply missing from the answer; a reader raises a
``StageError`` only when the whole platform cannot be read (credentials, quota, network), and the
pull then goes on with the other platforms.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from django.utils.module_loading import import_string

from stages.base import StageContext
from stages.payload import as_float, as_int

READERS: dict[str, str] = {
    "youtube": "stages.providers.youtube.YouTubeMetrics",
    "tiktok": "stages.providers.tiktok.TikTokMetrics",
    "instagram": "stages.providers.instagram.InstagramMetrics",
}
COUNT_MAX = 10**15


@dataclass
class Reading:
    """One video's numbers at one time; None where the platform has no such number."""

    views: int | None = None
    likes: int | None = None
    comments: int | None = None
    shares: int | None = None
    avg_view_seconds: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, *, raw: dict[str, Any], **values: Any) -> Reading:
        """Numbers from a platform's answer, read as hostile input (strings, floats, garbage)."""
        counts = {k: as_int(values.get(k), high=COUNT_MAX) for k in ("views", "likes", "comments", "shares")}
        seconds = as_float(values.get("avg_view_seconds"), low=0.0, high=86_400.0)
        return cls(**counts, avg_view_seconds=seconds, raw=raw)


class MetricsReader(Protocol):
    """Reads the numbers of ``publications`` (all of one destination and one theme)."""

    def read(self, publications: list[Any]) -> dict[int, Reading]: ...


def context_for(theme: dict[str, Any], job_id: int = 0) -> StageContext:
    """The publish stage's context for a theme: what a reader needs to find its settings."""
    return StageContext(
        job_id=job_id,
        stage="publish",
        attempt=0,
        theme=theme,
        params={},
        upstream={},
        upstream_dirs={},
        work_dir=Path(tempfile.gettempdir()),
    )


def build(destination: str, ctx: StageContext) -> MetricsReader:
    return import_string(READERS[destination])(ctx)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
