"""An operator's own image or clip for one scene (a targeted edit), checked before any edit names it.

``store(job_id, data)`` takes bytes, a path or an uploaded file, and accepts it only when:

* it is at most ``TRENDREEL_UPLOAD_MB`` (default 200) megabytes;
* its content is PNG, JPEG, WebP, MP4/MOV or WebM (magic bytes; the name says nothing);
* it decodes: an image through Pillow (``verify`` and a full load) and ffmpeg, a clip through
  ffmpeg (``-v error -i f -map 0:v:0 -f null -``, within ``DECODE_SECONDS``) with a video stream.

It is stored as ``jobs/<job id>/uploads/<sha256[:16]>.<ext>`` under MEDIA_ROOT (the same content
twice is one file) and its id, ``<sha256[:16]>.<ext>``, is what a scene edit names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

DECODE_SECONDS = 120
MAX_PIXELS = 50_000_000  # an image larger than this is a decompression bomb, not a scene
IMAGE_EXTS = ("png", "jpg", "webp")
VIDEO_EXTS = ("mp4", "mov", "webm")
UPLOAD_ID = re.compile(r"^[0-9a-f]{16}\.(png|jpg|webp|mp4|mov|webm)$")
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


class UploadError(ValueError):
    """The file is refused: the message says why (size, type, decoding)."""


@dataclass(frozen=True)
class Upload:
    id: str  # "<sha256[:16]>.<ext>": what a scene edit names
    path: str  # relative to MEDIA_ROOT
    media: str  # "image" | "video"
    size: int
    created: bool  # False when the same content was already stored


def max_bytes() -> int:
    return int(settings.TRENDREEL_UPLOAD_MB) * 1024 * 1024


def sniff(head: bytes) -> str | None:
    """The file type by its first bytes: png, jpg, webp, mp4, mov, webm, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:64]:
        return "webm"
    return None


def media_of(ext: str) -> str:
    return "image" if ext in IMAGE_EXTS else "video"


def uploads_dir(job_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "jobs" / str(int(job_id)) / "uploads"


def exists(job_id: int, upload_id: str) -> bool:
    """An upload of THIS job with that id is stored (never a path: only the id's own pattern)."""
    return bool(
        isinstance(upload_id, str) and UPLOAD_ID.match(upload_id) and (uploads_dir(job_id) / upload_id).is_file()
    )


def resolve(job_id: int, upload_id: str) -> tuple[str, str]:
    """(path relative to MEDIA_ROOT, "image" | "video") of a stored upload (``exists`` first)."""
    if not exists(job_id, upload_id):
        raise UploadError(f"no upload {upload_id!r} for job {job_id}")
    return f"jobs/{int(job_id)}/uploads/{upload_id}", media_of(upload_id.rsplit(".", 1)[1])


def _chunks(data: Any):
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    elif isinstance(data, str | os.PathLike):
        with open(data, "rb") as fh:
            yield from iter(lambda: fh.read(1 << 20), b"")
    elif hasattr(data, "chunks"):  # a Django UploadedFile
        yield from data.chunks()
    else:
        yield from iter(lambda: data.read(1 << 20), b"")


def _ffmpeg_decodes(path: Path, media: str) -> str | None:
    """None when ffmpeg decodes the whole file without an error, else why not."""
    from stages.media import ffmpeg_exe

    args = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"]
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=DECODE_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return f"decoding it took longer than {DECODE_SECONDS} s"
    errors = [line for line in proc.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    if proc.returncode != 0 or errors:
        detail = errors[-1][:200] if errors else f"ffmpeg exit code {proc.returncode}"
        return f"the {media} does not decode: {detail}"
    return None


def _image_problem(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                return f"the image is {img.width}x{img.height}: more than {MAX_PIXELS // 1_000_000} megapixels"
            img.verify()
        with Image.open(path) as img:
            img.load()  # verify() does not decode the pixels: a truncated file fails here
    except Exception as exc:  # noqa: BLE001 - any decoder failure means: not a usable image
        return f"the image does not decode: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def store(job_id: int, data: Any) -> Upload:
    """Check and keep ``data`` (bytes, a path, an uploaded file) for job ``job_id``; ``UploadError`` if refused."""
    limit = max_bytes()
    folder = uploads_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(data):
                size += len(chunk)
                if size > limit:
                    raise UploadError(f"the file is over the upload limit of {settings.TRENDREEL_UPLOAD_MB} MB")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise UploadError("the file is empty")
        with tmp.open("rb") as fh:
            ext = sniff(fh.read(64))
        if ext is None:
            raise UploadError("not an image or clip: PNG, JPEG, WebP, MP4, MOV or WebM only (judged by content)")
        media = media_of(ext)
        problem = (_image_problem(tmp) if media == "image" else None) or _ffmpeg_decodes(tmp, media)
        if problem:
            raise UploadError(problem)
        upload_id = f"{digest.hexdigest()[:16]}.{ext}"
        final = folder / upload_id
        created = not final.exists()
        if created:
            os.replace(tmp, final)
        return Upload(upload_id, f"jobs/{int(job_id)}/uploads/{upload_id}", media, size, created)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
