"""Fixtures the publish tests share (webhook, YouTube)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.models import Job, Theme
from jobs.tests.factories import approved


@pytest.fixture
def job(db) -> Job:
    theme = Theme.objects.create(name="Tech pulse", slug="tech-pulse-net-publish")
    return approved(Job.objects.create(theme=theme))


@pytest.fixture
def composed(tmp_path) -> Path:
    """What composition leaves behind (publish never decodes the video, so bytes will do)."""
    folder = tmp_path / "composition-out"
    folder.mkdir()
    (folder / "video.mp4").write_bytes(bytes(range(256)) * 10 + b"tail-of-video")  # 2573 bytes
    (folder / "thumbnail.jpg").write_bytes(b"\xff\xd8\xff-not-really-a-jpeg")
    return folder
