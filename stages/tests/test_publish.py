"""publish: atomic files in the outbox, one Publication per job, crash-safe retries."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from jobs.models import Job, Publication, Theme
from jobs.tests.factories import approved
from stages import publish
from stages.base import PermanentStageError, TransientStageError
from stages.providers import outbox
from stages.providers.outbox import OutboxPublisher
from stages.publish import Package
from stages.tests.helpers import make_context

TOPIC = {
    "trend_id": 7,
    "title": "Nordlys Labs releases open-source AI model that runs entirely on a Raspberry Pi 5",
    "summary": "Fjord-2B answers questions offline on an 8 GB Pi.",
    "url": "https://thecircuit.example/2026/11/28/nordlys-fjord-2b-raspberry-pi/",
    "source": "thecircuit",
    "keywords": ["ai", "open source"],
    "hashtags": ["#AI", "#OpenSource", "#TechPulse"],
    "angle": "breaking",
    "related": [
        {
            "title": "Open-source AI model runs entirely on a Raspberry Pi 5",
            "url": "https://nordlyslabs.example/blog/fjord-2b-on-a-pi/",
            "source": "hn-frontpage",
        },
        {
            "title": "Nordlys Labs' new open-source AI model… 🚀",
            "url": "https://thecircuit.example/2026/11/28/nordlys-fjord-2b-raspberry-pi/",
            "source": "reddit-technology",
        },
    ],
}
SCRIPT = {
    "title": "A whole AI model on a €80 computer",
    "description": "Nordlys Labs' Fjord-2B runs on a Raspberry Pi 5 — no cloud needed.",
    "hashtags": ["#AI", "#RaspberryPi", "#OpenSource"],
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """A real (tiny) H.264 MP4 and a JPEG thumbnail, as composition leaves them."""
    folder = tmp_path_factory.mktemp("composition")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=108x192:rate=10:duration=1",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(folder / "video.mp4"),
        ],
        check=True,
    )
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(folder / "video.mp4"), "-frames:v", "1", str(folder / "thumbnail.jpg")],
        check=True,
    )
    return folder


@pytest.fixture
def job(db) -> Job:
    theme = Theme.objects.create(name="Tech pulse", slug="tech-pulse-publish")
    return approved(Job.objects.create(theme=theme))


def context(tmp_path: Path, job: Job, rendered: Path, *, thumbnail: bool = True):
    composition = {"video": "video.mp4", "duration": 1.0, "qc": {"width": 108, "height": 192, "passed": True}}
    if thumbnail:
        composition["thumbnail"] = "thumbnail.jpg"
    ctx = make_context(
        tmp_path,
        "publish",
        theme={"slug": "tech-pulse-publish"},
        upstream={
            "composition": composition,
            "trend_analysis": {"topic": TOPIC, "candidates": []},
            "script_generation": SCRIPT,
        },
        upstream_dirs={"composition": rendered},
    )
    ctx.job_id = job.pk
    return ctx


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.mark.django_db
def test_it_writes_the_video_and_metadata_to_the_outbox(tmp_path, job, rendered, settings):
    out = publish.run(context(tmp_path, job, rendered)).output

    folder = Path(settings.OUTBOX_DIR) / str(job.pk)
    assert out["destination"] == "outbox"
    assert out["already_published"] is False
    assert out["video"] == str(folder / "video.mp4") and out["metadata"] == str(folder / "metadata.json")
    assert sorted(p.name for p in folder.iterdir()) == [
        "lineage.json",
        "metadata.json",
        "thumbnail.jpg",
        "video.mp4",
    ]  # no *.part left
    assert (folder / "video.mp4").read_bytes() == (rendered / "video.mp4").read_bytes()
    assert (folder / "video.mp4").stat().st_mode & 0o777 == 0o644

    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["job_id"] == job.pk
    assert meta["title"] == SCRIPT["title"] and meta["description"] == SCRIPT["description"]
    assert meta["hashtags"] == SCRIPT["hashtags"]
    assert [s["url"] for s in meta["sources"]] == [TOPIC["url"], TOPIC["related"][0]["url"]]  # no repeated link
    assert meta["duration"] == 1.0 and meta["thumbnail"] == "thumbnail.jpg" and meta["video"] == "video.mp4"
    assert meta["video_bytes"] == (rendered / "video.mp4").stat().st_size and len(meta["video_sha256"]) == 64
    assert meta["topic"] == {"trend_id": 7, "title": TOPIC["title"], "angle": "breaking"}

    publication = Publication.objects.get(job=job, destination="outbox")
    assert publication.location == str(folder)
    assert out["publication_id"] == publication.pk


@pytest.mark.django_db
def test_it_falls_back_to_the_topic_without_a_script(tmp_path, job, rendered, settings):
    ctx = context(tmp_path, job, rendered, thumbnail=False)
    del ctx.upstream["script_generation"]
    publish.run(ctx)
    meta = json.loads((Path(settings.OUTBOX_DIR) / str(job.pk) / "metadata.json").read_text(encoding="utf-8"))
    assert meta["title"] == TOPIC["title"] and meta["hashtags"] == TOPIC["hashtags"] and meta["thumbnail"] is None


@pytest.mark.django_db
def test_it_does_nothing_the_second_time(tmp_path, job, rendered, settings):
    publish.run(context(tmp_path, job, rendered))
    folder = Path(settings.OUTBOX_DIR) / str(job.pk)
    before = snapshot(folder)

    again = publish.run(context(tmp_path / "retry", job, rendered)).output
    assert again["already_published"] is True
    assert again["files_present"] is True
    assert again["video"] == str(folder / "video.mp4")
    assert snapshot(folder) == before
    assert Publication.objects.filter(job=job).count() == 1


@pytest.mark.django_db
def test_it_records_the_row_without_rewriting_after_a_crash(tmp_path, job, rendered, settings):
    # An earlier attempt wrote every file and died before recording the publication.
    OutboxPublisher().deliver(
        Package(
            job_id=job.pk, video=rendered / "video.mp4", thumbnail=rendered / "thumbnail.jpg", metadata={"title": "x"}
        )
    )
    folder = Path(settings.OUTBOX_DIR) / str(job.pk)
    before = snapshot(folder)

    out = publish.run(context(tmp_path, job, rendered)).output
    assert out["already_published"] is False and out["reused_files"] is True
    assert snapshot(folder) == before
    assert Publication.objects.filter(job=job, destination="outbox").count() == 1


@pytest.mark.django_db
def test_it_never_publishes_again_once_the_files_were_taken(tmp_path, job, rendered, settings):
    publish.run(context(tmp_path, job, rendered))
    folder = Path(settings.OUTBOX_DIR) / str(job.pk)
    shutil.rmtree(folder)  # an uploader picked the video up

    out = publish.run(context(tmp_path / "retry", job, rendered)).output
    assert out["already_published"] is True and out["files_present"] is False
    assert not folder.exists()


@pytest.mark.django_db
def test_it_leaves_no_partial_file_when_the_copy_fails(tmp_path, job, rendered, settings, monkeypatch):
    def copy_half_then_fail(src, dst):
        Path(dst).write_bytes(Path(src).read_bytes()[:1000])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outbox.shutil, "copyfile", copy_half_then_fail)
    with pytest.raises(TransientStageError, match="No space left"):
        publish.run(context(tmp_path, job, rendered))
    folder = Path(settings.OUTBOX_DIR) / str(job.pk)
    assert list(folder.iterdir()) == []
    assert not Publication.objects.filter(job=job).exists()

    monkeypatch.undo()
    out = publish.run(context(tmp_path / "retry", job, rendered)).output
    assert out["already_published"] is False
    assert (folder / "video.mp4").read_bytes() == (rendered / "video.mp4").read_bytes()


@pytest.mark.django_db
def test_it_fails_permanently_without_the_composed_video(tmp_path, job):
    empty = tmp_path / "composition-empty"
    empty.mkdir()
    with pytest.raises(PermanentStageError, match=r"missing video.mp4"):
        publish.run(context(tmp_path, job, empty))
    assert not Publication.objects.exists()


@pytest.mark.django_db
def test_it_rejects_an_unknown_provider(tmp_path, job, rendered):
    ctx = context(tmp_path, job, rendered)
    ctx.theme["settings"] = {"publish": {"provider": "myspace"}}
    with pytest.raises(PermanentStageError, match="provider 'myspace' is unknown"):
        publish.run(ctx)
