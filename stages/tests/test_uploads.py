"""Uploads for scene edits: judged by content, capped, decoded before anything may use them."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from stages import uploads
from stages.media import ffmpeg_exe


def image_bytes(fmt: str = "PNG", size=(64, 96)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=128x228:rate=10:duration=1",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_images_are_kept_under_the_job_by_content(settings, fmt, ext):
    data = image_bytes(fmt)
    first = uploads.store(7, data)
    assert first.id.endswith("." + ext) and first.media == "image" and first.created
    assert first.path == f"jobs/7/uploads/{first.id}"
    assert (Path(settings.MEDIA_ROOT) / first.path).read_bytes() == data
    again = uploads.store(7, io.BytesIO(data))  # the same content: the same upload
    assert (again.id, again.created) == (first.id, False)
    assert uploads.exists(7, first.id) and not uploads.exists(8, first.id)  # another job's upload is not its own
    assert uploads.resolve(7, first.id) == (first.path, "image")
    assert sorted(p.name for p in uploads.uploads_dir(7).iterdir()) == [first.id]  # no temporary left


def test_a_clip_is_decoded_before_it_is_accepted(clip):
    upload = uploads.store(3, clip)
    assert upload.media == "video" and upload.id.endswith(".mp4")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"just some text, named photo.png by its sender\n", "not an image or clip"),
        (b"<!doctype html><html><script>alert(1)</script></html>", "not an image or clip"),
        (b"", "empty"),
    ],
    ids=["text-as-png", "html-as-mp4", "empty"],
)
def test_a_file_that_is_not_media_is_refused_whatever_its_name(tmp_path, data, why):
    named = tmp_path / ("photo.png" if b"text" in data else "clip.mp4")
    named.write_bytes(data)
    with pytest.raises(uploads.UploadError, match=why):
        uploads.store(1, named)
    assert list(uploads.uploads_dir(1).iterdir()) == []


def test_a_truncated_image_is_refused():
    data = image_bytes("PNG", size=(400, 400))
    with pytest.raises(uploads.UploadError, match="does not decode"):
        uploads.store(1, data[: len(data) // 2])


def test_a_clip_that_only_starts_like_one_is_refused(clip):
    with pytest.raises(uploads.UploadError, match="does not decode"):
        uploads.store(1, clip.read_bytes()[:300])


def test_the_size_cap_is_the_setting(settings):
    settings.TRENDREEL_UPLOAD_MB = 1
    data = image_bytes("PNG") + b"\0" * (1024 * 1024)
    with pytest.raises(uploads.UploadError, match="over the upload limit of 1 MB"):
        uploads.store(1, data)
    assert list(uploads.uploads_dir(1).iterdir()) == []


def test_an_upload_id_is_never_a_path(settings):
    (Path(settings.MEDIA_ROOT) / "secret.png").write_bytes(image_bytes())
    for name in ("../../secret.png", "/etc/passwd", "0123456789abcdef.exe"):
        assert not uploads.exists(1, name)
