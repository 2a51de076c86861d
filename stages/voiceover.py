"""Stage: voiceover. Speak the script offline and time every caption line from the audio itself.

Why per sentence: synthesizing each sentence on its own tells us exactly where it starts and ends in
the final track, so caption lines and the scene cuts (segment windows) are exact rather than guessed
from a words-per-second estimate. Steps:

1. Normalise each segment's narration (emoji, smart quotes, URLs, hashtags) so no engine chokes and
   captions only hold glyphs the shared font has.
2. Split it into sentences, synthesize each (checking cancel between sentences), trim the engine's
   own leading/trailing silence and join them with fixed pauses (120 ms between sentences, 250 ms
   between segments).
3. Time every word (``stages.speech_timing``): from the voice's own timings (eSpeak NG word events,
   Piper phoneme durations, ElevenLabs character alignment), or, for a voice that gives none
   (OpenAI-compatible TTS), found in its audio by alignment with a timed reference reading.
4. Segment windows tile the whole track (a segment owns the pause after it), so composition can cut
   scenes on them; ``words`` (each with its start, end and segment) drive the karaoke captions and
   ``captions`` (lines of <= 7 words / 32 chars) start with their first word.
5. Write ``voice.wav`` (mono 16-bit at the engine's rate) and return the contract output.

Providers (``PROVIDERS``): ``theme.settings["voiceover"]["providers"]`` is a fallback chain, e.g.
``["elevenlabs", "openai", "offline"]`` (``stages.providers.cloud_tts`` for the network ones;
"offline", "piper" or "espeak-ng" for the local engines, ``stages.providers.tts``). Each speaks the
whole script; one that fails hands over to the next, and the output names who spoke (``engine``,
``provider``) and why the others did not (``provider_failures``). Without ``providers`` the offline
choice (``engine``, the theme's voice) is unchanged and ``provider`` names the engine. Sentences
are split by ``stages.text.split_sentences``, the splitter the script writer counts with.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.base import ArtifactSpec, PermanentStageError, StageAborted, StageContext, StageError, StageResult
from stages.chain import Registry, run_chain
from stages.providers.tts import VoiceProvider
from stages.speech_timing import complete_starts, derive_starts, snap_to_sound, tokens
from stages.text import split_sentences

__all__ = ["PROVIDERS", "VoiceProvider", "run", "split_sentences"]

# The voiceover's providers (``VoiceProvider``: ``synthesize(sentence) -> Speech``), local and networked.
PROVIDERS = Registry(
    "voiceover",
    {
        "offline": "stages.providers.tts.offline_voice",  # Piper if its voice is installed, else eSpeak NG
        "piper": "stages.providers.tts.piper_voice",
        "espeak-ng": "stages.providers.tts.espeak_voice",
        "elevenlabs": "stages.providers.cloud_tts.ElevenLabsProvider",
        "openai": "stages.providers.cloud_tts.OpenAISpeechProvider",
    },
    default="offline",
    method="synthesize",
    aliases={"espeak": "espeak-ng", "auto": "offline", "default": "offline"},
)

AUDIO_NAME = "voice.wav"
LEAD_IN = 0.10  # seconds of silence before the first word
SENTENCE_PAUSE = 0.12
SEGMENT_PAUSE = 0.25
TAIL = 0.40  # after the last word, so the video does not end mid-breath
EMPTY_SEGMENT_HOLD = 1.0  # a segment with nothing speakable still gets its scene on screen
MAX_LINE_WORDS = 7
MAX_LINE_CHARS = 32
SILENCE_THRESHOLD = 300  # int16 amplitude (about -40 dBFS) below which engine padding is trimmed

# -- text ----------------------------------------------------------------------------------------
_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2212": "-",
        "\u00a0": " ",
        "\u2026": "...",
        "\u2022": ",",
        "&": " and ",
    }
)
_URL = re.compile(r"(?:https?://|www\.)\S*[^\s.,;:!?)\]\"']", re.IGNORECASE)
_DASH = re.compile(r"\s*[\u2013\u2014\u2015]+\s*|\s+-{1,2}\s+")
_TAG = re.compile(r"(?<!\w)[#@](?=\w)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?%])")
_PAUSE_BEFORE_STOP = re.compile(r"[,;:]+\s*(?=[.!?])")
_REPEATED_PAUSE = re.compile(r"([,;:])(?:\s*[,;:])+")
_KEEP_CATEGORIES = ("L", "N", "P", "Zs", "Sm", "Sc")


def normalise_text(text: str) -> str:
    """Make narration safe to speak and to draw: no emoji or control characters, plain punctuation.

    Accented letters stay (both engines and Lato handle Latin text); symbols that have no spoken form
    (emoji, arrows, dingbats) go; ``#tag``/``@name`` lose their sigil; URLs are dropped; dashes used
    as pauses become commas.
    """
    text = unicodedata.normalize("NFKC", str(text or ""))
    text = _URL.sub(" ", text)
    text = text.translate(_TRANSLATE)
    text = _DASH.sub(", ", text)
    text = _TAG.sub("", text)
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\t\n\r":
            kept.append(" ")
        elif cat.startswith(_KEEP_CATEGORIES) or (cat == "Mn" and kept and kept[-1].isalpha()):
            kept.append(ch)
        else:
            kept.append(" ")  # emoji (So), modifiers (Sk), ZWJ/variation selectors (Cf/Mn), controls
    text = unicodedata.normalize("NFC", "".join(kept))
    text = re.sub(r"\s+", " ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_PAUSE.sub(r"\1", _PAUSE_BEFORE_STOP.sub("", text))
    return text.strip(" ,;:")


@dataclass
class Line:
    text: str
    char: int  # offset of the line's first character in its sentence


def split_lines(sentence: str, max_words: int = MAX_LINE_WORDS, max_chars: int = MAX_LINE_CHARS) -> list[Line]:
    """Cut a sentence into caption lines of at most ``max_words`` words and ``max_chars`` characters.

    Uses the fewest lines the limits allow (one more only when it reads much better) and picks the
    breaks by a small dynamic programme: lines of even length, breaks after commas preferred, no line
    ending on "the"/"a"/"of"... A single word longer than ``max_chars`` gets a line of its own.
    """
    words = [(m.group(0), m.start()) for m in re.finditer(r"\S+", sentence)]
    if not words:
        return []
    n = len(words)

    def width(i: int, j: int) -> int:  # words[i:j] joined by spaces
        return sum(len(w) for w, _ in words[i:j]) + (j - i - 1)

    def fits(i: int, j: int) -> bool:
        return j - i == 1 or (j - i <= max_words and width(i, j) <= max_chars)

    def best(count: int) -> tuple[float, list[int]] | None:
        target = width(0, n) / count
        # cost[k][j]: best cost of covering words[:j] with k lines; back[k][j]: start of the last line
        inf = float("inf")
        cost = [[inf] * (n + 1) for _ in range(count + 1)]
        back = [[0] * (n + 1) for _ in range(count + 1)]
        cost[0][0] = 0.0
        for k in range(1, count + 1):
            for j in range(1, n + 1):
                for i in range(j - 1, -1, -1):
                    if not fits(i, j):
                        break
                    if cost[k - 1][i] == inf:
                        continue
                    c = cost[k - 1][i] + (width(i, j) - target) ** 2 / 4 + _break_penalty(words[j - 1][0], j == n)
                    if c < cost[k][j]:
                        cost[k][j], back[k][j] = c, i
        if cost[count][n] == inf:
            return None
        starts, j = [], n
        for k in range(count, 0, -1):
            j = back[k][j]
            starts.append(j)
        return cost[count][n], starts[::-1]

    count = max(math.ceil(n / max_words), math.ceil(width(0, n) / max_chars), 1)
    found = best(count)
    while found is None:  # limits (a very long word) need more lines than the estimate
        count += 1
        found = best(count)
    looser = best(count + 1) if count + 1 <= n else None
    if looser is not None and looser[0] + 60 < found[0]:
        found = looser
    starts = found[1] + [n]
    return [Line(" ".join(w for w, _ in words[a:b]), words[a][1]) for a, b in itertools.pairwise(starts) if b > a]


_WEAK_ENDINGS = {
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "and", "or", "but", "with", "by", "from",
    "is", "are", "was", "my", "your", "our", "their", "its", "his", "her", "that", "this", "than",
}  # fmt: skip


def _break_penalty(last_word: str, final: bool) -> float:
    if final:
        return 0.0
    if last_word[-1] in ",;:.!?":
        return -12.0
    if last_word.lower() in _WEAK_ENDINGS:
        return 25.0
    return 0.0


def caption_text(line: str) -> str:
    """On-screen form of a line: no trailing comma/period clutter, questions and exclamations kept."""
    return line.rstrip(",;:.").strip() or line


# -- audio ---------------------------------------------------------------------------------------
def trim_silence(samples: np.ndarray, rate: int) -> tuple[int, int]:
    """Sample range holding the speech: engines pad sentences with uneven silence; we add our own."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE_THRESHOLD)
    if loud.size == 0:
        return 0, 0
    start = max(0, int(loud[0]) - int(0.03 * rate))
    end = min(len(samples), int(loud[-1]) + int(0.06 * rate))
    return start, end


