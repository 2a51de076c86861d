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

Which voice (``chosen_voice``), first found wins: the operator's edit (``overrides["voice"]``), the
theme's explicit ``settings.voiceover.voice``, the voice trend analysis chose from past videos'
results (``patterns.chosen.voice``, ``stages.feedback``), the theme's voice, the engine's default.
``overrides["segments"]["<n>"]["voice"]`` speaks segment n with another voice.

Targeted edits (issue 14): each segment's audio (``segments/<nn>-<id>.wav``, its sentences joined
by the sentence pause) and timings (``.json``, sample offsets) are keyed by (engine, voice, narration
as spoken, ``voice_take``). A re-run with a base checkpoint hard-links every segment whose key
matches from ``ctx.base_dir`` and speaks only the others (a new line, another voice, a new take),
then joins the pieces with the same pauses, so word timings are what a first run would give with
those pieces. ``ctx.usage`` counts the characters actually synthesised under the engine's name
(reused segments cost nothing; a provider that counts its own, under its price key, is not counted
twice). The output adds ``voice_source`` (override | settings | pattern | theme | default),
``voice_choice`` (the voice string as chosen, None for the default; what publish records as the
video's voice, so the feedback loop compares like with like),
``tts_characters`` and ``segment_audio``: per segment ``{"index", "segment", "key", "digest",
"audio", "timings", "start", "duration", "reused", "characters"}`` (``start``: seconds into voice.wav).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import shutil
import unicodedata
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.base import ArtifactSpec, PermanentStageError, StageAborted, StageContext, StageError, StageResult
from stages.chain import Registry, run_chain
from stages.providers import tts
from stages.providers.cloud_tts import resample
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


# -- which voice ---------------------------------------------------------------------------------
def chosen_voice(ctx: StageContext) -> tuple[str | None, str]:
    """The whole video's voice and where it comes from, first found wins: the operator's edit
    (``overrides["voice"]``, "override"), the theme's explicit ``settings.voiceover.voice``
    ("settings"), the pattern trend analysis chose from past videos' results (``patterns.chosen.voice``,
    "pattern"), the theme's voice ("theme"), else the engine's default ("default").

    An override or a chosen pattern names the voice and its engine (``parse_voice_setting``; a prefix
    such as ``elevenlabs:<voice id>`` picks that provider); the theme's own settings keep today's rules.
    """
    override = (ctx.overrides or {}).get("voice")
    if isinstance(override, str) and override.strip():
        return override.strip(), "override"
    if ctx.stage_settings.get("voice"):
        return str(ctx.stage_settings["voice"]), "settings"
    theme_voice = str(ctx.theme.get("voice") or "").strip()
    patterns = (ctx.upstream.get("trend_analysis") or {}).get("patterns")
    pattern = ((patterns.get("chosen") if isinstance(patterns, dict) else None) or {}).get("voice")
    if isinstance(pattern, str) and pattern.strip() and pattern.strip() != theme_voice:
        return pattern.strip(), "pattern"
    if theme_voice:
        return theme_voice, "theme"
    return None, "default"


def _voice_engine(voice: str) -> str | None:
    """The provider a voice string names by prefix ("elevenlabs:abc" -> "elevenlabs"), if any."""
    prefix, colon, _ = voice.partition(":")
    prefix = prefix.strip().lower()
    if colon and prefix in PROVIDERS.known:
        return PROVIDERS.canonical(prefix)
    return None


def provider_for(ctx: StageContext, name: str, voice: str | None) -> VoiceProvider:
    """Chain provider ``name``, speaking ``voice`` when one is forced (an edit, a chosen pattern).

    A prefixed voice speaks with the provider it names; a bare one with ``name``: the offline engines
    read it as a voice name (and the engine it implies), a network provider takes it as its voice id.
    """
    if not voice:
        return PROVIDERS.resolve(ctx, name)
    target = _voice_engine(voice) or PROVIDERS.canonical(name)
    if PROVIDERS.providers.get(target, "").startswith("stages.providers.tts."):
        return tts.voice_provider(ctx, voice)
    provider = PROVIDERS.resolve(ctx, target)
    provider.voice = voice.partition(":")[2].strip() if _voice_engine(voice) else voice
    return provider


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
    voice, source = chosen_voice(ctx)
    forced = voice if source in ("override", "pattern") else None
    names = [_voice_engine(forced)] if forced and _voice_engine(forced) else PROVIDERS.names(ctx)
    result, report = run_chain(ctx, names, lambda name: speak(ctx, name, forced, plan, total))
    provider = report["provider"]
    if not ctx.stage_settings.get("providers") and PROVIDERS.providers.get(
        PROVIDERS.canonical(provider), ""
    ).startswith("stages.providers.tts."):
        provider = result.output["engine"]  # no chain: the offline engine that spoke is the provider
    result.output.update(
        provider=provider, provider_failures=report["failures"], voice_source=source, voice_choice=voice
    )
    return result


# -- one segment's audio, kept for the next re-run -------------------------------------------------
SEGMENT_DIR = "segments"


@dataclass
class Piece:
    """One segment's speech: its sentences joined by ``SENTENCE_PAUSE`` (or ``EMPTY_SEGMENT_HOLD``
    of silence when nothing was audible), at the speaking engine's rate. Word and caption starts are
    sample offsets into ``samples``; ``sentence`` numbers count from the segment's first."""

    samples: np.ndarray
    rate: int
    words: list[dict[str, Any]]  # {"text", "start", "end", "sentence"} (samples)
    captions: list[list[Any]]  # [text, start sample]
    timing: dict[str, int]
    characters: int = 0  # synthesised now (0: reused)
    reused: bool = False


def segment_key(provider: VoiceProvider, sentences: list[str], take: int) -> dict[str, Any]:
    """What a segment's audio depends on: (engine, voice, narration as spoken, take)."""
    return {"engine": provider.engine, "voice": provider.voice, "text": " ".join(sentences), "take": take}


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def _take(edit: dict[str, Any]) -> int:
    take = edit.get("voice_take", 0)
    return take if isinstance(take, int) and not isinstance(take, bool) else 0


def save_piece(folder: Path, stem: str, piece: Piece, key: dict[str, Any]) -> tuple[str, str]:
    """Write a piece as ``segments/<stem>.wav`` + ``.json``; returns their paths relative to folder."""
    (folder / SEGMENT_DIR).mkdir(exist_ok=True)
    audio, timings = f"{SEGMENT_DIR}/{stem}.wav", f"{SEGMENT_DIR}/{stem}.json"
    write_wav(folder / audio, piece.samples, piece.rate)
    meta = {"key": key, "sample_rate": piece.rate, "words": piece.words, "captions": piece.captions}
    (folder / timings).write_text(json.dumps({**meta, "timing": piece.timing}, ensure_ascii=False), encoding="utf-8")
    return audio, timings


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy across file systems)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def reuse_piece(ctx: StageContext, record: dict[str, Any] | None, key: dict[str, Any], stem: str) -> Piece | None:
    """The base checkpoint's piece for ``key``, linked into this run's folder; None when there is
    none or its files are missing, outside the base folder or do not match the key."""
    if not record or ctx.base_dir is None:
        return None
    base = ctx.base_dir.resolve()
    sources = []
    for name in ("audio", "timings"):
        source = (base / str(record.get(name) or "")).resolve()
        if base not in source.parents or not source.is_file():
            return None
        sources.append(source)
    try:
        meta = json.loads(sources[1].read_text(encoding="utf-8"))
        with wave.open(str(sources[0]), "rb") as wav:
            rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    except (OSError, ValueError, EOFError, wave.Error):
        return None
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("sample_rate") != rate:
        return None
    if not isinstance(meta.get("words"), list) or not isinstance(meta.get("captions"), list):
        return None
    for source, suffix in zip(sources, (".wav", ".json"), strict=True):
        _link(source, ctx.work_dir / SEGMENT_DIR / f"{stem}{suffix}")
    return Piece(
        samples=np.frombuffer(frames, dtype="<i2").astype(np.int16),
        rate=rate,
        words=meta["words"],
        captions=meta["captions"],
        timing=meta.get("timing") or {"voice": 0, "derived": 0},
        reused=True,
    )


