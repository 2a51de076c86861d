"""Media helpers shared by the stages: the one font, the ffmpeg binary, probing, loudness and QC.

imageio-ffmpeg ships ffmpeg but no ffprobe, so ``probe`` parses the stream lines ``ffmpeg -i``
prints and ``measure_audio`` runs one decode pass through ``ebur128`` + ``volumedetect``. ``check_video``
turns both into the QC report composition stores (and refuses to hand a broken video to review).

Functions that start ffmpeg take an optional ``StageContext``: with one, the child runs through
``ctx.run_process`` so cancel and time limits can kill it; without one (scripts, tests) it is a
plain subprocess.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.base import DISK_FULL_TEXT, disk_full

if TYPE_CHECKING:
    from PIL import Image

    from stages.base import StageContext

ASSETS = Path(__file__).resolve().parent / "assets"
# One OFL font (Lato Black, licence in assets/fonts/OFL.txt) for Pillow and ffmpeg alike.
FONT_PATH = ASSETS / "fonts" / "Lato-Black.ttf"
FONT_DIR = FONT_PATH.parent

# The delivery format every short is checked against.
VIDEO_WIDTH = 1080
VIDEO_HEIGHT = 1920
VIDEO_FPS = 30
AUDIO_RATE = 48000
TARGET_LUFS = -14.0
LUFS_TOLERANCE = 1.0  # integrated loudness within +-1 LU of the target
MAX_TRUE_PEAK = -1.0  # dBTP: what the platforms ask for (their own encoders add overshoot above it)
SILENT_MEAN_DB = -50.0
DURATION_TOLERANCE = 0.1


@cache
def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped by imageio-ffmpeg (IMAGEIO_FFMPEG_EXE switches to a system one)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(
    args: Sequence[str], ctx: StageContext | None = None, on_line: Callable[[str], None] | None = None
) -> tuple[int, list[str]]:
    """Run ffmpeg with ``args`` (without the binary); return (exit code, every stderr line).

    A full disk raises ``disk_full`` (transient, with what to do) whatever the caller would have
    made of the failure.
    """
    lines: list[str] = []

    def collect(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    command = [ffmpeg_exe(), *args]
    if ctx is not None:
        code = ctx.run_process(command, on_line=collect).returncode
    else:
        proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        for raw in proc.stderr.decode("utf-8", "replace").replace("\r", "\n").split("\n"):
            if raw.strip():
                collect(raw.strip())
        code = proc.returncode
    if code != 0:
        full = next((line for line in lines if DISK_FULL_TEXT in line), None)
        if full is not None:
            raise disk_full(f"ffmpeg: {full}")
    return code, lines


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file, remembered per path, size and mtime (a scene is hashed once per process)."""
    import hashlib

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def link_or_copy(src: Path, dest: Path) -> None:
    """Put a file into a stage folder: a hard link when possible (no copy, same inode), else a copy."""
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


# -- probe ---------------------------------------------------------------------------------------
@dataclass
class MediaInfo:
    """What ``ffmpeg -i`` says about a file. Missing facts are None."""

    duration: float | None = None
    video_codec: str | None = None
    profile: str | None = None
    pix_fmt: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: str | None = None
    streams: list[str] = field(default_factory=list)  # "video", "audio", ... in file order

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:\d+\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)")
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"^(\d+(?:\.\d+)?)(k?) fps$")
_RATE = re.compile(r"^(\d+) Hz$")


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside parentheses/brackets: 'yuv420p(tv, bt709)' stays whole."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return parts


def _codec_and_profile(part: str) -> tuple[str, str | None]:
    """'h264 (High) (avc1 / 0x31637661)' -> ('h264', 'High'); fourcc groups are not profiles."""
    codec = part.split()[0] if part.split() else ""
    profile = None
    for group in re.findall(r"\(([^()]*)\)", part):
        if "/" not in group:
            profile = group.strip()
            break
    return codec, profile


def parse_probe(lines: Sequence[str]) -> MediaInfo:
    """Read the first video and audio stream and the duration from ``ffmpeg -i`` stderr lines."""
    info = MediaInfo()
    for line in lines:
        if info.duration is None and (m := _DURATION.search(line)):
            info.duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            continue
        m = _STREAM.search(line)
        if not m:
            continue
        kind, rest = m.group(1).lower(), m.group(2)
        info.streams.append(kind)
        parts = _split_top(rest)
        if kind == "video" and info.video_codec is None:
            info.video_codec, info.profile = _codec_and_profile(parts[0])
            if len(parts) > 1:
                info.pix_fmt = parts[1].split("(")[0].strip() or None
            for part in parts[1:]:
                if (size := _SIZE.match(part)) and info.width is None:
                    info.width, info.height = int(size.group(1)), int(size.group(2))
                elif fps := _FPS.match(part):
                    info.fps = float(fps.group(1)) * (1000 if fps.group(2) else 1)
        elif kind == "audio" and info.audio_codec is None:
            info.audio_codec, _ = _codec_and_profile(parts[0])
            for part in parts[1:]:
                if rate := _RATE.match(part):
                    info.audio_rate = int(rate.group(1))
            if len(parts) > 2:
                info.audio_channels = parts[2]
    return info