def word_starts(
    sentence: str, samples: np.ndarray, rate: int, timings: list[Any], offset: float
) -> tuple[list[float], str]:
    """A start for every word of ``sentence`` in seconds from the trimmed audio, and their source.

    The voice's own timings (relative to its untrimmed audio, hence ``offset``) when they cover the
    sentence (``"voice"``), else found in the audio itself (``"derived"``; OpenAI-compatible TTS, an
    ElevenLabs answer without a usable alignment). Either way a start that falls in a pause moves
    to the first sound after it (``snap_to_sound``).
    """
    length = len(samples) / rate
    if timings:
        starts = complete_starts(sentence, timings, length + offset)
        if starts is not None:
            starts = [min(max(start - offset, 0.0), length) for start in starts]
            return snap_to_sound(starts, samples, rate), "voice"
    return snap_to_sound(derive_starts(samples, rate, sentence), samples, rate), "derived"


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2", copy=False).tobytes())


# -- stage ---------------------------------------------------------------------------------------
def _segments(ctx: StageContext) -> list[dict[str, Any]]:
    script = ctx.output_of("script_generation")
    segments = script.get("segments")
    if not isinstance(segments, list) or not segments:
        raise PermanentStageError("script_generation output has no segments to speak", hint="re-run script_generation")
    for i, segment in enumerate(segments):
        if not isinstance(segment, dict) or not segment.get("id"):
            raise PermanentStageError(f"script_generation segment #{i + 1} has no id", hint="re-run script_generation")
    return segments