def _tts_characters(ctx: StageContext) -> float:
    """TTS characters counted so far in this attempt. A network provider may count its own, under
    the key its price is found by (host, model); the stage counts for the others."""
    return sum(row.get("tts_characters", 0) for row in ctx.usage.as_dict().values())


def synthesize_piece(
    ctx: StageContext,
    provider: VoiceProvider,
    segment_id: str,
    sentences: list[str],
    track: list[str],
    first: int,
    progress: Callable[[str], None],
) -> Piece:
    """Speak one segment sentence by sentence; ``track`` is every sentence of the video (for the
    neighbours an engine may shape its intonation with), ``first`` this segment's first one in it."""
    rate = provider.sample_rate
    chunks: list[np.ndarray] = []
    cursor = 0
    words: list[dict[str, Any]] = []
    captions: list[list[Any]] = []
    timing = {"voice": 0, "derived": 0}
    characters = 0
    for number, sentence in enumerate(sentences):
        progress(f"{segment_id}: sentence {number + 1}/{len(sentences)}")
        if number:
            chunks.append(np.zeros(round(SENTENCE_PAUSE * rate), dtype=np.int16))
            cursor += len(chunks[-1])
        done = first + number
        counted = _tts_characters(ctx)
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
        characters += len(sentence)
        if _tts_characters(ctx) == counted:  # the provider does not bill its own (the offline engines)
            ctx.usage.add(provider.engine, tts_characters=len(sentence))
        if speech.sample_rate != rate:
            raise PermanentStageError(f"{provider.engine} changed sample rate mid-track")
        lead, tail = trim_silence(speech.samples, rate)
        if tail <= lead:
            ctx.logger.warning("voiceover: %s produced no audio for %r", provider.engine, sentence)
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
                    "start": cursor + round(start * rate),
                    "end": cursor + round(end * rate),
                    "sentence": number,
                }
            )
        first_word = {
            char: cursor + round(start * rate) for (char, _), start in zip(sentence_words, starts, strict=True)
        }
        for line in split_lines(sentence):
            captions.append([caption_text(line.text), first_word.get(line.char, cursor)])
        chunks.append(speech.samples[lead:tail])
        cursor += length
    if not captions:
        chunks.append(np.zeros(round(EMPTY_SEGMENT_HOLD * rate), dtype=np.int16))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return Piece(samples, rate, words, captions, timing, characters=characters)


