"""Burned-in captions: plan them from the voice's word timings, draw them, lay them out as one track.

Why a track: a caption per overlay filter (and per ffmpeg input) costs a filter pass on every
frame for each of them; a karaoke video changes its caption ~3 times a second (~90 pictures for
30 s). Instead every picture is a PNG of the same size and the concat demuxer plays them as one
stream with exact per-picture durations (``option framerate 30``: whole frames, no drift), laid
over the video by a single ``overlay``.

Styles (``stages.look.CaptionStyle``):

* ``karaoke`` (default): groups of 1-3 words, balanced (4 words -> 2 + 2), never across a
  sentence, a comma or a pause; the word being spoken is drawn in the highlight colour from the
  frame nearest its start.
* ``phrase``: the sentence in lines of at most 32 characters, two lines at a time.
* ``none``: no captions.

One font size for the whole video: the largest (up to the theme's ``size``) at which the widest
word (karaoke) or line (phrase) fits the caption band. Every picture sits in the band the cards
keep free (``Layout.caption_zone``), so captions stay inside the platforms' safe zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from stages.look import Box, CaptionStyle
from stages.voiceover import MAX_LINE_CHARS, split_lines

GROUP_PAUSE = 0.35  # a pause this long between words starts a new karaoke group
HOLD = 0.3  # a caption stays this long after its last word when nothing follows at once
BREAK_AFTER = ",;:.!?"
TRACK_NAME = "captions.ffconcat"


@dataclass
class Word:
    text: str
    start: float
    end: float
    segment: str
    sentence: int
    override: bool = False  # words an operator put in place of the spoken ones (caption edit)


@dataclass
class Picture:
    """One caption picture and the frame it first shows on (until the next picture)."""

    frame: int
    words: list[int]  # indexes into the plan's words; [] = nothing shown
    highlight: int | None = None  # karaoke: the word being spoken
    lines: list[list[int]] = field(default_factory=list)  # words per line


@dataclass
class Track:
    style: str
    size: int
    pictures: list[Picture]
    words: list[Word]
    canvas: Box = (0, 0, 0, 0)  # where the caption pictures land in the frame
    boxes: list[Box | None] = field(default_factory=list)  # per picture: the drawn block in the frame
    sizes: set[int] = field(default_factory=set)  # font sizes actually drawn (one, by design)

    def starts(self) -> list[tuple[int, float]]:
        """(word index, time its highlight or line appears) for QC: frame-quantised, as drawn."""
        shown: list[tuple[int, float]] = []
        seen: set[int] = set()
        for picture in self.pictures:
            key = picture.highlight if picture.highlight is not None else (picture.words[0] if picture.words else None)
            if key is not None and key not in seen:
                seen.add(key)
                shown.append((key, picture.frame / FPS))
        return shown


FPS = 30


def words_from(voice: dict[str, Any]) -> list[Word]:
    """The voiceover's timed words; an older checkpoint without them gets one "word" per caption line."""
    raw = voice.get("words")
    if isinstance(raw, list) and raw:
        return [
            Word(
                str(w["text"]), float(w["start"]), float(w["end"]), str(w.get("segment", "")), int(w.get("sentence", 0))
            )
            for w in raw
            if isinstance(w, dict) and str(w.get("text", "")).strip()
        ]
    return [
        Word(str(c["text"]), float(c["start"]), float(c["end"]), "", i)
        for i, c in enumerate(voice.get("captions") or [])
        if isinstance(c, dict) and str(c.get("text", "")).strip()
    ]


def apply_overrides(words: list[Word], script: dict[str, Any], overrides: dict[str, Any] | None) -> list[Word]:
    """Caption edits (``overrides["segments"][n]["caption"]``, n counted from 1 over the script's
    segments): the words shown for segment n replace its spoken words, spread over the time they
    are spoken (each word's share of it by its length). The replacements are marked ``override``:
    QC does not hold them to the voice's word timings (they differ from the speech on purpose)."""
    edits = (overrides or {}).get("segments") or {}
    segments = [s for s in script.get("segments") or [] if isinstance(s, dict)]
    replaced: dict[str, list[str]] = {}
    for key, edit in edits.items():
        text = edit.get("caption") if isinstance(edit, dict) else None
        if not isinstance(text, str) or not text.split():
            continue
        try:
            n = int(key)
        except (TypeError, ValueError):
            continue
        if 1 <= n <= len(segments):
            replaced[str(segments[n - 1].get("id"))] = text.split()
    if not replaced:
        return words
    out: list[Word] = []
    i = 0
    while i < len(words):
        segment = words[i].segment
        j = i
        while j < len(words) and words[j].segment == segment:
            j += 1
        tokens = replaced.get(segment) if segment else None
        if not tokens:
            out += words[i:j]
        else:
            start, end = words[i].start, words[j - 1].end
            weights = [len(t) + 1 for t in tokens]
            total, at = float(sum(weights)), start
            for token, weight in zip(tokens, weights, strict=True):
                length = (end - start) * weight / total
                out.append(Word(token, at, at + length, segment, words[i].sentence, override=True))
                at += length
        i = j
    return out