def run(ctx: StageContext) -> StageResult:
    ctx.progress(0.0, "preparing narration")
    segments = _segments(ctx)
    plan = [(str(seg["id"]), split_sentences(normalise_text(seg.get("narration", "")))) for seg in segments]
    total = sum(len(sentences) for _, sentences in plan)
    if total == 0:
        raise PermanentStageError(
            "script_generation narration is empty: no segment has words to speak",
            hint="check the script (segments[].narration) and re-run script_generation",
        )
    result, report = run_chain(
        ctx, PROVIDERS.names(ctx), lambda name: speak(ctx, PROVIDERS.resolve(ctx, name), plan, total)
    )
    provider = report["provider"]
    if not ctx.stage_settings.get("providers") and PROVIDERS.providers.get(
        PROVIDERS.canonical(provider), ""
    ).startswith("stages.providers.tts."):
        provider = result.output["engine"]  # no chain: the offline engine that spoke is the provider
    result.output.update(provider=provider, provider_failures=report["failures"])
    return result


def speak(ctx: StageContext, provider: VoiceProvider, plan: list[tuple[str, list[str]]], total: int) -> StageResult:
    """The whole track with one provider: voice.wav plus segment windows and captions."""
    rate = provider.sample_rate
    ctx.progress(0.02, f"speaking {total} sentences with {provider.engine} ({provider.voice})")

    pieces: list[np.ndarray] = []
    cursor = 0  # samples written so far

    def silence(seconds: float) -> None:
        nonlocal cursor
        count = round(seconds * rate)
        pieces.append(np.zeros(count, dtype=np.int16))
        cursor += count

    windows: list[dict[str, Any]] = []
    captions: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    timing = {"voice": 0, "derived": 0}  # sentences timed by the voice itself / from its audio
    done = 0
    track = [sentence for _, sentences in plan for sentence in sentences]  # neighbours across segments
    silence(LEAD_IN)
    for index, (segment_id, sentences) in enumerate(plan):
        segment_start = 0 if index == 0 else cursor
        segment_captions: list[tuple[str, int]] = []  # (text, start sample)
        for number, sentence in enumerate(sentences):
            ctx.progress(0.02 + 0.93 * done / total, f"{segment_id}: sentence {number + 1}/{len(sentences)}")
            if number:
                silence(SENTENCE_PAUSE)
            try:
                speech = provider.synthesize(
                    sentence,
                    previous=track[done - 1] if done else "",
                    following=track[done + 1] if done + 1 < len(track) else "",
                )
            except (StageError, StageAborted):
                raise  # a network provider's transient/permanent error keeps its kind (and retry_after)
            except Exception as exc:  # an engine bug on this text: retrying the same text will not help
                raise PermanentStageError(
                    f"{provider.engine} could not speak {segment_id} sentence {number + 1} ({sentence[:60]!r}): {exc}",
                    hint="reword that sentence in the script or switch voiceover.engine",
                ) from exc
            if speech.sample_rate != rate:
                raise PermanentStageError(f"{provider.engine} changed sample rate mid-track")
            lead, tail = trim_silence(speech.samples, rate)
            if tail <= lead:
                ctx.logger.warning("voiceover: %s produced no audio for %r", provider.engine, sentence)
                done += 1
                continue
            starts, source = word_starts(sentence, speech.samples[lead:tail], rate, speech.words, lead / rate)
            timing[source] += 1
            length = tail - lead
            sentence_words = tokens(sentence)
            for k, ((_, text), start) in enumerate(zip(sentence_words, starts, strict=True)):
                end = starts[k + 1] if k + 1 < len(starts) else length / rate
                words.append(
                    {
                        "text": text,
                        "start": _sec(cursor + round(start * rate), rate),
                        "end": _sec(cursor + round(end * rate), rate),
                        "segment": segment_id,
                        "sentence": done,
                    }
                )
            first_word = {
                char: cursor + round(start * rate) for (char, _), start in zip(sentence_words, starts, strict=True)
            }
            for line in split_lines(sentence):
                segment_captions.append((caption_text(line.text), first_word.get(line.char, cursor)))
            pieces.append(speech.samples[lead:tail])
            cursor += length
            done += 1
        if not segment_captions:
            silence(EMPTY_SEGMENT_HOLD)
        silence(SEGMENT_PAUSE if index < len(plan) - 1 else TAIL)
        windows.append({"segment": segment_id, "start": _sec(segment_start, rate), "end": _sec(cursor, rate)})
        # Each line stays up until the next one starts; the last one until the segment's cut.
        for i, (text, start) in enumerate(segment_captions):
            end = segment_captions[i + 1][1] if i + 1 < len(segment_captions) else cursor
            if end > start:
                captions.append({"text": text, "start": _sec(start, rate), "end": _sec(end, rate)})

    if not captions:
        raise PermanentStageError(
            f"{provider.engine} produced no audible speech for the script", hint="check the narration text"
        )
    audio = np.concatenate(pieces)
    write_wav(ctx.work_dir / AUDIO_NAME, audio, rate)
    duration = _sec(len(audio), rate)
    ctx.progress(1.0, f"voiceover {duration:.1f}s, {len(captions)} caption lines")
    return StageResult(
        output={
            "audio": AUDIO_NAME,
            "duration": duration,
            "sample_rate": rate,
            "engine": provider.engine,
            "voice": provider.voice,
            "segments": windows,
            "captions": captions,
            "words": words,
            "word_timing": timing,
        },
        artifacts=[ArtifactSpec(path=AUDIO_NAME, kind="audio", label=f"Voiceover ({provider.engine})")],
    )


def _sec(samples: int, rate: int) -> float:
    return round(samples / rate, 4)