def speak(
    ctx: StageContext, name: str, forced: str | None, plan: list[tuple[str, list[str]]], total: int
) -> StageResult:
    """The whole track with chain provider ``name``: voice.wav plus segment windows and captions.

    Each segment is reused from the base checkpoint when its key (engine, voice, text, take)
    matches, else spoken now; the pieces are joined with the fixed pauses, so a re-run's timings
    are those a first run would have had with the same pieces.
    """
    overrides = (ctx.overrides or {}).get("segments") or {}
    providers: dict[str | None, VoiceProvider] = {None: provider_for(ctx, name, forced)}
    main = providers[None]
    rate = main.sample_rate
    ctx.progress(0.02, f"speaking {total} sentences with {main.engine} ({main.voice})")
    base = {
        record["digest"]: record
        for record in (ctx.base_output or {}).get("segment_audio") or []
        if isinstance(record, dict) and isinstance(record.get("digest"), str)
    }
    track = [sentence for _, sentences in plan for sentence in sentences]  # neighbours across segments
    done = 0

    def progress(message: str) -> None:
        nonlocal done
        ctx.progress(0.02 + 0.93 * done / total, message)
        done += 1

    pieces: list[tuple[Piece, dict[str, Any]]] = []
    first = 0
    for index, (segment_id, sentences) in enumerate(plan):
        edit = overrides.get(str(index + 1)) or {}
        own = edit.get("voice") if isinstance(edit.get("voice"), str) and edit["voice"].strip() else None
        if own not in providers:
            providers[own] = provider_for(ctx, name, own.strip())
        provider = providers[own]
        key = segment_key(provider, sentences, _take(edit))
        digest = key_digest(key)
        stem = f"{index + 1:02d}-" + re.sub(r"[^\w-]", "_", segment_id)[:40]  # ids come from the script
        piece = reuse_piece(ctx, base.get(digest), key, stem)
        if piece is None:
            piece = synthesize_piece(ctx, provider, segment_id, sentences, track, first, progress)
            audio, timings = save_piece(ctx.work_dir, stem, piece, key)
        else:
            done += len(sentences)
            audio, timings = f"{SEGMENT_DIR}/{stem}.wav", f"{SEGMENT_DIR}/{stem}.json"
        record = {"index": index + 1, "segment": segment_id, "key": key, "digest": digest}
        pieces.append((piece, {**record, "audio": audio, "timings": timings, "first_sentence": first}))
        first += len(sentences)
    return assemble(ctx, main, rate, pieces)


