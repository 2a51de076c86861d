"""The soundtrack: the voice over a music bed ducked under it, loudness-normalised in two passes
(loudnorm's two-pass method: measure, then one linear gain, its dynamic mode only as a fallback).

Why audio-only passes before the video encode: the mix is tiny next to the video (a 30 s track
is ~0.3 s of ffmpeg work), so it is finished first as an AAC file the encode copies in, and QC
can measure the very samples that ship. Steps:

1. Measure the voice and the bed (EBU R128 integrated loudness) so the bed sits ``volume_db``
   (default -12 LU) under the voice whatever voice or bed it is.
2. Pass 1: the bed is looped, cut to the voice's length, faded in and out and ducked under the
   voice (``sidechaincompress`` keyed by the voice: a further ~6-10 dB while a word sounds);
   with no bed a quiet pink room tone stands in, so pauses are never digital silence. The mix is
   written as 32-bit float and measured as loudnorm's first pass measures it (EBU R128 integrated
   loudness, gate threshold, loudness range, true peak), with ``ebur128``: the same numbers for
   0.1 s of CPU where loudnorm's analysis takes 0.9 s on a 30 s mix. The voice and the ducked
   bed are also written alone (16 kHz mono stems) for QC's "music under the voice" check.
3. Pass 2: loudnorm's second pass with the measured values. In its linear mode (one static gain,
   allowed when the peaks leave room, which they do after pass 1's limiter) that is the gain to
   -14 LUFS, applied here with ``volume`` at 48 kHz (loudnorm would upsample to 192 kHz only to
   measure again); otherwise loudnorm runs dynamic with its true-peak limiter. Ceiling -1.5 dBTP
   (AAC adds up to ~0.5 dB of overshoot: QC requires <= -1.0 dBTP on the encoded file), 48 kHz
   stereo AAC 192 kb/s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages import media
from stages.base import PermanentStageError

if TYPE_CHECKING:
    from stages.base import StageContext

TARGET_TP = -1.5  # dBTP ceiling given to loudnorm; QC's limit on the encoded file is -1.0
LRA = 11.0
STEM_RATE = 16000
ROOM_TONE = 0.0012  # pink noise amplitude when there is no bed (about -62 dBFS RMS)
FADE_IN, FADE_OUT = 0.25, 1.5
PRE_LIMIT = 0.668  # -3.5 dBFS sample peak: pass 1 limits the mix so loudnorm's gain stays linear
MIX_NAME, PREMIX_NAME = "mix.m4a", "premix.wav"
VOICE_STEM, BED_STEM = "stem-voice.wav", "stem-bed.wav"


@dataclass
class Mix:
    audio: Path
    bed: Path | None
    bed_gain_db: float | None
    voice_lufs: float
    first_pass: dict[str, Any] = field(default_factory=dict)
    second_pass: dict[str, Any] = field(default_factory=dict)
    stems: tuple[Path, Path | None] | None = None

    def state(self) -> dict[str, Any]:
        """What ``from_state`` needs to stand for this mix again (a re-run reusing its files)."""
        return {
            "bed_gain_db": self.bed_gain_db,
            "voice_lufs": self.voice_lufs,
            "first_pass": self.first_pass,
            "second_pass": self.second_pass,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], folder: Path, bed: Path | None) -> Mix:
        """The mix whose files (``MIX_NAME`` and the stems) are in ``folder``, as ``state`` recorded it."""
        return cls(
            audio=folder / MIX_NAME,
            bed=bed,
            bed_gain_db=state.get("bed_gain_db"),
            voice_lufs=float(state.get("voice_lufs") or 0.0),
            first_pass=dict(state.get("first_pass") or {}),
            second_pass=dict(state.get("second_pass") or {}),
            stems=(folder / VOICE_STEM, folder / BED_STEM if bed is not None else None),
        )

    def report(self) -> dict[str, Any]:
        return {
            "bed": self.bed.name if self.bed else None,
            "bed_gain_db": None if self.bed_gain_db is None else round(self.bed_gain_db, 2),
            "voice_lufs": round(self.voice_lufs, 2),
            "loudnorm": self.second_pass.get("normalization_type"),
            "measured_lufs": _num(self.first_pass.get("input_i")),
            "measured_tp": _num(self.first_pass.get("input_tp")),
        }


def _num(value: Any) -> float | None:
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):
        return None


def loudness(path: Path, ctx: StageContext | None = None) -> float:
    """Integrated loudness (LUFS) of a file's first audio stream."""
    level = media.measure_audio(path, ctx).lufs
    if level is None:
        raise PermanentStageError(f"could not measure the loudness of {path.name}", hint="check the audio file")
    return level


