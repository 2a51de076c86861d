"""Music beds: which bundled bed a video gets, and the synthesiser that made them.

Why synthesised: a bed needs a licence that lets every video use it, forever, with provenance we
can show. These are our own work, rendered by ``render_bed`` below from a fixed seed (no samples,
no downloads) and released CC0 (``stages/assets/music/LICENSE.txt``). ``bin/make-music``
re-renders them; ``BEDS`` records each file's SHA-256 so a changed file is noticed by the tests.

Each bed is a seamless loop (note tails wrap round to the start), 48 kHz stereo Opus, mixed
quietly in the midrange where a voice sits: composition ducks it under the voice anyway.

* ``pulse`` (neutral): 100 BPM, A minor - F - C - G, soft kick and hats, plucked arpeggio, pads.
* ``calm`` (serious): 72 BPM, D minor 9 - B flat maj 7 - F maj 7 - C, pads and a soft bell, no drums.
* ``bright`` (casual): 118 BPM, C - G - A minor - F, four-on-the-floor, claps, bouncy plucks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.look import MUSIC_DIR, Music

RATE = 48000
MOOD_BY_TONE = {"casual": "bright", "serious": "calm"}  # anything else: pulse


@dataclass(frozen=True)
class Bed:
    mood: str
    file: str
    sha256: str
    seconds: float
    lufs: float  # integrated loudness, measured once (the test suite re-measures it)


BEDS: dict[str, Bed] = {
    "pulse": Bed(
        "pulse", "pulse.opus", "52e5414adf0d32b6fc6465ac818326dc14a96c627a205489b5c5210ab568f71a", 38.4, -13.0
    ),
    "calm": Bed("calm", "calm.opus", "1d8c838068976fa9c7fa41e47c33faeab5dc83f42d51aca7feda261324964465", 40.0, -13.8),
    "bright": Bed(
        "bright", "bright.opus", "37a6e2884084bd17de99ac7aaad303b6d3870820e77918538c127ff993589be3", 32.542, -13.2
    ),
}


def bed_for(music: Music, tone: str | None) -> Path | None:
    """The bed file for a theme's music setting and the script's tone; None for ``"none"``."""
    if music.file is not None:
        return music.file
    if music.mood == "none":
        return None
    mood = music.mood if music.mood != "auto" else MOOD_BY_TONE.get(str(tone or ""), "pulse")
    return MUSIC_DIR / BEDS[mood].file


def known_loudness(path: Path) -> float | None:
    """The stored loudness of a bundled bed (saves a decode pass per video); None for other files."""
    for bed in BEDS.values():
        if path.resolve() == (MUSIC_DIR / bed.file).resolve():
            return bed.lufs
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the synthesiser ------------------------------------------------------------------------------
def _midi(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _envelope(length: int, attack: float, release: float, decay: float | None = None) -> np.ndarray:
    t = np.arange(length) / RATE
    env = np.minimum(1.0, t / max(attack, 1e-4))
    if decay is not None:
        env *= np.exp(-t / decay)
    rel = max(1, int(release * RATE))
    if length > rel:
        env[-rel:] *= np.linspace(1.0, 0.0, rel)
    return env


def _add(track: np.ndarray, start: float, sound: np.ndarray, pan: float = 0.0, gain: float = 1.0) -> None:
    """Mix a mono ``sound`` into the stereo ``track`` at ``start`` seconds, wrapping past the end."""
    index = int(round(start * RATE)) % track.shape[0]
    left, right = gain * np.sqrt(0.5 * (1 - pan)), gain * np.sqrt(0.5 * (1 + pan))
    remaining = sound
    while remaining.size:
        room = track.shape[0] - index
        part = remaining[:room]
        track[index : index + part.size, 0] += part * left
        track[index : index + part.size, 1] += part * right
        remaining = remaining[room:]
        index = 0


def _saw(freq: float, length: int, rng: np.random.Generator, cutoff: float = 4000.0) -> np.ndarray:
    """A band-limited sawtooth (additive, harmonics up to ``cutoff``) with a random phase."""
    t = np.arange(length) / RATE
    out = np.zeros(length)
    phase = rng.uniform(0, 2 * np.pi)
    k = 1
    while k * freq < cutoff and k <= 40:
        out += np.sin(2 * np.pi * k * freq * t + phase * k) / k
        k += 1
    return out * 0.5


def _pad(notes: list[int], seconds: float, rng: np.random.Generator) -> np.ndarray:
    length = int(seconds * RATE)
    sound = np.zeros(length)
    for note in notes:
        for detune in (-0.08, 0.08):
            sound += _saw(_midi(note + detune), length, rng, cutoff=2400.0)
    return sound * _envelope(length, attack=0.9, release=1.2) / (2 * len(notes))


def _pluck(note: int, seconds: float, bright: float = 0.5) -> np.ndarray:
    length = int(seconds * RATE)
    t = np.arange(length) / RATE
    f = _midi(note)
    sound = np.sin(2 * np.pi * f * t) + bright * 0.5 * np.sin(4 * np.pi * f * t) * np.exp(-t / 0.08)
    sound += bright * 0.25 * np.sin(6 * np.pi * f * t) * np.exp(-t / 0.05)
    return sound * _envelope(length, attack=0.003, release=0.05, decay=0.22)


def _bell(note: int, seconds: float) -> np.ndarray:
    length = int(seconds * RATE)
    t = np.arange(length) / RATE
    f = _midi(note)
    sound = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 2.76 * f * t) * np.exp(-t / 0.4)
    return sound * _envelope(length, attack=0.005, release=0.3, decay=1.1)


def _bass(note: int, seconds: float) -> np.ndarray:
    length = int(seconds * RATE)
    t = np.arange(length) / RATE
    f = _midi(note)
    sound = np.sin(2 * np.pi * f * t) + 0.2 * np.sin(4 * np.pi * f * t)
    return sound * _envelope(length, attack=0.01, release=0.08, decay=0.9)


def _kick() -> np.ndarray:
    length = int(0.35 * RATE)
    t = np.arange(length) / RATE
    freq = 45 + 75 * np.exp(-t / 0.04)
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    return np.sin(phase) * np.exp(-t / 0.12)


def _noise_burst(rng: np.random.Generator, seconds: float, decay: float, low: float, high: float) -> np.ndarray:
    length = int(seconds * RATE)
    noise = rng.standard_normal(length)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(length, 1 / RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    burst = np.fft.irfft(spectrum, length)
    burst /= np.abs(burst).max() + 1e-9
    return burst * np.exp(-np.arange(length) / RATE / decay)


def _lowpass(track: np.ndarray, cutoff: float) -> np.ndarray:
    spectrum = np.fft.rfft(track, axis=0)
    freqs = np.fft.rfftfreq(track.shape[0], 1 / RATE)
    response = 1.0 / np.sqrt(1.0 + (freqs / cutoff) ** 4)
    return np.fft.irfft(spectrum * response[:, None], track.shape[0], axis=0)


def _reverb(track: np.ndarray, rng: np.random.Generator, seconds: float = 1.6, wet: float = 0.22) -> np.ndarray:
    """Convolution with decaying noise: a soft room that also smears the loop point (circular)."""
    length = int(seconds * RATE)
    ir = rng.standard_normal((length, 2)) * np.exp(-np.arange(length) / RATE / (seconds / 5))[:, None]
    ir = _lowpass(ir, 5000.0)
    ir /= np.sqrt((ir**2).sum(axis=0))
    size = track.shape[0]
    spectrum = np.fft.rfft(track, axis=0) * np.fft.rfft(ir, size, axis=0)  # circular: the loop wraps
    return track + wet * np.fft.irfft(spectrum, size, axis=0)


SPECS = {
    # bpm, bars, chords (midi notes of the pad), bass roots, drums, arpeggio pattern, seed
    "pulse": (
        100,
        16,
        [[57, 60, 64, 67], [53, 57, 60, 64], [48, 55, 60, 64], [55, 59, 62, 67]],
        [45, 41, 48, 43],
        "soft",
        "up",
        11,
    ),
    "calm": (
        72,
        12,
        [[50, 57, 60, 64], [46, 53, 57, 62], [41, 53, 57, 64], [48, 55, 59, 64]],
        [38, 34, 41, 36],
        "none",
        "bell",
        23,
    ),
    "bright": (
        118,
        16,
        [[48, 55, 60, 64], [43, 55, 59, 62], [45, 57, 60, 64], [41, 53, 57, 60]],
        [36, 31, 33, 29],
        "four",
        "bounce",
        37,
    ),
}


def render_bed(mood: str) -> np.ndarray:
    """The loop for ``mood`` as float stereo samples at 48 kHz, peak -1 dBFS. Deterministic."""
    bpm, bars, chords, roots, drums, arp, seed = SPECS[mood]
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    bar = 4 * beat
    track = np.zeros((int(round(bars * bar * RATE)), 2))
    for b in range(bars):
        chord, root = chords[b % len(chords)], roots[b % len(roots)]
        start = b * bar
        _add(track, start, _pad(chord, bar + 1.2, rng), pan=-0.15, gain=0.55)
        _add(track, start, _pad([n + 12 for n in chord[1:3]], bar + 1.2, rng), pan=0.2, gain=0.22)
        if drums != "none":
            for k in range(4):
                _add(track, start + k * beat, _bass(root, beat * 0.9), gain=0.42)
        else:
            _add(track, start, _bass(root, bar), gain=0.35)
        if arp == "bell":
            for k, step in enumerate((0, 1.5, 2.5)):
                _add(track, start + step * beat, _bell(chord[(k + b) % 4] + 12, 2.5), pan=0.3 - 0.3 * k, gain=0.16)
        else:
            steps = 8 if arp == "up" else 16
            for k in range(steps):
                if arp == "bounce" and k % 4 == 3:
                    continue
                note = chord[k % 4] + 12 if arp == "up" else chord[(k * 3) % 4] + 12 + (12 if k % 8 == 6 else 0)
                swing = 0.04 * beat if k % 2 else 0.0
                _add(
                    track,
                    start + k * bar / steps + swing,
                    _pluck(note, 0.5, 0.6),
                    pan=0.35 if k % 2 else -0.35,
                    gain=0.13,
                )
        if drums in ("soft", "four"):
            for k in range(4):
                if drums == "four" or k % 2 == 0:
                    _add(track, start + k * beat, _kick(), gain=0.55 if drums == "four" else 0.45)
            for k in range(8):
                _add(
                    track,
                    start + k * beat / 2,
                    _noise_burst(rng, 0.06, 0.018, 7000, 16000),
                    pan=0.4,
                    gain=0.07 if k % 2 else 0.045,
                )
            if drums == "four":
                for k in (1, 3):
                    _add(track, start + k * beat, _noise_burst(rng, 0.2, 0.05, 900, 6000), pan=-0.1, gain=0.16)
    track = _reverb(_lowpass(track, 9000.0), rng)
    track -= track.mean(axis=0)
    return track * (10 ** (-1 / 20) / np.abs(track).max())


def write_bed(mood: str, folder: Path = MUSIC_DIR) -> Path:
    """Render ``mood`` and encode it as 96 kb/s Opus beside the others (``bin/make-music``)."""
    import subprocess

    from stages.media import ffmpeg_exe

    samples = render_bed(mood)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    out = folder / BEDS[mood].file
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "s16le", "-ar", str(RATE), "-ac", "2", "-i", "pipe:0"]
        + ["-c:a", "libopus", "-b:a", "96k", "-map_metadata", "-1", "-fflags", "+bitexact", str(out)],
        input=pcm,
        check=True,
    )
    return out