def assemble(
    ctx: StageContext, main: VoiceProvider, rate: int, pieces: list[tuple[Piece, dict[str, Any]]]
) -> StageResult:
    """Join the pieces: lead-in, each segment then its pause (the tail after the last)."""
    chunks: list[np.ndarray] = [np.zeros(round(LEAD_IN * rate), dtype=np.int16)]
    cursor = len(chunks[0])
    windows: list[dict[str, Any]] = []
    captions: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    timing = {"voice": 0, "derived": 0}
    for index, (piece, record) in enumerate(pieces):
        segment_start = 0 if index == 0 else cursor
        offset = cursor
        scale = rate / piece.rate

        def at(sample: int, offset: int = offset, scale: float = scale) -> int:
            return offset + (sample if scale == 1 else round(sample * scale))

        body = resample(piece.samples, piece.rate, rate)
        for word in piece.words:
            words.append(
                {
                    "text": word["text"],
                    "start": _sec(at(word["start"]), rate),
                    "end": _sec(at(word["end"]), rate),
                    "segment": record["segment"],
                    "sentence": record["first_sentence"] + word["sentence"],
                }
            )
        chunks.append(body)
        cursor += len(body)
        pause = round((SEGMENT_PAUSE if index < len(pieces) - 1 else TAIL) * rate)
        chunks.append(np.zeros(pause, dtype=np.int16))
        cursor += pause
        windows.append({"segment": record["segment"], "start": _sec(segment_start, rate), "end": _sec(cursor, rate)})
        # Each line stays up until the next one starts; the last one until the segment's cut.
        lines = [(text, at(start)) for text, start in piece.captions]
        for i, (text, start) in enumerate(lines):
            end = lines[i + 1][1] if i + 1 < len(lines) else cursor
            if end > start:
                captions.append({"text": text, "start": _sec(start, rate), "end": _sec(end, rate)})
        for source, count in piece.timing.items():
            timing[source] = timing.get(source, 0) + count
        del record["first_sentence"]
        records.append(
            {
                **record,
                "start": _sec(offset, rate),
                "duration": _sec(len(body), rate),
                "reused": piece.reused,
                "characters": piece.characters,
            }
        )

    if not captions:
        raise PermanentStageError(
            f"{main.engine} produced no audible speech for the script", hint="check the narration text"
        )
    audio = np.concatenate(chunks)
    write_wav(ctx.work_dir / AUDIO_NAME, audio, rate)
    duration = _sec(len(audio), rate)
    reused = sum(r["reused"] for r in records)
    ctx.progress(
        1.0,
        f"voiceover {duration:.1f}s, {len(captions)} caption lines"
        + (f"; {reused} of {len(records)} segments reused" if reused else ""),
    )
    return StageResult(
        output={
            "audio": AUDIO_NAME,
            "duration": duration,
            "sample_rate": rate,
            "engine": main.engine,
            "voice": main.voice,
            "segments": windows,
            "captions": captions,
            "words": words,
            "word_timing": timing,
            "segment_audio": records,
            "tts_characters": sum(r["characters"] for r in records),
        },
        artifacts=[ArtifactSpec(path=AUDIO_NAME, kind="audio", label=f"Voiceover ({main.engine})")],
    )


def _sec(samples: int, rate: int) -> float:
    return round(samples / rate, 4)
