"""Scene cards: one still per script segment (1080x1920, or 1080x1080 / 1920x1080), drawn with Pillow.

Each card is a background derived from the topic (a palette from a hash of the topic title,
a vertical gradient and soft geometric shapes, so a slow pan reads as motion) with the segment's
key phrase in large, wrapped, auto-fitted type on top, and a small badge with the theme's name.
A "2/5" counter and the source's name are drawn only when the theme asks (``style.counter``,
``style.credit``): they are production furniture, not something a viewer needs.

Everything drawn over the background stays inside the platforms' safe zone (``stages.look``:
the area TikTok, Reels and Shorts leave free of their UI, mapped into the frame). The box is
shrunk further by ``MOTION_ZOOM`` so the text is still clear of that UI when composition pans
the overscanned still. A band of it (``Layout.caption_zone``; lower, middle or upper, as the
theme's captions sit) is left free of card text for the captions composition lays on top.
Every element drawn is recorded with its box (``Card.boxes``), which composition's QC checks.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
import unicodedata
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from stages.look import PLATFORM_ZONE, Box
from stages.media import FONT_PATH

WIDTH, HEIGHT = 1080, 1920  # the default (9:16) frame
MOTION_ZOOM = 1.08  # the most composition may zoom in (pan overscan) with text still clear of the UI
# Text is kept inside the safe box shrunk as for a 1.12x zoom, so at the 1.08x overscan the pan
# window still has ~30 px sideways and ~50 px up/down to travel with every letter inside the zone.
TEXT_INSET = 1.12
BADGE_ROW = 120  # px above the headline zone: the theme badge (and the counter when asked for)


def _inset_box(box: Box, width: int, height: int, zoom: float) -> Box:
    """``box``, shrunk toward the frame's centre so it still fits after a ``zoom`` x centre zoom."""
    cx, cy = width / 2, height / 2
    left, top, right, bottom = box
    return (
        int(cx - (cx - left) / zoom) + 1,
        int(cy - (cy - top) / zoom) + 1,
        int(cx + (right - cx) / zoom),
        int(cy + (bottom - cy) / zoom),
    )


