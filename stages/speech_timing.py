"""When each spoken word starts: from a voice's own timings, or found in the audio; and speech onsets.

Why a module of its own: the voiceover stage times every word (karaoke captions highlight the word
being spoken), and composition's QC checks those times against the audio with the onset detector
here, so both sides read speech the same way. Voices differ in what they tell us:

* eSpeak NG (WORD events), Piper (phoneme durations) and ElevenLabs (character alignment) say when
  each word starts; a word they skip (punctuation, a number read as several words) is placed
  between its neighbours by its share of the characters (``complete_starts``).
* An OpenAI-compatible ``/audio/speech`` endpoint says nothing. ``derive_starts`` finds the words in
  its audio by *alignment by synthesis*: eSpeak NG speaks the same sentence with word events, both
  recordings become MFCC frames, and dynamic time warping maps every eSpeak frame onto the real
  voice, carrying the word starts across (the method of the aeneas aligner). Pauses line up on
  their own because silence matches silence. Measured against Piper's own phoneme durations:
  see ``bench/RESULTS.md`` ("word sync").

Every time here is in seconds from the start of the samples given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from stages.providers.tts import WordTiming

HOP = 0.01  # analysis hop, seconds
WINDOW = 0.025
FEATURE_RATE = 16000
MEL_BANDS = 24
CEPSTRA = 13
ONSET_FLOOR_DB = -50.0  # dBFS: a 10 ms frame louder than this is sound (speech is peak-normalised)
ONSET_MIN_GAP = 0.15  # quiet this long before a sound makes it an onset (not a stop closure)
# Alignment by synthesis lands words inside running speech ~40 ms early (measured against Piper's
# phoneme durations, 93 words: signed mean -40 ms; at pauses it is unbiased): half of it is taken back.
RUNNING_SPEECH_BIAS = 0.03


def tokens(sentence: str) -> list[tuple[int, str]]:
    """The sentence's words as spoken and drawn: whitespace tokens with their character offsets."""
    return [(m.start(), m.group(0)) for m in re.finditer(r"\S+", sentence)]


# -- the voice's own timings ---------------------------------------------------------------------
def complete_starts(sentence: str, timings: Sequence[WordTiming], duration: float) -> list[float] | None:
    """A start for every token from a voice's word timings (seconds from the sentence's audio start).

    Timings are matched to tokens by character offset (a timing inside a token counts for it). A
    token without one is placed between its timed neighbours in proportion to characters. Returns
    None when fewer than half the tokens are timed or the times are unusable (not increasing), so
    the caller derives them from the audio instead.
    """
    words = tokens(sentence)
    if not words or not timings:
        return None
    known: dict[int, float] = {}
    for timing in timings:
        for index, (char, text) in enumerate(words):
            if char <= timing.char < char + len(text):
                known.setdefault(index, float(timing.start))
                break
    if len(known) * 2 < len(words):
        return None
    ordered = [known[i] for i in sorted(known)]
    if any(b < a for a, b in zip(ordered, ordered[1:], strict=False)) or ordered[-1] > duration + 0.05:
        return None
    return _fill(words, known, duration)


def _fill(words: list[tuple[int, str]], known: dict[int, float], duration: float) -> list[float]:
    """Interpolate the untimed tokens by character position between the timed ones."""
    chars = [char for char, _ in words] + [words[-1][0] + len(words[-1][1])]
    anchors = sorted(known.items())
    if 0 not in known:
        anchors.insert(0, (0, min(0.0, anchors[0][1])))
    points_x = [chars[i] for i, _ in anchors] + [chars[-1]]
    points_t = [t for _, t in anchors] + [max(duration, anchors[-1][1])]
    starts = [float(np.interp(chars[i], points_x, points_t)) if i not in known else known[i] for i in range(len(words))]
    for i in range(1, len(starts)):  # never before the previous word
        starts[i] = max(starts[i], starts[i - 1])
    return starts


def snap_to_sound(starts: list[float], samples: np.ndarray, rate: int, reach: float = 0.3) -> list[float]:
    """Word starts that fall in silence move to the first sound after them (within ``reach``).

    Engines place a word after a pause where their model's pause ends, and that can be well
    before the voice is heard again (Piper: up to ~130 ms after a comma, measured): a word starts at
    its first sound. A start never moves past the next word's.
    """
    levels = frame_db(samples, rate)
    loud = np.flatnonzero(levels > ONSET_FLOOR_DB)
    out = list(starts)
    for i, start in enumerate(out):
        frame = int(start / HOP)
        if frame >= len(levels) or levels[frame] > ONSET_FLOOR_DB:
            continue
        later = loud[loud >= frame]
        if later.size and (later[0] - frame) * HOP <= reach:
            moved = float(later[0] * HOP)
            limit = out[i + 1] if i + 1 < len(out) else moved
            out[i] = min(moved, limit)
    return out


