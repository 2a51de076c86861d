"""Fixtures the stage tests share: local servers allowed, publish fixtures (webhook, YouTube)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.models import Job, Theme
from jobs.tests.factories import approved


@pytest.fixture(autouse=True)
def _local_servers(settings):
    """The tests' HTTP servers listen on 127.0.0.1: let the outbound guard reach them (as an
    operator would with TRENDREEL_FETCH_ALLOW). Guard tests set their own lists."""
    settings.TRENDREEL_FETCH_ALLOW = ["127.0.0.1"]
    settings.TRENDREEL_PROVIDER_HOSTS = []


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