@dataclass(frozen=True)
class Layout:
    """Where things go on a card of one frame size: the platform-safe box, the text box inside it,
    the band kept for captions and the headline's zone."""

    width: int = WIDTH
    height: int = HEIGHT
    safe_box: Box = PLATFORM_ZONE
    caption_position: str = "lower"  # lower | middle | upper | none (no captions: no band)

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def text_box(self) -> Box:
        return _inset_box(self.safe_box, self.width, self.height, TEXT_INSET)

    @property
    def caption_band(self) -> int:
        return round(300 * min(1.0, self.height / 1200))

    @property
    def caption_zone(self) -> Box:
        """The band for captions: as wide as the safe box (captions do not pan), as high as
        ``caption_band``, at the bottom, middle or top of the text box."""
        _, y0, _, y1 = self.text_box
        x0, x1 = self.safe_box[0] + 10, self.safe_box[2] - 10
        band = self.caption_band
        if self.caption_position == "upper":
            return (x0, y0, x1, y0 + band)
        if self.caption_position == "middle":
            mid = (y0 + y1) // 2 + BADGE_ROW // 2
            return (x0, mid - band // 2, x1, mid + band // 2)
        if self.caption_position == "none":
            return (x0, y1, x1, y1)
        return (x0, y1 - band, x1, y1)

    @property
    def badge_top(self) -> int:
        top = self.text_box[1]
        return top + self.caption_band + 20 if self.caption_position == "upper" else top

    @property
    def headline_zone(self) -> Box:
        x0, _, x1, y1 = self.text_box
        top = self.badge_top + BADGE_ROW
        bottom = y1 if self.caption_position in ("upper", "none") else self.caption_zone[1] - 40
        return (x0, top, x1, bottom)


DEFAULT_LAYOUT = Layout()
SAFE_BOX = DEFAULT_LAYOUT.safe_box
TEXT_BOX = DEFAULT_LAYOUT.text_box  # all card text lives in here
CAPTION_ZONE = DEFAULT_LAYOUT.caption_zone  # kept free for composition's captions
HEADLINE_ZONE = DEFAULT_LAYOUT.headline_zone

HEADLINE_MAX_SIZE, HEADLINE_MIN_SIZE = 132, 64
HEADLINE_MAX_LINES = 5
SHADOW_PAD = 18  # the drop shadow's layer reaches this far around the headline
WHITE = (255, 255, 255)
_BG_SCALE = 2  # the background is drawn at half size and scaled up: soft shapes, 4x fewer pixels


@dataclass(frozen=True)
class CardSpec:
    headline: str  # the key phrase ("" for a picture-only card)
    index: int  # 0-based position of the segment
    total: int
    seed: str  # the topic title: palette and shapes come from it
    label: str = ""  # the badge: the theme's name
    footer: str = ""  # line under the headline (the source's name, when the theme asks for it)
    hue: float | None = None  # the theme's style: a fixed base hue (degrees) instead of the topic's
    accent: str | None = None  # the theme's style: accent colour "#rrggbb"
    counter: bool = False  # the theme's style: draw a "2/5" pill before the badge
    layout: Layout = DEFAULT_LAYOUT
    search: str = ""  # what stock media to look for (the segment's headline as written); "" = headline
    variant: int = 0  # an operator's "another pick": another stock result, or another background (same look)


@dataclass
class Card:
    image: Image.Image
    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # what was drawn over the background
    headline: str = ""  # the headline as drawn (glyphs the font lacks removed)
    meta: dict[str, Any] = field(default_factory=dict)  # what the scene record says about it (source, credit...)


@dataclass(frozen=True)
class Palette:
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    accent: tuple[int, int, int]
    secondary: tuple[int, int, int]
    ink: tuple[int, int, int]  # near-black of the same hue: outlines, shadows, text on accent

    def as_hex(self) -> dict[str, str]:
        return {
            name: "#{:02x}{:02x}{:02x}".format(*getattr(self, name))
            for name in ("top", "bottom", "accent", "secondary", "ink")
        }


def _seed_int(seed: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}|{seed.strip().lower()}".encode()).digest()[:8], "big")


def _hls(h: float, lightness: float, saturation: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(h % 1.0, lightness, saturation)
    return (round(r * 255), round(g * 255), round(b * 255))


# Base hues (degrees) that stay rich when dark; reds, oranges, olives (about 350-140) turn brown.
BASE_HUES = (150, 162, 175, 188, 200, 210, 220, 230, 240, 250, 260, 270, 282, 295, 308, 320, 332, 342)


def palette_for(seed: str, index: int = 0, hue: float | None = None, accent: str | None = None) -> Palette:
    """A dark, saturated palette from the topic; each segment shifts the hue a little (analogous).

    A theme's style may fix the base hue (its brand colour family) and the accent colour.
    """
    n = _seed_int(seed, "hue")
    base = (hue if hue is not None else BASE_HUES[n % len(BASE_HUES)] + (n >> 16) % 9 - 4) / 360
    h = base + ((index % 6) - 2.5) * 0.012  # at most ~10 degrees either way: same family
    return Palette(
        top=_hls(h, 0.25, 0.55),
        bottom=_hls(h + 0.07, 0.08, 0.6),
        accent=_rgb(accent) if accent else _hls(base + 0.42, 0.62, 0.95),  # complementary, fixed across segments
        secondary=_hls(h - 0.09, 0.45, 0.75),
        ink=_hls(h, 0.06, 0.5),
    )


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


# --- glyphs ---------------------------------------------------------------------------------


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), size)


@cache
def _notdef() -> tuple[tuple[int, int], bytes]:
    mask = font(48).getmask("\uffff")  # a noncharacter: every font draws its .notdef box for it
    return mask.size, bytes(mask)


