"""Composition's QC: is this short fit to publish? Measured on what was made, not on what was asked.

``stages.media.check_video`` covers delivery (streams, frame, codec, duration, -14 LUFS +-1,
true peak <= -1 dBTP). The checks here cover what a viewer notices:

* **word sync (voice)**: each caption highlight (karaoke) or line (phrase) appears, on the frame
  it is drawn, within 80 ms of the voice's own start for that word;
* **word sync (audio)**: independently, wherever the voice track starts sounding after a pause
  (an energy onset detector that knows nothing about words, ``stages.speech_timing``), a caption
  change is drawn within 80 ms;
* **safe zone**: every box drawn (card text and badge, after the pan moves them; every caption
  picture) lies inside the area TikTok, Reels and Shorts leave free (``stages.look``);
* **music under the voice**: the bed is there in the pauses of the finished file, and while a word
  sounds it is at least 12 dB under the voice (measured on the mix's own stems), ducked;
* **no digital silence**: no 50 ms of the finished soundtrack is silent;
* **no duplicated text**: no card repeats the narration the captions show (``stages.scripts``);
* **motion**: every shot moves (its pan travels, or it is footage);
* **one caption size**; the video bit rate is reported beside them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stages import media
from stages.scripts import duplicates
from stages.speech_timing import frame_db, speech_onsets

if TYPE_CHECKING:
    from stages.base import StageContext
    from stages.captions import Track, Word
    from stages.composition import Motion, Shot
    from stages.look import Look
    from stages.mix import Mix

SYNC_TOLERANCE = 0.08  # s
BED_UNDER_VOICE_DB = 12.0
BED_AUDIBLE_DB = -50.0  # dBFS RMS in the pauses of the finished mix
DIGITAL_SILENCE_DB = -80.0  # a 50 ms window quieter than this is digital silence
MIN_PAN_PX = 8.0
WINDOW = 0.05


def check(
    video: Path,
    *,
    ctx: StageContext | None,
    duration: float,
    look: Look,
    voice_wav: Path,
    words: list[Word],
    track: Track,
    shots: list[Shot],
    motion: Motion,
    script: dict[str, Any],
    soundtrack: Mix,
    transition: int,
) -> dict[str, Any]:
    """The full QC report: delivery checks plus the content checks above; ``passed`` if all hold."""
    report = media.qc_video(video, duration, ctx, look.frame.size)
    checks = report["checks"]
    extra: dict[str, Any] = {}

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    # -- word sync --------------------------------------------------------------------------
    if track.style == "none" or not track.pictures:
        add("word sync (voice)", True, "no captions (theme: none)")
        add("word sync (audio)", True, "no captions (theme: none)")
    else:
        errors = sync_errors(track, words)
        worst = max((abs(e) for e in errors), default=0.0)
        extra["sync_voice_ms"] = _stats(errors)
        add(
            "word sync (voice)",
            bool(errors) and worst <= SYNC_TOLERANCE,
            f"{len(errors)} {'highlights' if track.style == 'karaoke' else 'lines'}, "
            f"mean {_ms(np.mean(np.abs(errors)) if errors else 0)} / max {_ms(worst)} ms from the voice's word starts "
            f"(<= {_ms(SYNC_TOLERANCE)} ms)",
        )
        stem = soundtrack.stems[0] if soundtrack.stems else None
        onset_errors, onsets = onset_errors_for(track, words, stem or voice_wav)
        worst = max((abs(e) for e in onset_errors), default=0.0)
        extra["sync_audio_ms"] = _stats(onset_errors)
        add(
            "word sync (audio)",
            worst <= SYNC_TOLERANCE,
            f"{len(onset_errors)} of {onsets} speech onsets checked, mean {_ms(np.mean(np.abs(onset_errors)) if onset_errors else 0)}"
            f" / max {_ms(worst)} ms to the nearest caption change (<= {_ms(SYNC_TOLERANCE)} ms)",
        )
    add(
        "one caption size",
        len(track.sizes) <= 1,
        f"{track.size} px throughout" if len(track.sizes) <= 1 else f"sizes {sorted(track.sizes)}",
    )

    # -- safe zone ----------------------------------------------------------------------------
    zone = look.frame.safe_zone
    outside = zone_violations(shots, motion, track, zone)
    add(
        "UI safe zone",
        not outside,
        f"every drawn box inside x {zone[0]}-{zone[2]}, y {zone[1]}-{zone[3]}"
        if not outside
        else "; ".join(outside[:4]) + (f" (+{len(outside) - 4} more)" if len(outside) > 4 else ""),
    )

    # -- soundtrack ---------------------------------------------------------------------------
    mixed = decode_audio(video, ctx)
    pauses = pause_spans(words, duration)
    extra["mix"] = soundtrack.report()
    if soundtrack.bed is None:
        add("music bed", look.music.mood == "none", "no bed (theme: none); room tone in the pauses")
    else:
        pause_db = _level(mixed, pauses)
        under, ducking = bed_under_voice(soundtrack.stems)
        extra.update(bed_pause_db=_round(pause_db), bed_under_voice_db=_round(under), ducking_db=_round(ducking))
        ok = pause_db > BED_AUDIBLE_DB and under >= BED_UNDER_VOICE_DB and ducking > 1.0
        add(
            "music bed",
            ok,
            f"{soundtrack.bed.name}: {_round(pause_db)} dBFS in the pauses (> {BED_AUDIBLE_DB:.0f}), "
            f"{_round(under)} dB under the voice while it speaks (>= {BED_UNDER_VOICE_DB:.0f}), ducked {_round(ducking)} dB",
        )
    quietest = quietest_window(mixed)
    extra["quietest_window_db"] = _round(quietest)
    add(
        "no digital silence",
        quietest > DIGITAL_SILENCE_DB,
        f"quietest 50 ms: {_round(quietest)} dBFS (> {DIGITAL_SILENCE_DB:.0f})",
    )

    # -- craft --------------------------------------------------------------------------------
    repeated, chosen = duplicated_text(shots, script, words)
    detail = "cards show key phrases, captions the words" if not repeated else "; ".join(repeated)
    if chosen:  # an operator's own card or caption text: reported, theirs to decide
        detail += "; operator's edits: " + "; ".join(chosen)
    add("no duplicated text", not repeated, detail)
    still = [s for s in shots if s.clip is None]
    moves = [_pan_length(s, motion) for s in still]
    add(
        "motion on every shot",
        all(m >= MIN_PAN_PX for m in moves),
        f"pans of {min(moves, default=0):.0f}-{max(moves, default=0):.0f} px over {len(still)} stills, "
        f"{len(shots) - len(still)} footage shots, transitions {transition} frames",
    )
    # Reported, not gated: a plain picture is rightly small at the same quality (crf); what the
    # bit rate buys against banding is measured in bench/media.py.
    extra["video_kbps"] = video_kbps(video, duration)

    report.update(extra)
    report["passed"] = all(c["ok"] for c in checks)
    return report


def _ms(seconds: float) -> int:
    return round(float(seconds) * 1000)


def _round(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 1)


def _stats(errors: list[float]) -> dict[str, Any]:
    if not errors:
        return {"count": 0}
    a = np.abs(np.array(errors))
    return {"count": len(errors), "mean": _ms(a.mean()), "p95": _ms(np.percentile(a, 95)), "max": _ms(a.max())}


# -- sync -------------------------------------------------------------------------------------------
def sync_errors(track: Track, words: list[Word]) -> list[float]:
    """Drawn start minus the voice's start, per highlighted word (karaoke) or line (phrase). Words
    an operator's caption edit put in place of the spoken ones are not held to the speech."""
    return [shown - words[index].start for index, shown in track.starts() if not words[index].override]