def _chain_loudness(path: Path, chain: str, ctx: StageContext | None) -> float:
    """Integrated loudness of ``path`` after a filter chain (the voice as it will be mixed)."""
    code, lines = media.run_ffmpeg(
        ["-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-af", f"{chain},ebur128=framelog=quiet"]
        + ["-f", "null", "-"],
        ctx,
    )
    level = media.parse_levels(lines).lufs
    if code != 0 or level is None:
        raise PermanentStageError(f"could not measure the loudness of {path.name}", hint="check the audio file")
    return level


def _loudnorm_json(lines: list[str]) -> dict[str, Any]:
    """The JSON block ``loudnorm=print_format=json`` prints at the end of its run."""
    text = "\n".join(lines)
    start = text.rfind("{")
    end = text.rfind("}")
    if start < 0 or end < start:
        return {}
    try:
        return json.loads(text[start : end + 1])
    except ValueError:
        return {}


VOICE_COMPRESSOR = "acompressor=threshold=0.08:ratio=4:attack=3:release=60"


def voice_chain(duration: float) -> str:
    """The voice as it goes into the mix: 48 kHz stereo float, compressed (speech peaks sit ~20 dB
    over its loudness; -14 LUFS with a -1.5 dBTP ceiling leaves room for 12.5), padded to length."""
    d = f"{duration:.4f}"
    return (
        f"aresample={media.AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
        f"{VOICE_COMPRESSOR},apad=whole_dur={d},atrim=end={d}"
    )