@lru_cache(maxsize=8192)
def has_glyph(ch: str) -> bool:
    """Does the card font draw ``ch``? A missing glyph renders exactly like .notdef (a tofu box)."""
    if ch.isspace():
        return True
    if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Me"}:
        return False  # controls, joiners, variation selectors, combining marks left after NFC
    mask = font(48).getmask(ch)
    return (mask.size, bytes(mask)) != _notdef()


def renderable(text: str) -> str:
    """``text`` without the characters the font cannot draw (emoji, CJK with Lato), spaces tidied."""
    text = unicodedata.normalize("NFC", text or "")
    kept = "".join(ch if has_glyph(ch) else " " for ch in text)
    return " ".join(kept.split())


# --- layout ---------------------------------------------------------------------------------


def _wrap(text: str, fnt: ImageFont.FreeTypeFont, width: float, *, split_words: bool = True) -> list[str] | None:
    """Greedy word wrap. A word wider than the line breaks after one of its own hyphens
    ("Oslo-" / "based") when it can; otherwise it is split with a new hyphen, or, with
    ``split_words=False``, the wrap fails (None) so the caller can try a smaller size first."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while fnt.getlength(word) > width and len(word) > 1:
            joints = [i + 1 for i, ch in enumerate(word[:-1]) if ch == "-" and fnt.getlength(word[: i + 1]) <= width]
            if joints:
                head, word = word[: joints[-1]], word[joints[-1] :]
            elif not split_words:
                return None
            else:
                cut = len(word) - 1
                while cut > 1 and fnt.getlength(word[:cut] + "-") > width:
                    cut -= 1
                head, word = word[:cut] + "-", word[cut:]
            if line:
                lines.append(line)
            lines.append(head)
            line = ""
        candidate = f"{line} {word}".strip()
        if line and fnt.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def _balanced(text: str, fnt: ImageFont.FreeTypeFont, width: float, *, split_words: bool = True) -> list[str]:
    """Wrap into as few lines as the width allows, with the most even line lengths (no lone last word)."""
    lines = _wrap(text, fnt, width, split_words=split_words) or []
    if len(lines) < 2:
        return lines
    best, best_score = lines, None
    for step in range(13):
        candidate = _wrap(text, fnt, width * (1 - step * 0.04), split_words=split_words)
        if candidate is None or len(candidate) != len(lines):
            continue
        lengths = [fnt.getlength(line) for line in candidate]
        score = max(lengths) - min(lengths)
        if best_score is None or score < best_score - 1:
            best, best_score = candidate, score
    return best


def _tidy_separators(lines: list[str]) -> list[str]:
    """A key phrase's " · " never ends or starts a line ("3 nm ·" / "RISC-V" -> "3 nm" / "RISC-V")."""
    return [line.strip().removesuffix("·").removeprefix("·").strip() for line in lines if line.strip(" ·")]


def fit_headline(text: str, width: int, height: int) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
    """The largest size at which ``text`` fits the box in at most ``HEADLINE_MAX_LINES`` lines,
    preferring a smaller size with whole words over a larger one that splits a word. A key phrase
    ("Nordlys Labs · Raspberry Pi 5") puts each fact on a line of its own when that fits."""
    if " · " in text:
        parts = [p.strip() for p in text.split(" · ") if p.strip()]
        for size in range(HEADLINE_MAX_SIZE, HEADLINE_MIN_SIZE + 15, -4):
            fnt, line_h = font(size), round(size * 1.1)
            if len(parts) * line_h <= height and all(fnt.getlength(p) <= width - _stroke(size) * 2 for p in parts):
                return fnt, parts, line_h
    for split_words in (False, True):
        for size in range(HEADLINE_MAX_SIZE, HEADLINE_MIN_SIZE - 1, -4):
            fnt = font(size)
            pad = _stroke(size) * 2
            lines = _wrap(text, fnt, width - pad, split_words=split_words)
            line_h = round(size * 1.1)
            if lines is not None and len(lines) <= HEADLINE_MAX_LINES and len(lines) * line_h <= height:
                return fnt, _tidy_separators(_balanced(text, fnt, width - pad, split_words=split_words)), line_h
    fnt = font(HEADLINE_MIN_SIZE)
    width -= _stroke(HEADLINE_MIN_SIZE) * 2
    wrapped = _wrap(text, fnt, width) or []
    lines = wrapped[:HEADLINE_MAX_LINES]
    while lines and fnt.getlength(lines[-1] + "…") > width:
        lines[-1] = lines[-1][:-1].rstrip()
    if lines and len(wrapped) > HEADLINE_MAX_LINES:
        lines[-1] += "…"
    return fnt, lines, round(HEADLINE_MIN_SIZE * 1.1)


