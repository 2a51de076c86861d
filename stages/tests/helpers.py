"""Build a StageContext for testing one stage on its own (no job, no database rows needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.base import StageContext

DEMO_THEME: dict[str, Any] = {
    "id": None,
    "name": "Tech pulse",
    "slug": "demo",
    "keywords": ["ai", "python", "open source", "chip", "robot"],
    "sources": [],
    "target_seconds": 30,
    "voice": "",
    "settings": {},
}


def make_context(
    tmp_path: Path,
    stage: str,
    *,
    theme: dict[str, Any] | None = None,
    upstream: dict[str, dict[str, Any]] | None = None,
    upstream_dirs: dict[str, Path] | None = None,
    params: dict[str, Any] | None = None,
    review_notes: list[str] | None = None,
    progress_log: list[tuple[float, str]] | None = None,
    overrides: dict[str, Any] | None = None,
    base_output: dict[str, Any] | None = None,
    base_dir: Path | None = None,
) -> StageContext:
    work = tmp_path / stage / "attempt-1.partial"
    work.mkdir(parents=True, exist_ok=True)
    log = progress_log if progress_log is not None else []
    return StageContext(
        job_id=1,
        stage=stage,
        attempt=1,
        theme={**DEMO_THEME, **(theme or {})},
        params=params or {},
        upstream=upstream or {},
        upstream_dirs=upstream_dirs or {},
        work_dir=work,
        review_notes=review_notes or [],
        report=lambda f, m: log.append((f, m)),
        overrides=overrides or {},
        base_output=base_output,
        base_dir=base_dir,
    )
