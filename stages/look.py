"""How a theme's videos look and sound: frame size, platform safe zone, captions, transitions, music.

Why one module: scene cards, composition and its QC must agree on the frame, on where platform
UI covers it and on the caption style, and an operator's typo must fail with one clear sentence
(at save time through ``Theme.clean`` and again when a stage starts), not as a broken video.
Settings live in ``theme.settings["composition"]``::

    {"aspect": "9:16" | "1:1" | "16:9",
     "captions": {"style": "karaoke" | "phrase" | "none", "font": "Lato-Black.ttf", "size": 78,
                  "color": "#ffffff", "highlight": "#ffd23f", "outline": "#0a0a0e",
                  "box": "#000000a0" | "none", "position": "lower" | "middle" | "upper",
                  "words": 3, "uppercase": true},
     "transition": "fade" | "slide" | "zoom" | "mixed" | "cut", "transition_seconds": 0.35,
     "music": {"mood": "auto" | "pulse" | "calm" | "bright" | "none", "file": "path.m4a", "volume_db": -12},
     "preset": "superfast", "crf": 20}

and ``theme.settings["scene_generation"]["style"]`` may ask for the card extras that are off by
default: ``"counter": true`` (a "2/5" pill) and ``"credit": true`` (the source name on the hook card).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

from stages.base import PermanentStageError

FONTS_DIR = Path(__file__).resolve().parent / "assets" / "fonts"
MUSIC_DIR = Path(__file__).resolve().parent / "assets" / "music"

ASPECTS: dict[str, tuple[int, int]] = {"9:16": (1080, 1920), "1:1": (1080, 1080), "16:9": (1920, 1080)}
DEFAULT_ASPECT = "9:16"

# The part of a 1080x1920 phone screen that TikTok, Instagram Reels and YouTube Shorts all leave
# free of their own UI in organic playback (x0, y0, x1, y1). Published figures:
# * TikTok, In-Feed safe zone templates ("The safe zone size is determined by the dimension"),
#   https://ads.tiktok.com/help/article?aid=10002742 : the right-hand action rail takes the right
#   140 px (x > 940), the top bar ~130 px, the caption/music block the bottom ~350 px.
# * Meta, Reels safe zone ("leave 14% of the top, 6% of the sides and 35% of the bottom free"):
#   the 6% side margin is x 65 / 1015. (Its 14%/35% top/bottom are for paid Reels ads with a CTA
#   button; organic Reels cover less, within the TikTok figures above.)
# * YouTube Shorts: title, channel and subscribe button in the bottom ~20-25 % and the action
#   column on the right, inside the same box on the devices we checked.
# The intersection, as in issue 13: x 65-940, y 130-1570.
SCREEN = (1080, 1920)
PLATFORM_ZONE = (65, 130, 940, 1570)
TITLE_SAFE = 0.05  # an extra margin inside any frame edge (letterboxed 1:1 and 16:9 video)

CAPTION_STYLES = ("karaoke", "phrase", "none")
POSITIONS = ("lower", "middle", "upper")
TRANSITIONS = ("fade", "slide", "zoom", "mixed", "cut")
MOODS = ("auto", "pulse", "calm", "bright", "none")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
_COLOUR = re.compile(r"^#([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1/y1 exclusive)


@dataclass(frozen=True)
class Frame:
    """The video frame and the part of it no platform UI covers."""

    aspect: str
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def safe_zone(self) -> Box:
        """``PLATFORM_ZONE`` mapped into this frame as the apps show it (fitted to the screen's
        width, centred: a 1:1 or 16:9 video is letterboxed), inside a 5 % title-safe margin."""
        scale = SCREEN[0] / self.width
        top = (SCREEN[1] - self.height * scale) / 2
        margin_x, margin_y = round(self.width * TITLE_SAFE), round(self.height * TITLE_SAFE)
        x0, y0, x1, y1 = PLATFORM_ZONE
        return (
            max(round(x0 / scale), margin_x if self.width != SCREEN[0] else 0),
            max(round((y0 - top) / scale), margin_y),
            min(round(x1 / scale), self.width - margin_x),
            min(round((y1 - top) / scale), self.height - margin_y),
        )


@dataclass(frozen=True)
class CaptionStyle:
    style: str = "karaoke"
    font: Path = FONTS_DIR / "Lato-Black.ttf"
    size: int | None = None  # px; None: the largest that fits (one size for the whole video)
    color: tuple[int, int, int, int] = (255, 255, 255, 255)
    highlight: tuple[int, int, int, int] = (255, 210, 63, 255)
    outline: tuple[int, int, int, int] = (10, 10, 14, 255)
    box: tuple[int, int, int, int] | None = (0, 0, 0, 150)
    position: str = "lower"
    words: int = 3  # karaoke: words shown at once (1-3)
    uppercase: bool = True


@dataclass(frozen=True)
class Music:
    mood: str = "auto"
    file: Path | None = None
    volume_db: float = -12.0  # the bed against the voice's loudness, before ducking


@dataclass(frozen=True)
class Look:
    frame: Frame = field(default_factory=lambda: Frame(DEFAULT_ASPECT, *ASPECTS[DEFAULT_ASPECT]))
    captions: CaptionStyle = field(default_factory=CaptionStyle)
    transition: str = "fade"
    transition_seconds: float = 0.35
    music: Music = field(default_factory=Music)
    preset: str = "superfast"  # measured: less CPU, more SSIM, less banding than veryfast (no mb-tree)
    crf: int = 20
    counter: bool = False
    credit: bool = False


def _fail(path: str, problem: str, hint: str) -> PermanentStageError:
    return PermanentStageError(f"theme.settings{path} {problem}", hint=hint)


def _colour(value: Any, path: str, *, allow_none: bool = False) -> tuple[int, int, int, int] | None:
    if allow_none and (value is None or value == "none"):
        return None
    match = _COLOUR.match(value) if isinstance(value, str) else None
    if not match:
        raise _fail(
            path, f"is {value!r}, not a colour", 'use "#rrggbb" or "#rrggbbaa"' + (' or "none"' if allow_none else "")
        )
    rgb = match.group(1)
    alpha = int(match.group(2), 16) if match.group(2) else 255
    return (int(rgb[0:2], 16), int(rgb[2:4], 16), int(rgb[4:6], 16), alpha)


def _choice(value: Any, choices: tuple[str, ...], path: str) -> str:
    if value not in choices:
        raise _fail(path, f"is {value!r}", f"use one of: {', '.join(choices)}")
    return value


def _number(value: Any, low: float, high: float, path: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and value != int(value)):
        raise _fail(
            path, f"is {value!r}, not a{'n integer' if integer else ' number'}", f"use a value from {low:g} to {high:g}"
        )
    if not low <= value <= high:
        raise _fail(path, f"is {value:g}, outside {low:g}-{high:g}", f"use a value from {low:g} to {high:g}")
    return value


def _object(value: Any, path: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object, got {type(value).__name__}", f"keys: {', '.join(sorted(known))}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise _fail(path, f"has unknown keys: {', '.join(unknown)}", f"keys: {', '.join(sorted(known))}")
    return value


def fonts() -> list[str]:
    return sorted(p.name for p in FONTS_DIR.glob("*.[ot]tf"))


def _captions(raw: Any) -> CaptionStyle:
    path = '["composition"]["captions"]'
    if isinstance(raw, str):  # shorthand: "captions": "phrase"
        raw = {"style": raw}
    data = _object(
        raw, path, {"style", "font", "size", "color", "highlight", "outline", "box", "position", "words", "uppercase"}
    )
    out: dict[str, Any] = {}
    if "style" in data:
        out["style"] = _choice(data["style"], CAPTION_STYLES, f'{path}["style"]')
    if "font" in data:
        name = data["font"]
        if not isinstance(name, str) or "/" in name or "\\" in name or not (FONTS_DIR / name).is_file():
            raise _fail(
                f'{path}["font"]',
                f"is {name!r}, not a bundled font",
                f"use one of: {', '.join(fonts())} (stages/assets/fonts)",
            )
        out["font"] = FONTS_DIR / name
    if "size" in data and data["size"] is not None:
        out["size"] = int(_number(data["size"], 40, 140, f'{path}["size"]', integer=True))
    for key in ("color", "highlight", "outline"):
        if key in data:
            out[key] = _colour(data[key], f'{path}["{key}"]')
    if "box" in data:
        out["box"] = _colour(data["box"], f'{path}["box"]', allow_none=True)
    if "position" in data:
        out["position"] = _choice(data["position"], POSITIONS, f'{path}["position"]')
    if "words" in data:
        out["words"] = int(_number(data["words"], 1, 3, f'{path}["words"]', integer=True))
    if "uppercase" in data:
        if not isinstance(data["uppercase"], bool):
            raise _fail(f'{path}["uppercase"]', f"is {data['uppercase']!r}", "use true or false")
        out["uppercase"] = data["uppercase"]
    return CaptionStyle(**out)


def _music(raw: Any, legacy_volume: Any) -> Music:
    path = '["composition"]["music"]'
    if raw is None:
        return Music()
    if isinstance(raw, str):  # a mood, "none", or (older themes) the path of a file
        if raw in MOODS:
            return Music(mood=raw)
        raw = {"file": raw}
    data = _object(raw, path, {"mood", "file", "volume_db"})
    out: dict[str, Any] = {}
    if "mood" in data:
        out["mood"] = _choice(data["mood"], MOODS, f'{path}["mood"]')
    if data.get("file"):
        file = Path(str(data["file"]))
        if not file.is_absolute():
            file = Path(django_settings.BASE_DIR) / file
        if not file.is_file():
            raise _fail(
                f'{path}["file"]',
                f"{str(data['file'])!r} does not exist",
                "give a path to an audio file (relative to the project) or remove it",
            )
        out["file"] = file
    if "volume_db" in data:
        out["volume_db"] = float(_number(data["volume_db"], -40, 0, f'{path}["volume_db"]'))
    elif legacy_volume is not None:  # older themes: music_volume as a linear factor
        factor = _number(legacy_volume, 0.001, 1.0, '["composition"]["music_volume"]')
        import math

        out["volume_db"] = max(-40.0, 20 * math.log10(factor))
    return Music(**out)


def look_for(theme_settings: dict[str, Any] | None) -> Look:
    """The theme's look from its settings (``theme.settings``), validated.

    Raises ``PermanentStageError`` naming the setting, what is wrong and what would be right.
    """
    theme_settings = theme_settings or {}
    comp = theme_settings.get("composition") or {}
    if not isinstance(comp, dict):
        raise _fail('["composition"]', "must be an object", 'e.g. {"aspect": "9:16", "captions": {"style": "karaoke"}}')
    out: dict[str, Any] = {}
    aspect = comp.get("aspect", DEFAULT_ASPECT)
    _choice(aspect, tuple(ASPECTS), '["composition"]["aspect"]')
    out["frame"] = Frame(aspect, *ASPECTS[aspect])
    if "captions" in comp:
        out["captions"] = _captions(comp["captions"])
    if "transition" in comp:
        out["transition"] = _choice(comp["transition"], TRANSITIONS, '["composition"]["transition"]')
    if "transition_seconds" in comp:
        out["transition_seconds"] = float(
            _number(comp["transition_seconds"], 0.1, 1.0, '["composition"]["transition_seconds"]')
        )
    out["music"] = _music(comp.get("music"), comp.get("music_volume"))
    if "preset" in comp:
        out["preset"] = _choice(str(comp["preset"]), X264_PRESETS, '["composition"]["preset"]')
    if "crf" in comp:
        try:
            crf = int(comp["crf"])
        except (TypeError, ValueError):
            crf = -1
        out["crf"] = int(_number(crf, 0, 51, '["composition"]["crf"]', integer=True))
    style = (theme_settings.get("scene_generation") or {}).get("style") or {}
    if isinstance(style, dict):
        for key in ("counter", "credit"):
            if key in style:
                if not isinstance(style[key], bool):
                    raise _fail(f'["scene_generation"]["style"]["{key}"]', f"is {style[key]!r}", "use true or false")
                out[key] = style[key]
    return Look(**out)


def validate(theme_settings: dict[str, Any] | None) -> str | None:
    """The problem with a theme's look settings as one sentence, or None (for ``Theme.clean``)."""
    try:
        look_for(theme_settings)
    except PermanentStageError as exc:
        return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return None