def _stroke(size: int) -> int:
    return max(2, size // 22)


def _union(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    if a is None:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _truncate(text: str, fnt: ImageFont.FreeTypeFont, width: float) -> str:
    if fnt.getlength(text) <= width:
        return text
    while text and fnt.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…" if text else ""


# --- the renderer ---------------------------------------------------------------------------


class CardRenderer:
    """The offline renderer: gradient + shapes background, headline card on top. ~0.1 s a card."""

    name = "cards"

    def __init__(self, ctx: Any = None) -> None:
        """Stateless: the registry builds it with the stage context, which it does not need."""

    def style(self, seed: str, layout: Layout = DEFAULT_LAYOUT) -> dict[str, Any]:
        x0, y0, x1, y1 = layout.safe_box
        return {
            "renderer": self.name,
            "palette": palette_for(seed).as_hex(),
            "font": FONT_PATH.name,
            "size": [layout.width, layout.height],
            "safe_box": list(layout.safe_box),
            "safe_zone": {"top": y0, "bottom": layout.height - y1, "left": x0, "right": layout.width - x1},
            "text_box": list(layout.text_box),
            "caption_zone": list(layout.caption_zone),
            "max_zoom": MOTION_ZOOM,
        }

    def render(self, spec: CardSpec, *, with_text: bool = True) -> Card:
        pal = palette_for(spec.seed, spec.index, spec.hue, spec.accent)
        salt = f"shapes-{spec.index}" + (f"-pick-{spec.variant}" if spec.variant else "")
        image = self._background(pal, random.Random(_seed_int(spec.seed, salt)), spec.layout.size)
        if spec.variant % 2:  # another pick: other shapes, and the gradient and layout mirrored
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        card = Card(image=image)
        if with_text:
            self._draw_text(card, spec, pal)
        return card

    def text_layer(self, spec: CardSpec) -> Image.Image:
        """The card's text alone (badge, headline, footer, shadow) on a transparent RGBA layer of
        the frame's size: what composition draws over a playing stock clip, so a video scene keeps
        the card's layout and safe zone.

        Drawing onto transparent black with Pillow composites like premultiplied alpha (every
        channel, alpha included, is blended with the glyph coverage), so the result is read back as
        ``RGBa`` and converted to straight alpha, which ffmpeg's overlay expects.
        """
        pal = palette_for(spec.seed, spec.index, spec.hue, spec.accent)
        card = Card(image=Image.new("RGBA", spec.layout.size, (0, 0, 0, 0)))
        self._draw_text(card, spec, pal)
        return Image.frombytes("RGBa", card.image.size, card.image.tobytes()).convert("RGBA")

    # -- background -------------------------------------------------------------------------
    @staticmethod
    def _background(pal: Palette, rng: random.Random, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Image.Image:
        w, h = size[0] // _BG_SCALE, size[1] // _BG_SCALE
        mask = Image.linear_gradient("L").resize((w, h))
        base = Image.composite(Image.new("RGB", (w, h), pal.bottom), Image.new("RGB", (w, h), pal.top), mask)
        layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        # Large soft discs: the main shapes; positions differ per segment.
        for color, alpha in ((pal.secondary, 70), (pal.accent, 46), (pal.secondary, 40)):
            r = rng.randint(int(w * 0.28), int(w * 0.55))
            cx, cy = rng.randint(-r // 2, w + r // 2), rng.randint(-r // 3, h + r // 3)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*color, alpha))
        # Rings and a diagonal band: crisp-ish lines a slow zoom visibly moves.
        for _ in range(2):
            r = rng.randint(int(w * 0.15), int(w * 0.4))
            cx, cy = rng.randint(0, w), rng.randint(0, h)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(*pal.accent, 90), width=rng.randint(3, 6))
        y0 = rng.randint(int(h * 0.15), int(h * 0.85))
        slope = rng.choice((-1, 1)) * rng.uniform(0.25, 0.6) * w
        for k in range(5):
            off = k * 16
            draw.line((0, y0 + off, w, y0 + off + slope), fill=(*WHITE, 22), width=4)
        # A dot grid in one corner.
        gx, gy = rng.choice(((24, 24), (w - 160, 24), (24, h - 160), (w - 160, h - 160)))
        for i in range(6):
            for j in range(6):
                x, y = gx + i * 26, gy + j * 26
                draw.ellipse((x, y, x + 6, y + 6), fill=(*WHITE, 60))
        layer = layer.filter(ImageFilter.GaussianBlur(1.2))
        image = Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")
        # Vignette: darker edges keep the eye (and the white type) in the middle.
        vignette = Image.radial_gradient("L").resize((w, h)).point(lambda v: min(255, int(v * 0.55)))
        image = Image.composite(Image.new("RGB", (w, h), pal.ink), image, vignette)
        # No film grain: it made each PNG 6x larger (2.5 MB), 4x slower to save and costs H.264
        # bitrate; the shapes are what make a slow zoom read as motion.
        return image.resize(size, Image.Resampling.BICUBIC)

    # -- text --------------------------------------------------------------------------------
    def _draw_text(self, card: Card, spec: CardSpec, pal: Palette) -> None:
        image = card.image
        draw = ImageDraw.Draw(image)
        layout = spec.layout
        x0, _, x1, _ = layout.text_box
        top = layout.badge_top

        # The badge: the theme's name on an accent pill, after a "2/5" counter if the theme asks.
        badge_font = font(34)
        left = x0
        if spec.counter:
            marker = f"{spec.index + 1}/{max(spec.total, spec.index + 1)}"
            tb = draw.textbbox((0, 0), marker, font=badge_font, anchor="lt")
            pill = (left, top, left + (tb[2] - tb[0]) + 44, top + (tb[3] - tb[1]) + 28)
            draw.rounded_rectangle(pill, radius=(pill[3] - pill[1]) // 2, fill=WHITE)
            draw.text((pill[0] + 22, pill[1] + 14), marker, font=badge_font, fill=pal.ink, anchor="lt")
            card.boxes["counter"] = pill
            left = pill[2] + 14
        label = renderable(spec.label).upper()
        if label:
            label = _truncate(label, badge_font, x1 - left - 44)
        if label:
            tb = draw.textbbox((0, 0), label, font=badge_font, anchor="lt")
            pill = (left, top, left + (tb[2] - tb[0]) + 44, top + (tb[3] - tb[1]) + 28)
            draw.rounded_rectangle(pill, radius=(pill[3] - pill[1]) // 2, fill=pal.accent)
            draw.text((pill[0] + 22, pill[1] + 14), label, font=badge_font, fill=pal.ink, anchor="lt")
            card.boxes["badge"] = pill

        # Headline: auto-fitted, vertically centred in its zone together with the footer.
        headline = renderable(spec.headline)
        wanted = sum(1 for ch in spec.headline if ch.isalnum())
        if sum(1 for ch in headline if ch.isalnum()) < wanted * 0.4:  # mostly glyphs the font lacks (CJK)
            headline = renderable(spec.label) or headline
        card.headline = headline
        if not headline:
            return  # a picture-only card: the captions carry the words
        # The zone shrunk by the shadow's reach, so the shadow stays inside the safe box too.
        zx0, zy0, zx1, zy1 = layout.headline_zone
        zx0, zx1, zy1 = zx0 + SHADOW_PAD, zx1 - SHADOW_PAD, zy1 - SHADOW_PAD - 12
        footer = renderable(spec.footer)
        footer_font = font(44)
        footer_h = 44 + 40 if footer else 0
        bar_h = 14 + 34
        fnt, lines, line_h = fit_headline(headline, zx1 - zx0, zy1 - zy0 - footer_h - bar_h)
        size = fnt.size
        stroke = _stroke(size)
        block_h = bar_h + len(lines) * line_h + footer_h
        y = zy0 + max(0, (zy1 - zy0 - block_h) // 2)

        bar = (zx0 + stroke, y, zx0 + stroke + 120, y + 14)
        draw.rounded_rectangle(bar, radius=7, fill=pal.accent)
        card.boxes["accent"] = bar
        y += bar_h

        text_box: tuple[int, int, int, int] | None = None
        positions = []
        for i, line in enumerate(lines):
            pos = (zx0 + stroke, y + i * line_h)
            positions.append((pos, line))
            text_box = _union(text_box, draw.textbbox(pos, line, font=fnt, anchor="la", stroke_width=stroke))
        if text_box is not None:
            card.boxes["shadow"] = self._shadow(image, positions, fnt, stroke, text_box, pal, offset=max(4, size // 16))
            for pos, line in positions:
                self._draw_line(draw, pos, line, fnt, stroke, pal)
            card.boxes["headline"] = text_box

        if footer:
            fy = y + len(lines) * line_h + 40
            footer = _truncate(footer, footer_font, zx1 - zx0 - 8)
            pos = (zx0 + stroke, fy)
            draw.text(pos, footer, font=footer_font, fill=pal.accent, anchor="la", stroke_width=3, stroke_fill=pal.ink)
            card.boxes["footer"] = tuple(draw.textbbox(pos, footer, font=footer_font, anchor="la", stroke_width=3))

    @staticmethod
    def _draw_line(
        draw: ImageDraw.ImageDraw,
        pos: tuple[int, int],
        line: str,
        fnt: ImageFont.FreeTypeFont,
        stroke: int,
        pal: Palette,
    ) -> None:
        """White type with a dark outline; words with digits ("$80", "2026") in the accent colour."""
        x, y = pos
        space = fnt.getlength(" ")
        for word in line.split(" "):
            color = pal.accent if any(ch.isdigit() for ch in word) else WHITE
            draw.text((x, y), word, font=fnt, fill=color, anchor="la", stroke_width=stroke, stroke_fill=pal.ink)
            x += fnt.getlength(word) + space

    @staticmethod
    def _shadow(
        image: Image.Image,
        positions: list[tuple[tuple[int, int], str]],
        fnt: ImageFont.FreeTypeFont,
        stroke: int,
        box: tuple[int, int, int, int],
        pal: Palette,
        *,
        offset: int,
    ) -> tuple[int, int, int, int]:
        """A soft drop shadow under the headline, blurred inside its own small layer (cheap, bounded)."""
        pad = SHADOW_PAD
        bx0, by0, bx1, by1 = box
        layer = Image.new("L", (bx1 - bx0 + 2 * pad, by1 - by0 + 2 * pad), 0)
        draw = ImageDraw.Draw(layer)
        for (x, y), line in positions:
            pos = (x - bx0 + pad, y - by0 + pad)
            draw.text(pos, line, font=fnt, fill=150, anchor="la", stroke_width=stroke, stroke_fill=150)
        layer = layer.filter(ImageFilter.GaussianBlur(max(3, fnt.size // 18)))
        image.paste(pal.ink, (bx0 - pad, by0 - pad + offset), layer)
        return (bx0 - pad, by0 - pad + offset, bx0 - pad + layer.width, by0 - pad + offset + layer.height)
