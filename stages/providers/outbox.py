"""The offline publish destination: a folder per job under ``settings.OUTBOX_DIR``.

``<OUTBOX_DIR>/<job_id>/`` receives ``video.mp4``, ``thumbnail.<ext>`` (when composition made one),
``lineage.json`` (what shaped the video: ``jobs.lineage``) and ``metadata.json``. Whatever picks videos up from there (an uploader, a person, a sync job)
should treat a folder as complete only once ``metadata.json`` exists: it is written last.

Why these steps:

* Every file is written under a temporary name in the same folder, flushed to disk and renamed
  with ``os.replace`` (atomic on one filesystem), so a reader never sees half a video and a crash
  leaves at most a stray ``*.part`` file that the next attempt ignores.
* ``deliver`` is idempotent for the same video: when ``metadata.json`` already names this job and
  the outbox copy of the video has the same SHA-256, nothing is written again (``reused=True``).
  That is the crash-after-files-before-database case: the stage records the ``Publication`` row
  and the consumer never sees the folder change under it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings

from stages.base import PermanentStageError, StageContext, TransientStageError
from stages.publish import LINEAGE_NAME, METADATA_NAME, VIDEO_NAME, Delivery, Package


class OutboxPublisher:
    """The ``outbox`` destination (``stages.publish.Publisher``)."""

    name = destination = "outbox"

    def __init__(self, ctx: StageContext | None = None, *, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else Path(settings.OUTBOX_DIR)

    def folder(self, job_id: int) -> Path:
        return self.root / str(int(job_id))

    def deliver(self, package: Package, ctx: StageContext | None = None) -> Delivery:
        folder = self.folder(package.job_id)
        video_path = folder / VIDEO_NAME
        metadata_path = folder / METADATA_NAME
        try:
            folder.mkdir(parents=True, exist_ok=True)
            digest = sha256_file(package.video)
            delivery = Delivery(
                external_id=str(package.job_id),
                location=str(folder),
                meta={"video": str(video_path), "metadata": str(metadata_path)},
            )
            if self._already_there(package.job_id, digest, video_path, metadata_path):
                delivery.reused = True
                return delivery
            metadata = dict(package.metadata)
            metadata.update(
                job_id=package.job_id,
                video=VIDEO_NAME,
                video_sha256=digest,
                video_bytes=package.video.stat().st_size,
                thumbnail=None,
            )
            _copy_atomic(package.video, video_path)
            if package.thumbnail is not None:
                thumb_name = "thumbnail" + (package.thumbnail.suffix.lower() or ".jpg")
                _copy_atomic(package.thumbnail, folder / thumb_name)
                metadata["thumbnail"] = thumb_name
            if package.lineage:  # what shaped the video, beside it
                _write_atomic(
                    folder / LINEAGE_NAME, json.dumps(package.lineage, ensure_ascii=False, indent=2).encode("utf-8")
                )
                metadata["lineage"] = LINEAGE_NAME
            # Last: its presence tells consumers the folder is complete.
            _write_atomic(metadata_path, json.dumps(metadata, ensure_ascii=False, indent=2).encode("utf-8"))
            _fsync_dir(folder)
        except PermissionError as exc:
            raise PermanentStageError(
                f"outbox: cannot write to {folder}: {exc}",
                hint="check the permissions of TRENDREEL_OUTBOX (settings.OUTBOX_DIR)",
            ) from None
        except OSError as exc:
            raise TransientStageError(
                f"outbox: writing {folder} failed: {exc}",
                hint="a full or unavailable disk; free space and the stage retries",
            ) from None
        return delivery

    @staticmethod
    def _already_there(job_id: int, digest: str, video_path: Path, metadata_path: Path) -> bool:
        try:
            existing = json.loads(metadata_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(existing, dict) or existing.get("job_id") != job_id or existing.get("video_sha256") != digest:
            return False
        try:
            return sha256_file(video_path) == digest
        except OSError:
            return False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


def _temp_beside(target: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes 0600; a consumer running as another user must read it
    return Path(name)


def _copy_atomic(src: Path, target: Path) -> None:
    tmp = _temp_beside(target)
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = _temp_beside(target)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the renames themselves durable (POSIX); harmless where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