def display(text: str, style: CaptionStyle) -> str:
    """A word as drawn: no trailing comma or full stop (questions and exclamations keep theirs)."""
    shown = text.rstrip(",;:.").strip() or text
    return shown.upper() if style.uppercase else shown


# -- fonts and drawing --------------------------------------------------------------------------
@cache
def _font(path: Path, size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(str(path), size)


def _metrics(size: int) -> tuple[int, int, int, int]:
    """stroke, horizontal padding, vertical padding, line height for a font size."""
    return max(3, size // 12), int(size * 0.38), int(size * 0.2), int(size * 1.18)


def line_width(words: list[str], style: CaptionStyle, size: int) -> float:
    font = _font(style.font, size)
    return font.getlength(" ".join(words))


def block_size(lines: list[list[str]], style: CaptionStyle, size: int) -> tuple[int, int]:
    stroke, pad_x, pad_y, line_h = _metrics(size)
    width = max(line_width(line, style, size) for line in lines)
    return int(math.ceil(width)) + 2 * (stroke + pad_x), line_h * len(lines) + 2 * (stroke + pad_y)


def draw_block(lines: list[list[str]], highlight: tuple[int, int] | None, style: CaptionStyle, size: int) -> Any:
    """An RGBA picture of caption lines: bold type with an outline on an optional rounded box;
    ``highlight`` (line, word) is drawn in the highlight colour."""
    from PIL import Image, ImageDraw

    font = _font(style.font, size)
    stroke, pad_x, pad_y, line_h = _metrics(size)
    width, height = block_size(lines, style, size)
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if style.box is not None:
        draw.rounded_rectangle([0, 0, width - 1, height - 1], radius=int(size * 0.3), fill=style.box)
    space = font.getlength(" ")
    ascent, descent = font.getmetrics()
    y = pad_y + stroke + (line_h - ascent - descent) // 2
    for row, words in enumerate(lines):
        x = (width - line_width(words, style, size)) / 2
        for col, word in enumerate(words):
            colour = style.highlight if highlight == (row, col) else style.color
            draw.text((x, y), word, font=font, fill=colour, stroke_width=stroke, stroke_fill=style.outline)
            x += font.getlength(word) + space
        y += line_h
    return image


# -- planning -----------------------------------------------------------------------------------
def fit_size(widest: list[list[list[str]]], style: CaptionStyle, default: int, zone: Box, lines: int) -> int:
    """The one font size for the video: the theme's (or the default) unless the widest block
    would not fit the caption band, then the largest that does."""
    width, height = zone[2] - zone[0], zone[3] - zone[1]
    size = style.size or default
    while size > 24:
        if (
            all(block_size(block, style, size)[0] <= width for block in widest)
            and block_size([["Ag"]] * lines, style, size)[1] <= height
        ):
            return size
        size -= 2
    return size


def _chunks(words: list[Word]) -> list[list[int]]:
    """Runs of word indexes that a caption may span: never across a sentence, a comma or a pause."""
    chunks: list[list[int]] = []
    current: list[int] = []
    for i, word in enumerate(words):
        if current:
            prev = words[current[-1]]
            if (
                word.sentence != prev.sentence
                or word.segment != prev.segment
                or prev.text.rstrip("\"'”’)")[-1:] in BREAK_AFTER
                or word.start - prev.end > GROUP_PAUSE
            ):
                chunks.append(current)
                current = []
        current.append(i)
    if current:
        chunks.append(current)
    return chunks


def _balanced(chunk: list[int], most: int) -> list[list[int]]:
    """Split a run into the fewest groups of at most ``most`` words, as even as possible."""
    count = math.ceil(len(chunk) / most)
    size, extra = divmod(len(chunk), count)
    groups, start = [], 0
    for k in range(count):
        end = start + size + (1 if k < extra else 0)
        groups.append(chunk[start:end])
        start = end
    return groups


def plan(words: list[Word], style: CaptionStyle, zone: Box, duration: float, default_size: int) -> Track:
    """Which words show on which frames, at one size, for ``style``."""
    if style.style == "none" or not words:
        return Track(style=style.style, size=0, pictures=[], words=words)
    shown = [display(w.text, style) for w in words]
    width = zone[2] - zone[0]
    if style.style == "karaoke":
        size = fit_size([[[t]] for t in shown], style, default_size, zone, 1)
        groups: list[list[list[int]]] = []  # groups of lines of word indexes (karaoke: one line)
        for chunk in _chunks(words):
            most = style.words
            while True:  # fewer words a group until every group fits the band
                split = _balanced(chunk, most)
                if most == 1 or all(block_size([[shown[i] for i in g]], style, size)[0] <= width for g in split):
                    break
                most -= 1
            groups += [[group] for group in split]
    else:
        groups = _phrases(words, shown)
        size = fit_size([[[shown[i] for i in line]] for g in groups for line in g], style, default_size, zone, 2)
    pictures: list[Picture] = []
    last_frame = round(duration * FPS)
    for n, lines in enumerate(groups):
        members = [i for line in lines for i in line]
        first = round(words[members[0]].start * FPS)
        if pictures and first <= pictures[-1].frame:
            first = pictures[-1].frame + 1  # never two pictures on one frame
        nxt = groups[n + 1][0][0] if n + 1 < len(groups) else None
        hold_end = round((words[members[-1]].end + HOLD) * FPS)
        end = min(round(words[nxt].start * FPS), hold_end) if nxt is not None else min(hold_end, last_frame)
        if style.style == "karaoke":
            for k, i in enumerate(members):
                frame = first if k == 0 else max(round(words[i].start * FPS), pictures[-1].frame + 1)
                if frame < end or k == 0:
                    pictures.append(Picture(frame=frame, words=members, highlight=i, lines=lines))
        else:
            pictures.append(Picture(frame=first, words=members, lines=lines))
        if nxt is None or round(words[nxt].start * FPS) > end:
            pictures.append(Picture(frame=max(end, pictures[-1].frame + 1), words=[]))
    if not pictures or pictures[0].frame > 0:
        pictures.insert(0, Picture(frame=0, words=[]))
    pictures = [p for p in pictures if p.frame < max(last_frame, 1)]
    return Track(style=style.style, size=size, pictures=pictures, words=words)


def _phrases(words: list[Word], shown: list[str]) -> list[list[list[int]]]:
    """Sentences cut into lines of at most 32 characters (``voiceover.split_lines``), two lines a caption."""
    phrases: list[list[list[int]]] = []
    for chunk in _sentences(words):
        text = " ".join(shown[i] for i in chunk)
        starts = {}
        offset = 0
        for i in chunk:
            starts[offset] = i
            offset += len(shown[i]) + 1
        lines = [
            [i for c, i in starts.items() if line.char <= c < line.char + len(line.text)]
            for line in split_lines(text, max_chars=MAX_LINE_CHARS)
        ]
        lines = [line for line in lines if line]
        for k in range(0, len(lines), 2):
            phrases.append(lines[k : k + 2])
    return phrases


def _sentences(words: list[Word]) -> list[list[int]]:
    out: list[list[int]] = []
    for i, word in enumerate(words):
        if out and words[out[-1][-1]].sentence == word.sentence and words[out[-1][-1]].segment == word.segment:
            out[-1].append(i)
        else:
            out.append([i])
    return out


# -- rendering ----------------------------------------------------------------------------------
def layout(track: Track, style: CaptionStyle, zone: Box) -> None:
    """Where every picture lands, without drawing one: fills ``track.canvas`` (one canvas size for
    all, centred in ``zone``), ``track.boxes`` (each picture's block in frame coordinates) and
    ``track.sizes``. Block sizes come from the font metrics, as ``draw_block`` draws them."""
    track.boxes = []
    if not track.pictures or track.size == 0:
        return
    shown = [display(w.text, style) for w in track.words]
    sizes: list[tuple[int, int] | None] = []
    for picture in track.pictures:
        if not picture.words:
            sizes.append(None)
            continue
        sizes.append(block_size([[shown[i] for i in line] for line in picture.lines], style, track.size))
        track.sizes.add(track.size)
    canvas_w = max((s[0] for s in sizes if s is not None), default=2)
    canvas_h = max((s[1] for s in sizes if s is not None), default=2)
    canvas_w += canvas_w % 2
    canvas_h += canvas_h % 2
    cx = (zone[0] + zone[2]) // 2
    cy = (zone[1] + zone[3]) // 2
    x0, y0 = cx - canvas_w // 2, cy - canvas_h // 2
    x0 += x0 % 2  # even offsets (yuv420p), rounded toward the zone's inside
    y0 += y0 % 2
    x0 = max(min(x0, zone[2] - canvas_w), zone[0])
    y0 = max(min(y0, zone[3] - canvas_h), zone[1])
    track.canvas = (x0, y0, x0 + canvas_w, y0 + canvas_h)
    for size in sizes:
        if size is None:
            track.boxes.append(None)
        else:
            left, top = (canvas_w - size[0]) // 2, (canvas_h - size[1]) // 2
            track.boxes.append((x0 + left, y0 + top, x0 + left + size[0], y0 + top + size[1]))


def picture_key(track: Track, n: int, style: CaptionStyle) -> list[Any] | None:
    """What picture ``n`` shows (its lines as drawn, the highlighted word, the style, size and
    place): equal keys draw equal pictures. None for an empty picture."""
    picture = track.pictures[n]
    if not picture.words:
        return None
    shown = [[display(track.words[i].text, style) for i in line] for line in picture.lines]
    highlight = None
    if picture.highlight is not None:
        highlight = next(
            ([r, line.index(picture.highlight)] for r, line in enumerate(picture.lines) if picture.highlight in line),
            None,
        )
    look = [style.style, style.font.name, style.color, style.highlight, style.outline, style.box, style.uppercase]
    return [shown, highlight, look, track.size, list(track.canvas), list(track.boxes[n] or [])]


def draw_picture(track: Track, n: int, style: CaptionStyle, folder: Path) -> Path:
    """Picture ``n`` on the track's canvas as a stored PNG (the empty canvas for no words)."""
    from PIL import Image

    x0, y0, x1, y1 = track.canvas
    canvas = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
    picture = track.pictures[n]
    folder.mkdir(parents=True, exist_ok=True)
    if not picture.words:
        path = folder / "empty.png"
        if not path.is_file():
            canvas.save(path, compress_level=1)
        return path
    shown = [display(w.text, style) for w in track.words]
    lines = [[shown[i] for i in line] for line in picture.lines]
    highlight = None
    if picture.highlight is not None:
        for r, line in enumerate(picture.lines):
            if picture.highlight in line:
                highlight = (r, line.index(picture.highlight))
    block = draw_block(lines, highlight, style, track.size)
    box = track.boxes[n]
    assert box is not None
    canvas.paste(block, (box[0] - x0, box[1] - y0))
    path = folder / f"caption-{n + 1:04d}.png"
    canvas.save(path, compress_level=0)  # stored, not deflated: 4x faster to write, read once
    return path


def spans(track: Track, first: int, count: int) -> list[tuple[int, int, int]]:
    """(picture index, first local frame, one past the last) of the pictures shown on frames
    ``first`` .. ``first + count`` of the video (a picture lasts until the next one)."""
    out = []
    for n, picture in enumerate(track.pictures):
        end = track.pictures[n + 1].frame if n + 1 < len(track.pictures) else first + count
        a, b = max(picture.frame, first), min(end, first + count)
        if a < b:
            out.append((n, a - first, b - first))
    return out


def write_track(entries: list[tuple[Path, int]], out: Path) -> Path:
    """A concat list playing each picture for its frame count (the last one until the end)."""
    lines = ["ffconcat version 1.0"]
    for k, (path, frames) in enumerate(entries):
        lines += [f"file '{path.name}'", f"option framerate {FPS}"]
        if k + 1 < len(entries):
            lines.append(f"duration {frames / FPS:.6f}")
    out.write_text("\n".join(lines) + "\n")
    return out


def render(track: Track, style: CaptionStyle, zone: Box, folder: Path) -> Path | None:
    """Draw every picture at one canvas size, centred in ``zone``; write the concat list.

    Returns the ``.ffconcat`` path (None without captions). Fills ``track.canvas``,
    ``track.boxes`` (each picture's drawn block in frame coordinates) and ``track.sizes``.
    """
    if not track.pictures or track.size == 0:
        return None
    layout(track, style, zone)
    last = track.pictures[-1].frame + 1
    entries = [(draw_picture(track, n, style, folder), b - a) for n, a, b in spans(track, 0, last)]
    return write_track(entries, folder / TRACK_NAME)
