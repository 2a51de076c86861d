"""Fixtures the stage tests share: local servers allowed, publish fixtures (webhook, YouTube)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from jobs.models import Job, Theme
from jobs.tests.factories import approved

# Property tests (test_properties.py): bounded and derandomized, so CI is deterministic and quick;
# the deadline is how "never hangs" is checked. HYPOTHESIS_PROFILE=thorough explores more.
hypothesis_settings.register_profile(
    "trendreel",
    max_examples=60,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
hypothesis_settings.register_profile(
    "thorough", parent=hypothesis_settings.get_profile("trendreel"), max_examples=2000, derandomize=False
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "trendreel"))


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