# -- features --------------------------------------------------------------------------------------
def _to_float(samples: np.ndarray) -> np.ndarray:
    data = np.asarray(samples)
    if data.dtype.kind in "iu":
        return data.astype(np.float32) / 32768.0
    return data.astype(np.float32)


def frame_db(samples: np.ndarray, rate: int, hop: float = HOP) -> np.ndarray:
    """RMS level in dBFS of each ``hop``-long frame (the last partial frame dropped)."""
    data = _to_float(samples)
    size = max(1, round(hop * rate))
    count = len(data) // size
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    frames = data[: count * size].reshape(count, size)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return (20 * np.log10(np.maximum(rms, 1e-6))).astype(np.float32)


def speech_onsets(
    samples: np.ndarray, rate: int, *, floor_db: float = ONSET_FLOOR_DB, min_gap: float = ONSET_MIN_GAP
) -> list[float]:
    """Times where sound starts after at least ``min_gap`` of quiet (and at the very start).

    An energy detector, on purpose: it knows nothing of words or of any engine's timings, so it is
    an independent witness of when the voice starts speaking again after a pause. Within running
    speech there is no such onset (words flow into each other), which is why QC checks only these
    moments against the caption timings. The onset is placed at the first loud 10 ms frame.
    """
    levels = frame_db(samples, rate)
    loud = levels > floor_db
    onsets: list[float] = []
    quiet = min_gap  # the start of the track counts as after a pause
    for index, is_loud in enumerate(loud):
        if is_loud:
            if quiet >= min_gap - 1e-9:
                onsets.append(round(index * HOP, 3))
            quiet = 0.0
        else:
            quiet += HOP
    return onsets