def mix(
    ctx: StageContext | None,
    voice: Path,
    duration: float,
    bed: Path | None,
    volume_db: float,
    work: Path,
    target_lufs: float = media.TARGET_LUFS,
) -> Mix:
    """Voice + ducked bed (or room tone) -> ``work/mix.m4a`` at ``target_lufs``; see the module docstring."""
    voice_lufs = _chain_loudness(voice, voice_chain(duration), ctx)
    if voice_lufs == float("-inf") or voice_lufs < -70:
        raise PermanentStageError("the voiceover is silent", hint="re-run voiceover")
    bed_gain = None
    d = f"{duration:.4f}"
    args = ["-hide_banner", "-nostdin", "-nostats", "-y", "-i", str(voice)]
    voice_in = f"[0:a]{voice_chain(duration)}"
    graph: list[str] = []
    if bed is not None:
        from stages.music import known_loudness

        bed_lufs = known_loudness(bed)
        bed_gain = voice_lufs + volume_db - (bed_lufs if bed_lufs is not None else loudness(bed, ctx))
        args += ["-stream_loop", "-1", "-i", str(bed)]
        graph.append(f"{voice_in},asplit=3[v][key][vs]")
        graph.append(
            f"[1:a]aresample={media.AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
            f"atrim=end={d},volume={bed_gain:.2f}dB,afade=t=in:d={FADE_IN},"
            f"afade=t=out:st={max(duration - FADE_OUT, 0):.3f}:d={FADE_OUT}[bed]"
        )
        # Duck the bed while the voice speaks: a fast attack so the first syllable is clear, a
        # slow release so the bed does not pump between words.
        graph.append("[bed][key]sidechaincompress=threshold=0.02:ratio=8:attack=10:release=450:knee=4[ducked]")
        graph.append("[ducked]asplit=2[bd][bs]")
    else:
        args += ["-f", "lavfi", "-i", f"anoisesrc=d={d}:c=pink:r={media.AUDIO_RATE}:a={ROOM_TONE}:seed=7"]
        graph.append(f"{voice_in},asplit=2[v][vs]")
        graph.append("[1:a]aformat=sample_fmts=fltp:channel_layouts=stereo[bd]")
    # Bring the mix near the target and limit its peaks (latency compensated, so words keep
    # their times): then loudnorm's second pass is one linear gain of a dB or so.
    pre_gain = target_lufs - voice_lufs
    graph.append(
        f"[v][bd]amix=inputs=2:duration=first:normalize=0,volume={pre_gain:.2f}dB,"
        f"alimiter=limit={PRE_LIMIT}:level=0:latency=1,asplit=2[m1][m2]"
    )
    graph.append("[m1]ebur128=peak=true:framelog=quiet[ln]")
    mono = f"aresample={STEM_RATE},aformat=sample_fmts=s16:channel_layouts=mono"
    graph.append(f"[vs]{mono}[vstem]")
    outputs = ["-map", "[m2]", "-c:a", "pcm_f32le", str(work / PREMIX_NAME)]
    outputs += ["-map", "[ln]", "-f", "null", "-"]
    outputs += ["-map", "[vstem]", str(work / VOICE_STEM)]
    if bed is not None:
        graph.append(f"[bs]{mono}[bstem]")
        outputs += ["-map", "[bstem]", str(work / BED_STEM)]
    code, lines = media.run_ffmpeg([*args, "-filter_complex", ";".join(graph), *outputs], ctx)
    measured = media.parse_levels(lines)
    if code != 0 or None in (measured.lufs, measured.true_peak, measured.lra, measured.threshold):
        raise PermanentStageError(f"could not mix the soundtrack: {' | '.join(lines[-3:])}")
    # loudnorm's first pass reports these four (its input_i, input_tp, input_lra, input_thresh);
    # ebur128 measures the same EBU R128 values (true peak 4x oversampled) for 1/8 of the CPU.
    first = {
        "input_i": measured.lufs,
        "input_tp": measured.true_peak,
        "input_lra": measured.lra,
        "input_thresh": measured.threshold,
    }

    # Pass 2: loudnorm's linear mode is one static gain (target - measured), allowed when the peaks
    # leave room for it, which pass 1's limiter sees to. That gain is applied with ``volume``:
    # loudnorm itself would upsample to 192 kHz again only to measure (1.6 s of CPU for 30 s).
    # When the peaks do not leave room, loudnorm's own second pass (dynamic, true-peak limited) runs.
    gain = target_lufs - float(first["input_i"])
    linear = float(first["input_tp"]) + gain <= TARGET_TP and float(first["input_lra"]) <= LRA
    if linear:
        second_graph = f"volume={gain:.3f}dB"
    else:
        second_graph = (
            f"loudnorm=I={target_lufs}:TP={TARGET_TP}:LRA={LRA}:measured_I={first['input_i']}:"
            f"measured_TP={first['input_tp']}:measured_LRA={first['input_lra']}:"
            f"measured_thresh={first['input_thresh']}:linear=true:"
            f"print_format=json,aresample={media.AUDIO_RATE}"
        )
    code, lines = media.run_ffmpeg(
        ["-hide_banner", "-nostdin", "-nostats", "-y", "-i", str(work / PREMIX_NAME), "-af", second_graph]
        + ["-c:a", "aac", "-b:a", "192k", "-ar", str(media.AUDIO_RATE), "-ac", "2", str(work / MIX_NAME)],
        ctx,
    )
    second = {"normalization_type": "linear", "gain_db": round(gain, 2)} if linear else _loudnorm_json(lines)
    if code != 0:
        raise PermanentStageError(f"could not normalise the soundtrack: {' | '.join(lines[-3:])}")
    (work / PREMIX_NAME).unlink(missing_ok=True)
    return Mix(
        audio=work / MIX_NAME,
        bed=bed,
        bed_gain_db=bed_gain,
        voice_lufs=voice_lufs,
        first_pass=first,
        second_pass=second,
        stems=(work / VOICE_STEM, work / BED_STEM if bed is not None else None),
    )
