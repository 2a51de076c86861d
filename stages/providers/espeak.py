"""eSpeak NG through ctypes, from the ``espeakng-loader`` wheel (library + data, no system package).

Why this engine exists next to Piper: it is ~200x realtime, deterministic and reports WORD events
with their audio offsets, so tests run fast and caption lines can be timed to the word. It sounds
robotic, which is why Piper is the default when its voice is installed.

The library keeps global state (one voice, one callback), so every call holds ``_LOCK``.
"""

from __future__ import annotations

import ctypes
import threading
from functools import cache

import numpy as np

from stages.providers.tts import Speech, WordTiming

# espeak_AUDIO_OUTPUT / flags / event types from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1

_LOCK = threading.Lock()


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of this synth call
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakUnavailable(RuntimeError):
    """The espeakng-loader wheel is missing or its library would not initialise."""


class _Library:
    """The loaded library plus the Python callback it writes into (kept alive on the instance)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - the wheel is pinned in requirements.txt
            raise EspeakUnavailable("espeakng-loader is not installed") from exc
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_SetVoiceByProperties.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise EspeakUnavailable("espeak_Initialize failed (data folder unreadable?)")
        self.lib = lib
        self.sample_rate = rate
        self.chunks: list[bytes] = []
        self.words: list[tuple[int, int]] = []  # (0-based char offset, ms)
        self._callback = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def select_voice(self, voice: str) -> bool:
        """By voice name/file ("en-us", "en+f3") first, else by language code ("en-gb", "pt-br")."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) == 0:
            return True
        spec = _Voice(name=None, languages=voice.lower().encode(), identifier=None)
        return self.lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) == 0

    def _on_audio(self, wav, count, events) -> int:
        if wav and count > 0:
            self.chunks.append(ctypes.string_at(wav, count * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self.words.append((event.text_position - 1, event.audio_position))
            i += 1
        return 0  # 0 = continue synthesis


@cache
def _library() -> _Library:
    return _Library()


class EspeakProvider:
    """``VoiceProvider`` backed by eSpeak NG. ``voice`` is an espeak voice name or language (en-us, en-gb)."""

    engine = "espeak-ng"

    def __init__(self, voice: str = "en-us", *, rate_wpm: int = 175) -> None:
        self.voice = voice or "en-us"
        self.rate_wpm = int(rate_wpm)
        with _LOCK:
            lib = _library()
            self.sample_rate = lib.sample_rate
            if not lib.select_voice(self.voice):
                raise ValueError(f"espeak-ng has no voice named {self.voice!r}")

    def synthesize(self, text: str, *, previous: str = "", following: str = "") -> Speech:
        """Speak ``text`` (one sentence) into int16 samples plus the start time of each word."""
        data = text.encode("utf-8") + b"\0"
        with _LOCK:
            lib = _library()
            lib.chunks, lib.words = [], []
            lib.select_voice(self.voice)
            lib.lib.espeak_SetParameter(_PARAM_RATE, self.rate_wpm, 0)
            status = lib.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            pcm, words = b"".join(lib.chunks), list(lib.words)
            lib.chunks, lib.words = [], []
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        samples = np.frombuffer(pcm, dtype=np.int16).copy()
        return Speech(
            samples=samples,
            sample_rate=self.sample_rate,
            words=[WordTiming(char=c, start=ms / 1000.0) for c, ms in words],
        )