@cache
def _mel_filters(n_fft: int, rate: int, bands: int) -> np.ndarray:
    def mel(f: np.ndarray | float) -> np.ndarray | float:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges_mel = np.linspace(mel(80.0), mel(rate / 2 * 0.95), bands + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    filters = np.zeros((bands, len(freqs)), dtype=np.float32)
    for b in range(bands):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        rising = (freqs - lo) / max(mid - lo, 1e-9)
        falling = (hi - freqs) / max(hi - mid, 1e-9)
        filters[b] = np.clip(np.minimum(rising, falling), 0.0, None)
    return filters


@cache
def _dct(bands: int, count: int) -> np.ndarray:
    n = np.arange(bands)
    return np.cos(np.pi / bands * (n + 0.5)[None, :] * np.arange(count)[:, None]).astype(np.float32)


def mfcc(samples: np.ndarray, rate: int) -> np.ndarray:
    """MFCC frames (10 ms hop), mean/variance normalised per utterance, plus a loudness column."""
    data = _to_float(samples)
    if rate != FEATURE_RATE and len(data):
        positions = np.arange(0, len(data) * FEATURE_RATE / rate) * (rate / FEATURE_RATE)
        data = np.interp(positions, np.arange(len(data)), data).astype(np.float32)
    hop, win, n_fft = round(HOP * FEATURE_RATE), round(WINDOW * FEATURE_RATE), 512
    if len(data) < win:
        data = np.pad(data, (0, win - len(data)))
    count = 1 + (len(data) - win) // hop
    index = np.arange(win)[None, :] + hop * np.arange(count)[:, None]
    frames = data[index] * np.hanning(win).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    energies = np.log(power @ _mel_filters(n_fft, FEATURE_RATE, MEL_BANDS).T + 1e-8)
    ceps = energies @ _dct(MEL_BANDS, CEPSTRA).T
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    ceps = (ceps - ceps.mean(axis=0)) / (ceps.std(axis=0) + 1e-6)
    speech = np.clip((level - level.max() + 45.0) / 15.0, 0.0, 1.0)  # 0 silence .. 1 speech
    return np.column_stack([ceps[:, 1:], 3.0 * speech]).astype(np.float32)


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For every frame of ``a``, the frame of ``b`` where it begins on the cheapest warping path.

    Classic DTW (steps right, down, diagonal) on Euclidean frame distances. Each row is solved in
    numpy: the horizontal run is a min-plus scan, ``D[j] = C[j] + min_k<=j (A[k] - C[k])``, so
    the cost is a Python loop over ``a``'s frames only (~1,000 for a 10 s sentence).
    """
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    cost = np.sqrt(np.maximum(squared, 0.0)).astype(np.float64)
    rows, cols = cost.shape
    total = np.empty((rows, cols), dtype=np.float64)
    move = np.empty((rows, cols), dtype=np.int8)  # 0 diagonal, 1 from above, 2 from the left
    acc = np.cumsum(cost[0])
    total[0] = acc
    move[0] = 2
    move[0, 0] = 0
    for i in range(1, rows):
        above = total[i - 1]
        diagonal = np.concatenate(([np.inf], above[:-1]))
        best = np.minimum(above, diagonal)
        arrived = np.where(diagonal <= above, 0, 1).astype(np.int8)
        start = cost[i] + best  # entering row i at column j from row i-1
        running = np.cumsum(cost[i])
        scan = np.minimum.accumulate(start - running)
        row = scan + running
        total[i] = row
        move[i] = np.where(row < start - 1e-12, 2, arrived)
    # Walk back from the end; note the first and last b-frame the path spends on each a-frame.
    low = np.full(rows, cols - 1, dtype=np.int64)
    high = np.zeros(rows, dtype=np.int64)
    i, j = rows - 1, cols - 1
    while True:
        low[i], high[i] = min(low[i], j), max(high[i], j)
        if i == 0 and j == 0:
            break
        step = move[i, j]
        if i == 0:
            j -= 1
        elif j == 0 or step == 1:
            i -= 1
        elif step == 0:
            i, j = i - 1, j - 1
        else:
            j -= 1
    # Where frame i begins in b: just after the frames the path gave to frame i - 1 (a pause that
    # ``b`` holds longer than ``a`` belongs before the word, not inside it).
    begins = np.concatenate(([0], high[:-1] + 1)).astype(np.float64)
    return np.minimum(np.maximum(begins, low), high)


# -- voices without timings ------------------------------------------------------------------------
@dataclass
class Reference:
    """A voice that times its words (eSpeak NG), spoken for the sentence being aligned."""

    samples: np.ndarray
    rate: int
    starts: list[float]  # per token


def reference_for(sentence: str) -> Reference | None:
    """eSpeak NG's reading of ``sentence`` with a start for every token, or None if it cannot."""
    from stages.providers.espeak import EspeakProvider

    try:
        speech = EspeakProvider("en-us").synthesize(sentence)
    except Exception:  # noqa: BLE001 - the reference is an aid: without it the words are spread
        return None
    starts = complete_starts(sentence, speech.words, speech.duration)
    if starts is None or speech.samples.size == 0:
        return None
    # eSpeak NG reports a word when its phonemes begin, which can be inside the pause before it:
    # a word starts at its first sound, so a start in quiet moves to the next loud frame.
    levels = frame_db(speech.samples, speech.sample_rate)
    loud = np.flatnonzero(levels > ONSET_FLOOR_DB)
    for i, start in enumerate(starts):
        frame = int(start / HOP)
        if frame < len(levels) and levels[frame] <= ONSET_FLOOR_DB:
            later = loud[loud >= frame]
            if later.size and (later[0] - frame) * HOP <= 0.3:
                starts[i] = float(later[0] * HOP)
    return Reference(samples=speech.samples, rate=speech.sample_rate, starts=starts)


def derive_starts(samples: np.ndarray, rate: int, sentence: str) -> list[float]:
    """A start for every token of ``sentence`` in audio that came without word timings.

    Alignment by synthesis (see the module docstring): eSpeak NG reads the sentence with its word
    events, DTW over MFCC frames maps its frames onto ``samples``. Without eSpeak NG the speech
    between the first and last loud frame is shared out by characters.
    """
    words = tokens(sentence)
    if not words:
        return []
    duration = len(samples) / rate
    reference = reference_for(sentence)
    if reference is None:
        return _spread(samples, rate, words)
    ours, theirs = mfcc(samples, rate), mfcc(reference.samples, reference.rate)
    mapping = dtw_path(theirs, ours)
    levels = frame_db(reference.samples, reference.rate)
    starts = []
    for start in reference.starts:
        frame = min(int(round(start / HOP)), len(mapping) - 1)
        begin = float(mapping[frame]) * HOP
        before = levels[max(0, frame - 3) : frame]
        if before.size and before.min() > ONSET_FLOOR_DB:
            begin += RUNNING_SPEECH_BIAS  # inside running speech, not after a pause
        starts.append(min(begin, duration))
    for i in range(1, len(starts)):
        starts[i] = max(starts[i], starts[i - 1])
    return starts


def _spread(samples: np.ndarray, rate: int, words: list[tuple[int, str]]) -> list[float]:
    levels = frame_db(samples, rate)
    loud = np.flatnonzero(levels > ONSET_FLOOR_DB)
    first, last = (loud[0] * HOP, (loud[-1] + 1) * HOP) if loud.size else (0.0, len(samples) / rate)
    known = {0: float(first)}
    return _fill(words, known, float(last))