def probe(path: Path, ctx: StageContext | None = None) -> MediaInfo:
    """Streams and duration of a media file, without ffprobe (imageio-ffmpeg ships none).

    ``ffmpeg -i`` with no output exits with status 1 by design; only the parsed facts matter.
    """
    _, lines = run_ffmpeg(["-hide_banner", "-nostdin", "-i", str(path)], ctx)
    return parse_probe(lines)


# -- loudness ------------------------------------------------------------------------------------
@dataclass
class AudioLevels:
    mean_volume_db: float | None = None
    max_volume_db: float | None = None
    lufs: float | None = None  # integrated loudness (EBU R128)
    lra: float | None = None  # loudness range, LU
    true_peak: float | None = None  # dBTP (ebur128 peak=true: 4x oversampled)
    threshold: float | None = None  # the relative gate of the integrated loudness, LUFS


def parse_levels(lines: Sequence[str]) -> AudioLevels:
    levels = AudioLevels()
    section = ""
    for line in lines:
        if "Integrated loudness" in line:
            section = "I"
        elif "Loudness range" in line:
            section = "LRA"
        elif "True peak" in line:
            section = "TP"
        if m := re.search(r"mean_volume:\s*(-?[\d.]+|-inf) dB", line):
            levels.mean_volume_db = _float(m.group(1))
        elif m := re.search(r"max_volume:\s*(-?[\d.]+|-inf) dB", line):
            levels.max_volume_db = _float(m.group(1))
        elif section == "I" and (m := re.match(r"I:\s*(-?[\d.]+|-inf) LUFS", line)):
            levels.lufs = _float(m.group(1))
        elif section == "I" and (m := re.match(r"Threshold:\s*(-?[\d.]+|-inf) LUFS", line)):
            levels.threshold = _float(m.group(1))
        elif section == "LRA" and (m := re.match(r"LRA:\s*(-?[\d.]+) LU", line)):
            levels.lra = _float(m.group(1))
        elif section == "TP" and (m := re.match(r"Peak:\s*(-?[\d.]+|-inf) dBFS", line)):
            levels.true_peak = _float(m.group(1))
    return levels


def _float(text: str) -> float:
    return float("-inf") if text == "-inf" else float(text)


def measure_audio(path: Path, ctx: StageContext | None = None) -> AudioLevels:
    """Integrated loudness, true peak and mean/max volume of the first audio stream, in one decode pass."""
    code, lines = run_ffmpeg(
        [
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-af",
            "ebur128=framelog=quiet:peak=true,volumedetect",
            "-f",
            "null",
            "-",
        ],
        ctx,
    )
    return parse_levels(lines) if code == 0 else AudioLevels()


def wav_duration(path: Path) -> float:
    """Exact duration of a PCM WAV from its header (what the voiceover stage wrote)."""
    import wave

    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


