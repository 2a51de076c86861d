"""Media helpers shared by the stages: the one font file and the ffmpeg binary."""

from __future__ import annotations

from functools import cache
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# One OFL font (Lato Black, licence in assets/fonts/OFL.txt) for Pillow and ffmpeg alike.
FONT_PATH = ASSETS / "fonts" / "Lato-Black.ttf"
FONT_DIR = FONT_PATH.parent


@cache
def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped by imageio-ffmpeg (IMAGEIO_FFMPEG_EXE switches to a system one)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