def overridden_spans(words: list[Word], margin: float = 0.1) -> list[tuple[float, float]]:
    """The stretches of the voice whose captions an operator replaced (caption edits)."""
    spans: dict[str, tuple[float, float]] = {}
    for word in words:
        if word.override:
            a, b = spans.get(word.segment, (word.start, word.end))
            spans[word.segment] = (min(a, word.start), max(b, word.end))
    return [(a - margin, b + margin) for a, b in spans.values()]


def onset_errors_for(track: Track, words: list[Word], voice: Path) -> tuple[list[float], int]:
    """For each speech onset in the voice track, the distance to the nearest caption change that
    starts a word there. Karaoke: every onset. Phrase: the onsets that open a sentence (a comma
    pause inside a line changes no caption by design). Returns (errors, onsets found)."""
    samples, rate = read_wav(voice)
    edited = overridden_spans(words)
    onsets = [o for o in speech_onsets(samples, rate) if not any(a <= o <= b for a, b in edited)]
    starts = np.array([t for _, t in track.starts()])
    if starts.size == 0:
        return [], len(onsets)
    if track.style != "karaoke":
        firsts = np.array([w.start for i, w in enumerate(words) if i == 0 or words[i - 1].sentence != w.sentence])
        onsets = [o for o in onsets if firsts.size and np.min(np.abs(firsts - o)) <= 0.3]
    errors = [float(starts[np.argmin(np.abs(starts - o))] - o) for o in onsets]
    return errors, len(onsets)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        data = wav.readframes(wav.getnframes())
    if width != 2:
        raise ValueError(f"{path.name} is not 16-bit PCM")
    samples = np.frombuffer(data, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return samples, rate


# -- safe zone ----------------------------------------------------------------------------------------
def zone_violations(shots: list[Shot], motion: Motion, track: Track, zone: tuple[int, int, int, int]) -> list[str]:
    """Every drawn box that leaves ``zone``, described; card boxes are checked where the pan puts
    them at both ends of the shot (the path is a straight line, so in between they stay inside)."""
    from stages.composition import pan_path

    out: list[str] = []
    big_w, big_h = motion.big
    zx, zy = big_w / motion.width, big_h / motion.height
    for shot in shots:
        for name, box in (shot.scene.get("boxes") or {}).items():
            placements = [(0.0, 0.0, 1.0, 1.0)]
            if shot.clip is None:
                (x0, y0), (x1, y1) = pan_path(shot, motion)
                placements = [(x0, y0, zx, zy), (x1, y1, zx, zy)]
            for ox, oy, sx, sy in placements:
                moved = (box[0] * sx - ox, box[1] * sy - oy, box[2] * sx - ox, box[3] * sy - oy)
                if not _inside(moved, zone):
                    out.append(f"{shot.segment} {name} at {_box(moved)}")
                    break
    for n, box in enumerate(track.boxes):
        if box is not None and not _inside(box, zone):
            out.append(f"caption {n + 1} at {_box(box)}")
    return out


def _inside(box: tuple[float, float, float, float], zone: tuple[int, int, int, int]) -> bool:
    return box[0] >= zone[0] - 0.5 and box[1] >= zone[1] - 0.5 and box[2] <= zone[2] + 0.5 and box[3] <= zone[3] + 0.5


def _box(box: tuple[float, float, float, float]) -> str:
    return f"x {box[0]:.0f}-{box[2]:.0f}, y {box[1]:.0f}-{box[3]:.0f}"


def _pan_length(shot: Shot, motion: Motion) -> float:
    from stages.composition import pan_path

    (x0, y0), (x1, y1) = pan_path(shot, motion)
    return float(np.hypot(x1 - x0, y1 - y0))


# -- soundtrack --------------------------------------------------------------------------------------
def decode_audio(video: Path, ctx: StageContext | None = None, rate: int = 16000) -> np.ndarray:
    """The finished soundtrack as mono float samples at ``rate`` (what QC listens to)."""
    args = [media.ffmpeg_exe(), "-v", "error", "-i", str(video), "-map", "0:a:0", "-ac", "1", "-ar", str(rate)]
    args += ["-f", "f32le", "-"]
    if ctx is not None:
        raw = ctx.run_process(args).stdout
    else:
        raw = subprocess.run(args, capture_output=True, check=False).stdout
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def pause_spans(words: list[Word], duration: float, shortest: float = 0.25) -> list[tuple[float, float]]:
    """Stretches with no word sounding (between sentences, after the last word), at least ``shortest``."""
    spans = []
    for a, b in zip(words, words[1:], strict=False):
        if b.start - a.end >= shortest:
            spans.append((a.end + 0.05, b.start - 0.02))
    if words and duration - words[-1].end >= shortest:
        spans.append((words[-1].end + 0.05, duration - 0.05))
    return spans


def _level(samples: np.ndarray, spans: list[tuple[float, float]], rate: int = 16000) -> float:
    parts = [samples[int(a * rate) : int(b * rate)] for a, b in spans if b > a]
    data = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if data.size == 0:
        return float("-inf")
    return float(20 * np.log10(max(np.sqrt(np.mean(data.astype(np.float64) ** 2)), 1e-9)))


def quietest_window(samples: np.ndarray, rate: int = 16000) -> float:
    """The level of the quietest 50 ms of the track (its first and last 50 ms excepted).

    Exact zeros before the first sound and after the last are the encoder's padding (AAC frames
    of 1024 samples, the stream's end rounded up to them: 70-110 ms measured), not a pause of the
    soundtrack: they are left out first, or a window that falls wholly in that tail reads as
    digital silence on some durations and not others."""
    sounding = np.flatnonzero(samples)
    if sounding.size:
        samples = samples[sounding[0] : sounding[-1] + 1]
    body = samples[int(WINDOW * rate) : len(samples) - int(WINDOW * rate)]
    levels = frame_db(body, rate, hop=WINDOW)
    return float(levels.min()) if levels.size else float("-inf")


def bed_under_voice(stems: tuple[Path, Path | None] | None) -> tuple[float, float]:
    """From the mix's own stems: how far the bed sits under the voice while it speaks (dB, energy
    over all speech windows), and how much quieter it is then than in the pauses (the ducking)."""
    if not stems or stems[1] is None:
        return float("-inf"), 0.0
    voice, rate = read_wav(stems[0])
    bed, _ = read_wav(stems[1])
    length = min(len(voice), len(bed))
    voice_db = frame_db(voice[:length], rate, hop=WINDOW)
    bed_db = frame_db(bed[:length], rate, hop=WINDOW)
    if voice_db.size == 0:
        return float("-inf"), 0.0
    speaking = voice_db > voice_db.max() - 30
    quiet = voice_db < voice_db.max() - 50
    if not speaking.any():
        return float("-inf"), 0.0

    def energy(levels: np.ndarray) -> float:
        return float(10 * np.log10(np.mean(10 ** (levels / 10)) + 1e-12))

    under = energy(voice_db[speaking]) - energy(bed_db[speaking])
    ducking = energy(bed_db[quiet]) - energy(bed_db[speaking]) if quiet.any() else 0.0
    return under, ducking


# -- craft ---------------------------------------------------------------------------------------------
def duplicated_text(
    shots: list[Shot], script: dict[str, Any], words: list[Word] | None = None
) -> tuple[list[str], list[str]]:
    """Cards whose text repeats what the captions show meanwhile (the narration, or an operator's
    caption edit). Returns (repeats, repeats an operator chose: their card or caption edit)."""
    shown = {
        str(s.get("id")): str(s.get("narration") or "") for s in script.get("segments") or [] if isinstance(s, dict)
    }
    edited: set[str] = set()
    for word in words or []:
        if word.override:
            if word.segment not in edited:
                shown[word.segment] = ""
                edited.add(word.segment)
            shown[word.segment] += " " + word.text
    out, chosen = [], []
    for shot in shots:
        text = str(shot.scene.get("text") or "")
        caption = shown.get(shot.segment, "").strip()
        if text and caption and duplicates(text, caption):
            operator = shot.segment in edited or (shot.scene.get("override") or {}).get("text") is not None
            (chosen if operator else out).append(f"{shot.segment}: card {text!r} repeats the captions")
    return out, chosen


def video_kbps(video: Path, duration: float) -> int:
    """Average bit rate of the whole file minus the soundtrack's 192 kb/s (an estimate that errs low)."""
    total = video.stat().st_size * 8 / max(duration, 0.1) / 1000
    return round(total - 192)
