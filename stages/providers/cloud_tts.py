"""Network text-to-speech for the voiceover stage: ElevenLabs and any OpenAI-compatible
``/audio/speech`` endpoint (OpenAI, or a self-hosted server speaking the same API).

Both are ``VoiceProvider``s like the offline engines: ONE sentence per request, so the stage knows
exactly where each sentence starts and captions stay exact. ElevenLabs' ``/with-timestamps``
endpoint also returns per-character times, which ``alignment_words`` turns into word starts (the
stage completes and checks them against the audio: ``stages.speech_timing``); OpenAI gives none,
so the stage finds each word in the audio itself (alignment with a timed eSpeak NG reading).

Every answer is checked before use: decodable (WAV, raw 16-bit PCM, or MP3 through ffmpeg), not
empty, not silent and of a plausible length for its text. Garbage is a permanent error for that
provider, so a fallback chain moves on to the next one.

Settings live in ``theme.settings["voiceover"]["elevenlabs"]`` / ``["openai"]`` with environment
fallbacks (see ``ElevenLabsProvider`` / ``OpenAISpeechProvider``). Keys go out as headers only and
are scrubbed from every message.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import numpy as np

from stages.base import PermanentStageError, StageContext
from stages.http import HttpProvider, float_setting, setting_path, usage_key
from stages.payload import as_dict, as_float, as_list
from stages.providers.llm import key_required
from stages.providers.tts import Speech, WordTiming

ELEVENLABS = "elevenlabs"
OPENAI = "openai"
DEFAULT_TIMEOUT = 60.0
SILENCE = 300  # int16 peak below which a clip is silence (the stage trims with the same threshold)
MIN_SECONDS = 0.15
MAX_SECONDS_BASE, MAX_SECONDS_PER_CHAR = 5.0, 0.25  # slower than anyone speaks (~4 chars/s)

ELEVENLABS_BASE_URL = "https://api.elevenlabs.io"
ELEVENLABS_VOICE = "JBFqnCBsd6RMkjVDRZzb"  # "George", a premade voice every account has
ELEVENLABS_MODEL = "eleven_multilingual_v2"
ELEVENLABS_FORMAT = "pcm_22050"  # raw 16-bit PCM: no decoder needed; mp3_* formats go through ffmpeg
OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_MODEL = "gpt-4o-mini-tts"
OPENAI_VOICE = "alloy"
OPENAI_RATE = 24000  # what /audio/speech returns; other rates are resampled to the first one
_FORMAT = re.compile(r"^(pcm|mp3|wav)_(\d{4,6})(?:_\d+)?$")


# -- audio ---------------------------------------------------------------------------------------
class NotAudio(ValueError):
    """The bytes are not audio we can read."""


def _to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    if channels <= 1:
        return samples
    frames = samples[: len(samples) - len(samples) % channels].reshape(-1, channels)
    return frames.astype(np.int32).mean(axis=1).astype(np.int16)


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono int16 samples and rate of a 16-bit PCM WAV.

    Walks the RIFF chunks itself: streamed WAVs (OpenAI's among them) carry placeholder sizes
    (0xFFFFFFFF) that ``wave`` would trust; here a data chunk simply runs to the end of the bytes.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise NotAudio("not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise NotAudio("WAV fmt chunk is truncated")
            tag, channels, rate = (
                int.from_bytes(data[body + a : body + b], "little") for a, b in ((0, 2), (2, 4), (4, 8))
            )
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if tag not in (1, 0xFFFE) or bits != 16:
                raise NotAudio(f"WAV is not 16-bit PCM (format {tag}, {bits} bits)")
            if not channels or not 1000 <= rate <= 192000:
                raise NotAudio(f"WAV header is implausible ({channels} channels, {rate} Hz)")
            fmt = (channels, rate)
        elif chunk == b"data":
            if fmt is None:
                raise NotAudio("WAV data comes before its fmt chunk")
            raw = data[body : min(len(data), body + size)]
            raw = raw[: len(raw) - len(raw) % (2 * fmt[0])]
            return _to_mono(np.frombuffer(raw, dtype="<i2").astype(np.int16), fmt[0]), fmt[1]
        pos = body + size + (size & 1)
    raise NotAudio("WAV has no data chunk")


def decode_pcm16(data: bytes) -> np.ndarray:
    if len(data) % 2:
        raise NotAudio(f"raw 16-bit PCM has an odd length ({len(data)} bytes)")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def decode_with_ffmpeg(ctx: StageContext, data: bytes, rate: int) -> np.ndarray:
    """Compressed audio (MP3...) to mono int16 at ``rate`` through ffmpeg (cancellable child)."""
    from stages.media import ffmpeg_exe

    args = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        "pipe:0",
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        str(rate),
        "pipe:1",
    ]
    done = ctx.run_process(args, input_bytes=data, timeout=60)
    if done.returncode != 0 or not done.stdout:
        raise NotAudio(
            "ffmpeg could not decode it" + (f": {done.stderr.splitlines()[-1][:200]}" if done.stderr else "")
        )
    return decode_pcm16(done.stdout[: len(done.stdout) - len(done.stdout) % 2])


def resample(samples: np.ndarray, source: int, target: int) -> np.ndarray:
    if source == target or samples.size == 0:
        return samples
    count = max(1, round(samples.size * target / source))
    positions = np.arange(count) * (source / target)
    return np.interp(positions, np.arange(samples.size), samples.astype(np.float64)).round().astype(np.int16)


def check_audio(samples: np.ndarray, rate: int, text: str, provider: str) -> None:
    """Refuse audio that cannot be the sentence: empty, silent, or far too short or long."""
    what = f"{provider} returned unusable audio for {text[:60]!r}"
    hint = f"check the {provider} model/voice/output_format settings, or put another provider first"
    if samples.size == 0:
        raise PermanentStageError(f"{what}: no samples", hint=hint)
    seconds = samples.size / rate
    longest = MAX_SECONDS_BASE + MAX_SECONDS_PER_CHAR * len(text)
    if seconds < MIN_SECONDS or seconds > longest:
        raise PermanentStageError(f"{what}: {seconds:.2f} s is implausible for {len(text)} characters", hint=hint)
    if int(np.abs(samples.astype(np.int32)).max()) <= SILENCE:
        raise PermanentStageError(f"{what}: it is silent", hint=hint)


def alignment_words(text: str, alignment: Any) -> list[WordTiming]:
    """Word starts from ElevenLabs' character alignment (``characters`` and
    ``character_start_times_seconds``); [] when it is missing, malformed (wrong types, times that
    are not finite, go backwards or are absurd, far more entries than the text has characters) or
    does not match the text."""
    mapping = as_dict(alignment)
    if mapping is None:
        return []
    chars, starts = as_list(mapping.get("characters")), as_list(mapping.get("character_start_times_seconds"))
    if not chars or starts is None or len(chars) != len(starts) or len(chars) > 4 * len(text) + 64:
        return []
    times: dict[int, float] = {}  # text offset -> start time, matching non-space characters in order
    pos = 0
    previous = 0.0
    for ch, start in zip(chars, starts, strict=False):
        moment = as_float(start) if not isinstance(start, str) else None
        if not isinstance(ch, str) or len(ch) > 8 or moment is None or not 0 <= moment < 3600 or moment < previous:
            return []
        previous = moment
        for c in ch:
            if c.isspace():
                continue
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text) or text[pos].casefold() != c.casefold():
                return []
            times.setdefault(pos, moment)
            pos += 1
    words = []
    for match in re.finditer(r"\S+", text):
        if match.start() in times:
            words.append(WordTiming(char=match.start(), start=max(0.0, times[match.start()])))
    return words


def elevenlabs_answer(answer: Any) -> tuple[bytes, Any]:
    """(audio bytes, alignment) of a ``/with-timestamps`` answer; ``PermanentStageError`` when the
    answer has no decodable ``audio_base64``. The alignment is checked later (``alignment_words``)."""
    hint = "check base_url: it must be the ElevenLabs API (or a compatible one)"
    mapping = as_dict(answer)
    encoded = mapping.get("audio_base64") if mapping is not None else None
    if not isinstance(encoded, str) or not encoded:
        raise PermanentStageError(f"{ELEVENLABS}: the answer has no audio_base64", hint=hint)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PermanentStageError(f"{ELEVENLABS}: audio_base64 is not valid base64", hint=hint) from None
    return data, mapping.get("alignment") or mapping.get("normalized_alignment")


# -- providers -----------------------------------------------------------------------------------
class ElevenLabsProvider(HttpProvider):
    """``POST {base_url}/v1/text-to-speech/{voice_id}/with-timestamps`` (JSON: base64 audio plus
    per-character timings).

    Settings (``theme.settings["voiceover"]["elevenlabs"]``, env fallback): ``api_key``
    (ELEVENLABS_API_KEY, required; the environment's key goes only to api.elevenlabs.io, the
    ELEVENLABS_BASE_URL host or TRENDREEL_PROVIDER_HOSTS), ``voice_id`` (ELEVENLABS_VOICE_ID),
    ``model_id`` (ELEVENLABS_MODEL_ID), ``base_url`` (ELEVENLABS_BASE_URL), ``output_format``
    (pcm_22050 default; pcm_16000/24000/44100 or mp3_44100_128 also work), ``voice_settings``
    (dict), ``language_code``, ``timeout`` (seconds).
    """

    name = engine = ELEVENLABS

    def __init__(self, ctx: StageContext, *, client: httpx.Client | None = None) -> None:
        super().__init__(ctx)
        self.base_url = _base_url(
            ctx,
            ELEVENLABS,
            self.setting("base_url", "ELEVENLABS_BASE_URL", default=ELEVENLABS_BASE_URL),
            "ELEVENLABS_BASE_URL",
        )
        self.api_key = self.secret(
            "api_key",
            "ELEVENLABS_API_KEY",
            url=self.base_url,
            hosts=[ELEVENLABS_BASE_URL, os.environ.get("ELEVENLABS_BASE_URL")],
            required=True,
        )
        self.voice = str(self.setting("voice_id", "ELEVENLABS_VOICE_ID", default=ELEVENLABS_VOICE))
        self.model = str(self.setting("model_id", "ELEVENLABS_MODEL_ID", default=ELEVENLABS_MODEL))
        self.output_format = str(self.setting("output_format", default=ELEVENLABS_FORMAT))
        match = _FORMAT.match(self.output_format)
        if not match:
            raise PermanentStageError(
                f"{ELEVENLABS}: output_format {self.output_format!r} is not supported",
                hint=f"set {setting_path(ctx, ELEVENLABS, 'output_format')} to e.g. pcm_22050 or mp3_44100_128",
            )
        self.kind, self.sample_rate = match.group(1), int(match.group(2))
        self.voice_settings = self.setting("voice_settings")
        self.language_code = self.setting("language_code")
        self.timeout = float_setting(ctx, ELEVENLABS, "timeout", DEFAULT_TIMEOUT)
        self.client = client
        self.hint_setting = f'theme.settings["{ctx.stage}"]["{ELEVENLABS}"]: api_key (ELEVENLABS_API_KEY), voice_id (ELEVENLABS_VOICE_ID), model_id'

    def _decode(self, data: bytes) -> np.ndarray:
        if data[:4] == b"RIFF":
            samples, rate = decode_wav(data)
            return resample(samples, rate, self.sample_rate)
        if self.kind == "pcm":
            return decode_pcm16(data)
        return decode_with_ffmpeg(self.ctx, data, self.sample_rate)

    def synthesize(self, text: str, *, previous: str = "", following: str = "") -> Speech:
        body: dict[str, Any] = {"text": text, "model_id": self.model}
        # Request stitching: the neighbouring sentences keep the intonation flowing across calls.
        if previous:
            body["previous_text"] = previous
        if following:
            body["next_text"] = following
        if isinstance(self.voice_settings, dict):
            body["voice_settings"] = self.voice_settings
        if self.language_code:
            body["language_code"] = str(self.language_code)
        client = self.client or self.new_client(self.timeout)
        try:
            response = self.request(
                "POST", f"{self.base_url}/v1/text-to-speech/{quote(self.voice, safe='')}/with-timestamps",
                client=client, params={"output_format": self.output_format}, json=body,
                headers={"xi-api-key": self.api_key or "", "Accept": "application/json"},
            )  # fmt: skip
        finally:
            if self.client is None:
                client.close()
        # billed by the characters of ``text`` (the neighbours only steer the intonation)
        self.ctx.usage.add(usage_key(ELEVENLABS, self.base_url, "api.elevenlabs.io"), tts_characters=len(text))
        hint = "check base_url: it must be the ElevenLabs API (or a compatible one)"
        data, alignment = elevenlabs_answer(self.json(response, hint=hint))
        try:
            samples = self._decode(data)
        except NotAudio as exc:
            raise PermanentStageError(
                f"{ELEVENLABS} returned audio that cannot be decoded ({self.output_format}): {exc}", hint=hint
            ) from None
        check_audio(samples, self.sample_rate, text, ELEVENLABS)
        words = alignment_words(text, alignment)
        if not words:
            self.ctx.logger.warning(
                "%s: no usable alignment for %r; its words are found in the audio instead", ELEVENLABS, text[:60]
            )
        return Speech(samples=samples, sample_rate=self.sample_rate, words=words)


class OpenAISpeechProvider(HttpProvider):
    """``POST {base_url}/audio/speech`` with ``response_format: "wav"``; no timings.

    Settings (``theme.settings["voiceover"]["openai"]``, env fallback): ``base_url``
    (OPENAI_BASE_URL), ``api_key`` (OPENAI_API_KEY; required for api.openai.com / openrouter.ai only;
    the environment's key goes only to api.openai.com, the OPENAI_BASE_URL host or
    TRENDREEL_PROVIDER_HOSTS), ``model`` (TRENDREEL_TTS_MODEL, default gpt-4o-mini-tts; tts-1 /
    tts-1-hd work too), ``voice`` (TRENDREEL_TTS_VOICE, default alloy), ``instructions``
    (gpt-4o-mini-tts only), ``speed``, ``sample_rate`` (24000), ``timeout`` (seconds).
    """

    name = engine = OPENAI

    def __init__(self, ctx: StageContext, *, client: httpx.Client | None = None) -> None:
        super().__init__(ctx)
        self.base_url = _base_url(
            ctx, OPENAI, self.setting("base_url", "OPENAI_BASE_URL", default=OPENAI_BASE_URL), "OPENAI_BASE_URL"
        )
        self.api_key = self.secret(
            "api_key",
            "OPENAI_API_KEY",
            url=self.base_url,
            hosts=[OPENAI_BASE_URL, os.environ.get("OPENAI_BASE_URL")],
            required=key_required(self.base_url),
        )
        self.model = str(self.setting("model", "TRENDREEL_TTS_MODEL", default=OPENAI_MODEL))
        self.voice = str(self.setting("voice", "TRENDREEL_TTS_VOICE", default=OPENAI_VOICE))
        self.instructions = self.setting("instructions")
        speed = self.setting("speed")
        self.speed = as_float(speed, low=0.25, high=4.0) if speed is not None else None
        if speed is not None and self.speed is None:
            raise PermanentStageError(
                f"{OPENAI}: speed must be a number, got {str(speed)[:40]!r}",
                hint=f"fix {setting_path(ctx, OPENAI, 'speed')}",
            )
        rate = float_setting(ctx, OPENAI, "sample_rate", OPENAI_RATE)
        if not 8000 <= rate <= 96000:
            raise PermanentStageError(
                f"{OPENAI}: sample_rate {rate:g} is not 8000-96000",
                hint=f"fix {setting_path(ctx, OPENAI, 'sample_rate')}",
            )
        self.sample_rate = int(rate)
        self.timeout = float_setting(ctx, OPENAI, "timeout", DEFAULT_TIMEOUT)
        self.client = client
        self.hint_setting = f'theme.settings["{ctx.stage}"]["{OPENAI}"]: api_key (OPENAI_API_KEY), model, voice, base_url (OPENAI_BASE_URL)'

    def synthesize(self, text: str, *, previous: str = "", following: str = "") -> Speech:
        body: dict[str, Any] = {"model": self.model, "input": text, "voice": self.voice, "response_format": "wav"}
        if self.instructions:
            body["instructions"] = str(self.instructions)
        if self.speed is not None:
            body["speed"] = self.speed
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        client = self.client or self.new_client(self.timeout)
        try:
            response = self.request("POST", f"{self.base_url}/audio/speech", client=client, json=body, headers=headers)
        finally:
            if self.client is None:
                client.close()
        self.ctx.usage.add(usage_key(OPENAI, self.base_url, "api.openai.com", self.model), tts_characters=len(text))
        data = response.content
        hint = "check the openai base_url and model: /audio/speech must return audio"
        try:
            if data[:4] == b"RIFF":
                samples, rate = decode_wav(data)
                samples = resample(samples, rate, self.sample_rate)
            elif data[:1] in (b"{", b"[", b"<") or not data:
                raise NotAudio(
                    f"got {response.headers.get('content-type') or 'no content type'}, {len(data)} bytes, not audio"
                )
            else:  # a server that ignored response_format (mp3, ogg...): ffmpeg reads it
                samples = decode_with_ffmpeg(self.ctx, data, self.sample_rate)
        except NotAudio as exc:
            raise PermanentStageError(f"{OPENAI} returned audio that cannot be decoded: {exc}", hint=hint) from None
        check_audio(samples, self.sample_rate, text, OPENAI)
        return Speech(samples=samples, sample_rate=self.sample_rate)


def _base_url(ctx: StageContext, provider: str, value: Any, env: str) -> str:
    url = str(value).strip().rstrip("/")
    if urlsplit(url).scheme not in ("http", "https"):
        raise PermanentStageError(
            f"{provider}: base_url {url[:80]!r} is not http(s)",
            hint=f"fix {setting_path(ctx, provider, 'base_url', env)}",
        )
    return url