# -- QC ------------------------------------------------------------------------------------------
def check_video(
    info: MediaInfo, levels: AudioLevels, expected_duration: float, size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The QC report of a finished short: every delivery requirement as a named check.

    ``passed`` is True only if every check is ok; composition refuses to hand on a failed video.
    ``size`` is the frame the theme asks for (1080x1920 unless it says 1:1 or 16:9).
    """
    width, height = size or (VIDEO_WIDTH, VIDEO_HEIGHT)
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    check("video stream", info.video_codec is not None, f"streams: {', '.join(info.streams) or 'none'}")
    check(
        "resolution", (info.width, info.height) == (width, height), f"{info.width}x{info.height}, want {width}x{height}"
    )
    check("frame rate", info.fps is not None and abs(info.fps - VIDEO_FPS) < 0.01, f"{info.fps} fps, want {VIDEO_FPS}")
    check("video codec", info.video_codec == "h264", f"{info.video_codec}, want h264")
    check("profile", info.profile == "High", f"{info.profile}, want High")
    check("pixel format", info.pix_fmt == "yuv420p", f"{info.pix_fmt}, want yuv420p")
    check("audio stream", info.audio_codec is not None, f"streams: {', '.join(info.streams) or 'none'}")
    check("audio codec", info.audio_codec == "aac", f"{info.audio_codec}, want aac")
    check("audio rate", info.audio_rate == AUDIO_RATE, f"{info.audio_rate} Hz, want {AUDIO_RATE}")
    duration_ok = info.duration is not None and abs(info.duration - expected_duration) <= DURATION_TOLERANCE
    check(
        "duration",
        duration_ok,
        f"{info.duration} s, voiceover {expected_duration:.3f} s (tolerance {DURATION_TOLERANCE} s)",
    )
    mean = levels.mean_volume_db
    check(
        "audio not silent",
        mean is not None and mean > SILENT_MEAN_DB,
        f"mean volume {mean} dB, want > {SILENT_MEAN_DB:.0f} dB",
    )
    lufs = levels.lufs
    check(
        "loudness",
        lufs is not None and abs(lufs - TARGET_LUFS) <= LUFS_TOLERANCE,
        f"{lufs} LUFS integrated, target {TARGET_LUFS:.0f} +/- {LUFS_TOLERANCE:.0f}",
    )
    peak = levels.true_peak
    check("true peak", peak is not None and peak <= MAX_TRUE_PEAK, f"{peak} dBTP, want <= {MAX_TRUE_PEAK:.1f}")
    return {
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "duration": info.duration,
        "voice_duration": round(expected_duration, 3),
        "video_codec": info.video_codec,
        "profile": info.profile,
        "pix_fmt": info.pix_fmt,
        "audio_codec": info.audio_codec,
        "audio_rate": info.audio_rate,
        "mean_volume_db": mean,
        "max_volume_db": levels.max_volume_db,
        "lufs": lufs,
        "lra": levels.lra,
        "true_peak": peak,
        "passed": all(c["ok"] for c in checks),
        "checks": checks,
    }


def qc_video(
    path: Path, expected_duration: float, ctx: StageContext | None = None, size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Probe + measure + check a video file in two short ffmpeg runs."""
    return check_video(probe(path, ctx), measure_audio(path, ctx), expected_duration, size)


# -- text on images ------------------------------------------------------------------------------
@cache
def font(size: int) -> Any:
    """The shared Lato Black at ``size`` px (cached: loading a TTF costs ~1 ms each time)."""
    from PIL import ImageFont

    return ImageFont.truetype(str(FONT_PATH), size)


def wrap_balanced(text: str, font_size: int, max_width: int, max_rows: int = 2) -> list[str]:
    """Split ``text`` into at most ``max_rows`` rows of similar width (fewest rows that fit)."""
    words = text.split()
    f = font(font_size)
    if not words or f.getlength(text) <= max_width or len(words) == 1:
        return [text]
    best: list[str] = [text]
    best_width = float("inf")
    for rows in range(2, max_rows + 1):
        if rows == 2:
            for cut in range(1, len(words)):
                candidate = [" ".join(words[:cut]), " ".join(words[cut:])]
                widest = max(f.getlength(row) for row in candidate)
                if widest < best_width:
                    best, best_width = candidate, widest
        else:  # greedy for 3+ rows (titles on thumbnails)
            target = f.getlength(text) / rows
            candidate, current = [], []
            for word in words:
                if current and f.getlength(" ".join([*current, word])) > target * 1.15 and len(candidate) < rows - 1:
                    candidate.append(" ".join(current))
                    current = []
                current.append(word)
            candidate.append(" ".join(current))
            widest = max(f.getlength(row) for row in candidate)
            if widest < best_width - 1:
                best, best_width = candidate, widest
        if best_width <= max_width:
            break
    return best


def text_block(
    text: str,
    *,
    font_size: int = 84,
    max_width: int = 960,
    max_rows: int = 2,
    min_font_size: int = 36,
    single_row_min: int | None = None,
    fill: tuple[int, int, int, int] = (255, 255, 255, 255),
    stroke: tuple[int, int, int, int] = (10, 10, 14, 255),
    box: tuple[int, int, int, int] | None = (0, 0, 0, 165),
) -> Image.Image:
    """Render caption-style text: white bold rows, dark outline, translucent rounded box (RGBA).

    With ``single_row_min`` the text stays on one row if some size down to it fits (one row reads
    faster and keeps the box the same height from caption to caption). Otherwise rows are balanced
    and the font shrinks (down to ``min_font_size``) until the whole block, box included, fits
    ``max_width``, so long words never run off the frame.
    """
    from PIL import Image, ImageDraw

    def metrics(size: int) -> tuple[int, int, int]:
        stroke_width = max(3, size // 14)
        return stroke_width, int(size * 0.45), int(size * 0.22)

    def inner(size: int) -> int:
        stroke_width, pad_x, _ = metrics(size)
        return max_width - 2 * (stroke_width + pad_x)

    rows: list[str] | None = None
    size = font_size
    if single_row_min is not None:
        for candidate in range(font_size, single_row_min - 1, -4):
            if font(candidate).getlength(text) <= inner(candidate):
                rows, size = [text], candidate
                break
    if rows is None:
        size = font_size
        while True:
            rows = wrap_balanced(text, size, inner(size), max_rows)
            if max(font(size).getlength(row) for row in rows) <= inner(size) or size <= min_font_size:
                break
            size -= 4
    f = font(size)
    stroke_width, pad_x, pad_y = metrics(size)
    widths = [f.getlength(row) for row in rows]
    ascent, descent = f.getmetrics()
    line_height = int((ascent + descent) * 1.08)
    width = int(max(widths)) + 2 * stroke_width + 2 * pad_x
    height = line_height * len(rows) + 2 * stroke_width + 2 * pad_y
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if box is not None:
        draw.rounded_rectangle([0, 0, width - 1, height - 1], radius=int(size * 0.35), fill=box)
    y = pad_y + stroke_width
    for row, row_width in zip(rows, widths, strict=False):
        x = (width - row_width) / 2
        draw.text((x, y), row, font=f, fill=fill, stroke_width=stroke_width, stroke_fill=stroke)
        y += line_height
    return image
