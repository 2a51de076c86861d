"""ElevenLabs and OpenAI-compatible TTS in the voiceover stage, against a local FakeServer."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import wave

import numpy as np
import pytest

from stages import voiceover
from stages.base import PermanentStageError, TransientStageError
from stages.media import ffmpeg_exe
from stages.providers.cloud_tts import alignment_words, decode_wav
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context

KEY = "xi-test-secret-9876"
VOICE = "voice123"
EL_PATH = f"/v1/text-to-speech/{VOICE}/with-timestamps"
OA_PATH = "/v1/audio/speech"
LONG = "The new board thinks for itself, and it costs eighty dollars."
SCRIPT = {
    "segments": [
        {"id": "hook", "narration": "Chips got cheaper.", "headline": "Chips got cheaper"},
        {"id": "beat1", "narration": LONG, "headline": "It thinks"},
        {"id": "cta", "narration": "Follow for more!", "headline": "Follow"},
    ]
}
SENTENCES = ["Chips got cheaper.", LONG, "Follow for more!"]
ONE = {"segments": [{"id": "hook", "narration": "Chips got cheaper.", "headline": "Chips"}]}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        "ELEVENLABS_API_KEY",
        "ELEVENLABS_BASE_URL",
        "ELEVENLABS_VOICE_ID",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 220 * t)).astype("<i2")


def seconds_for(text: str) -> float:
    return 0.3 + 0.05 * len(text)


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(samples, channels).astype("<i2").tobytes())
    return buf.getvalue()


def char_times(text: str) -> list[float]:
    # deliberately not proportional to characters, so word timing is distinguishable from the fallback
    d = seconds_for(text)
    return [round(d * (i / len(text)) ** 2, 4) for i in range(len(text))]


def el_reply(text: str, rate: int = 22050, audio: bytes | None = None) -> Reply:
    pcm = tone(seconds_for(text), rate).tobytes() if audio is None else audio
    times = char_times(text)
    return Reply(
        200,
        json={
            "audio_base64": base64.b64encode(pcm).decode(),
            "alignment": {
                "characters": list(text),
                "character_start_times_seconds": times,
                "character_end_times_seconds": times[1:] + [seconds_for(text)],
            },
        },
    )


def oa_reply(text: str, rate: int = 24000) -> Reply:
    return Reply(200, body=wav_bytes(tone(seconds_for(text), rate), rate), headers={"Content-Type": "audio/wav"})


def ctx_for(tmp_path, srv=None, *, providers=("elevenlabs",), script=SCRIPT, elevenlabs=None, openai=None, key=KEY):
    settings = {
        "providers": list(providers),
        "engine": "espeak-ng",  # what "offline" means in these chains: fast and always installed
        "elevenlabs": {"voice_id": VOICE, "timeout": 0.5, **({"api_key": key} if key else {})},
        "openai": {"model": "tts-1", "voice": "nova", "timeout": 0.5, **({"api_key": key} if key else {})},
    }
    if srv is not None:
        settings["elevenlabs"]["base_url"] = srv.url("")
        settings["openai"]["base_url"] = srv.url("/v1")
    settings["elevenlabs"].update(elevenlabs or {})
    settings["openai"].update(openai or {})
    return make_context(
        tmp_path, "voiceover", theme={"settings": {"voiceover": settings}}, upstream={"script_generation": script}
    )


def read_wav(path):
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


def assert_contract(ctx, out):
    samples, rate = read_wav(ctx.work_dir / "voice.wav")
    assert rate == out["sample_rate"]
    assert out["duration"] == pytest.approx(len(samples) / rate, abs=1e-3)
    windows = out["segments"]
    assert windows[0]["start"] == 0 and windows[-1]["end"] == out["duration"]
    for a, b in zip(windows, windows[1:], strict=False):
        assert a["end"] == b["start"]
    for cap in out["captions"]:
        assert 0 <= cap["start"] < cap["end"] <= out["duration"]
    assert KEY not in json.dumps(out)


# --- ElevenLabs -----------------------------------------------------------------------------


def test_elevenlabs_speaks_each_sentence_and_times_captions_from_its_alignment(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", EL_PATH, [el_reply(s) for s in SENTENCES])
        ctx = ctx_for(tmp_path, srv)
        out = voiceover.run(ctx).output
    assert out["engine"] == "elevenlabs" and out["provider"] == "elevenlabs" and out["provider_failures"] == []
    assert out["voice"] == VOICE and out["sample_rate"] == 22050
    assert_contract(ctx, out)
    assert [r.json()["text"] for r in srv.requests] == SENTENCES
    # each sentence is spoken knowing its neighbours (across segments), so the intonation flows
    assert [r.json().get("previous_text") for r in srv.requests] == [None, *SENTENCES[:-1]]
    assert [r.json().get("next_text") for r in srv.requests] == [*SENTENCES[1:], None]
    first = srv.requests[0]
    assert first.headers["xi-api-key"] == KEY
    assert first.query == "output_format=pcm_22050"
    assert first.json()["model_id"] == "eleven_multilingual_v2"
    assert KEY not in first.body.decode()

    beat = next(w for w in out["segments"] if w["segment"] == "beat1")
    lines = voiceover.split_lines(LONG)
    assert len(lines) == 2
    beat_caps = [c for c in out["captions"] if beat["start"] <= c["start"] < beat["end"]]
    assert [c["text"] for c in beat_caps] == [voiceover.caption_text(line.text) for line in lines]
    # the second line starts when ElevenLabs says its first word starts (not at a character share)
    expected = char_times(LONG)[lines[1].char]
    assert beat_caps[1]["start"] - beat["start"] == pytest.approx(expected, abs=0.002)
    share = seconds_for(LONG) * (len(lines[0].text) + 1) / (len(lines[0].text) + len(lines[1].text) + 2)
    assert abs(expected - share) > 0.3


def test_elevenlabs_429_with_retry_after_then_success(tmp_path):
    with FakeServer() as srv:
        srv.route(
            "POST",
            EL_PATH,
            [Reply(429, headers={"Retry-After": "0.2"}, json={"detail": "busy"}), el_reply(SENTENCES[0])],
        )
        out = voiceover.run(ctx_for(tmp_path, srv, script=ONE)).output
    assert out["engine"] == "elevenlabs" and len(srv.requests) == 2


def test_elevenlabs_500_then_success(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", EL_PATH, [Reply(500, json={"detail": "oops"}), el_reply(SENTENCES[0])])
        out = voiceover.run(ctx_for(tmp_path, srv, script=ONE)).output
    assert out["provider"] == "elevenlabs" and len(srv.requests) == 2


def test_elevenlabs_401_is_permanent_with_a_hint_and_no_key(tmp_path):
    with FakeServer() as srv:
        srv.route(
            "POST",
            EL_PATH,
            Reply(401, json={"detail": {"status": "invalid_api_key", "message": f"key {KEY} is invalid"}}),
        )
        with pytest.raises(PermanentStageError, match="401") as exc:
            voiceover.run(ctx_for(tmp_path, srv, script=ONE))
    assert "ELEVENLABS_API_KEY" in exc.value.hint
    assert KEY not in exc.value.message and KEY not in exc.value.hint
    assert len(srv.requests) == 1


def test_elevenlabs_without_a_key_names_the_setting(tmp_path):
    with pytest.raises(PermanentStageError, match="missing api_key") as exc:
        voiceover.run(ctx_for(tmp_path, None, script=ONE, key=None))
    assert "ELEVENLABS_API_KEY" in exc.value.hint


def test_elevenlabs_timeout_is_transient(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", EL_PATH, Reply(200, json={}, delay=1.0))
        with pytest.raises(TransientStageError, match="timed out"):
            voiceover.run(ctx_for(tmp_path, srv, script=ONE, elevenlabs={"timeout": 0.1}))


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(200, body=b"<html>not json</html>"), "not JSON"),
        (Reply(200, json={"alignment": None}), "no audio_base64"),
        (Reply(200, json={"audio_base64": "%%% not base64 %%%"}), "not valid base64"),
        (Reply(200, json={"audio_base64": base64.b64encode(b"abc").decode()}), "cannot be decoded"),
        (Reply(200, json={"audio_base64": base64.b64encode(bytes(44100)).decode()}), "silent"),
        (el_reply(SENTENCES[0], audio=tone(30, 22050).tobytes()), "implausible"),
    ],
)
def test_elevenlabs_malformed_answers_are_permanent(tmp_path, reply, message):
    with FakeServer() as srv:
        srv.route("POST", EL_PATH, reply)
        with pytest.raises(PermanentStageError, match=message):
            voiceover.run(ctx_for(tmp_path, srv, script=ONE))


def test_elevenlabs_mp3_is_decoded_with_ffmpeg(tmp_path):
    pcm = tone(seconds_for(SENTENCES[0]), 44100).tobytes()
    mp3 = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", "44100", "-ac", "1", "-i", "pipe:0", "-f", "mp3", "pipe:1"],
        input=pcm, capture_output=True, check=True,
    ).stdout  # fmt: skip
    with FakeServer() as srv:
        srv.route("POST", EL_PATH, el_reply(SENTENCES[0], audio=mp3))
        ctx = ctx_for(tmp_path, srv, script=ONE, elevenlabs={"output_format": "mp3_44100_128"})
        out = voiceover.run(ctx).output
    assert out["sample_rate"] == 44100 and out["engine"] == "elevenlabs"
    assert srv.requests[0].query == "output_format=mp3_44100_128"
    assert_contract(ctx, out)


# --- OpenAI-compatible /audio/speech --------------------------------------------------------


def test_openai_speaks_each_sentence_as_wav(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", OA_PATH, [oa_reply(SENTENCES[0]), oa_reply(LONG, rate=22050), oa_reply(SENTENCES[2])])
        ctx = ctx_for(tmp_path, srv, providers=("openai",))
        out = voiceover.run(ctx).output
    assert out["engine"] == "openai" and out["provider"] == "openai" and out["voice"] == "nova"
    assert out["sample_rate"] == 24000  # the 22050 Hz answer was resampled
    assert_contract(ctx, out)
    bodies = [r.json() for r in srv.requests]
    assert [b["input"] for b in bodies] == SENTENCES
    assert bodies[0] == {"model": "tts-1", "input": SENTENCES[0], "voice": "nova", "response_format": "wav"}
    assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_openai_429_then_success(tmp_path):
    with FakeServer() as srv:
        srv.route(
            "POST",
            OA_PATH,
            [Reply(429, headers={"Retry-After": "0.2"}, json={"error": "rate"}), oa_reply(SENTENCES[0])],
        )
        out = voiceover.run(ctx_for(tmp_path, srv, providers=("openai",), script=ONE)).output
    assert out["engine"] == "openai" and len(srv.requests) == 2


def test_openai_500_then_success(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", OA_PATH, [Reply(503), oa_reply(SENTENCES[0])])
        out = voiceover.run(ctx_for(tmp_path, srv, providers=("openai",), script=ONE)).output
    assert out["engine"] == "openai" and len(srv.requests) == 2


def test_openai_401_is_permanent_with_a_hint_and_no_key(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", OA_PATH, Reply(401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}}))
        with pytest.raises(PermanentStageError, match="401") as exc:
            voiceover.run(ctx_for(tmp_path, srv, providers=("openai",), script=ONE))
    assert "OPENAI_API_KEY" in exc.value.hint
    assert KEY not in exc.value.message


def test_openai_timeout_is_transient(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", OA_PATH, Reply(200, body=b"", delay=1.0))
        with pytest.raises(TransientStageError, match="timed out"):
            voiceover.run(ctx_for(tmp_path, srv, providers=("openai",), script=ONE, openai={"timeout": 0.1}))


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(200, json={"error": "model overloaded"}), "not audio"),
        (Reply(200, body=b"RIFF\x00\x00\x00\x00WAVEjunk"), "no data chunk"),
        (Reply(200, body=b"\x00\x01garbage that is no audio format"), "ffmpeg could not decode"),
        (Reply(200, body=wav_bytes(np.zeros(24000, dtype="<i2"), 24000)), "silent"),
    ],
)
def test_openai_malformed_answers_are_permanent(tmp_path, reply, message):
    with FakeServer() as srv:
        srv.route("POST", OA_PATH, reply)
        with pytest.raises(PermanentStageError, match=message):
            voiceover.run(ctx_for(tmp_path, srv, providers=("openai",), script=ONE))


# --- chain ----------------------------------------------------------------------------------


def test_the_chain_moves_from_elevenlabs_to_openai_and_records_it(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", EL_PATH, Reply(401, json={"detail": f"bad key {KEY}"}))
        srv.route("POST", OA_PATH, oa_reply(SENTENCES[0]))
        ctx = ctx_for(tmp_path, srv, providers=("elevenlabs", "openai", "offline"))
        out = voiceover.run(ctx).output
    assert out["provider"] == "openai" and out["engine"] == "openai"
    assert [f["provider"] for f in out["provider_failures"]] == ["elevenlabs"]
    assert out["provider_failures"][0]["kind"] == "permanent"
    assert_contract(ctx, out)


def test_the_chain_ends_offline_when_every_network_provider_fails(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", EL_PATH, Reply(500))
        srv.route("POST", OA_PATH, Reply(200, json={"error": "garbage"}))
        ctx = ctx_for(tmp_path, srv, providers=("elevenlabs", "openai", "offline"), script=ONE)
        out = voiceover.run(ctx).output
    assert out["provider"] == "offline" and out["engine"] == "espeak-ng"
    failures = {f["provider"]: f["kind"] for f in out["provider_failures"]}
    assert failures == {"elevenlabs": "transient", "openai": "permanent"}
    assert_contract(ctx, out)


def test_without_providers_the_offline_default_is_unchanged(tmp_path):
    ctx = make_context(
        tmp_path,
        "voiceover",
        theme={"settings": {"voiceover": {"engine": "espeak-ng"}}},
        upstream={"script_generation": ONE},
    )
    out = voiceover.run(ctx).output
    assert out["engine"] == "espeak-ng" and out["provider"] == "espeak-ng" and out["provider_failures"] == []


# --- helpers --------------------------------------------------------------------------------


def test_decode_wav_survives_streamed_placeholder_sizes_and_stereo():
    data = bytearray(wav_bytes(tone(0.5, 24000), 24000, channels=2))
    data[4:8] = b"\xff\xff\xff\xff"
    data[40:44] = b"\xff\xff\xff\xff"  # the data chunk's size, as a streaming server writes it
    samples, rate = decode_wav(bytes(data))
    assert rate == 24000 and len(samples) == 12000


def test_alignment_words_maps_character_times_to_word_starts():
    text = "Hi  there, you."
    chars = [c for c in text if c != " "]
    words = alignment_words(
        text, {"characters": chars, "character_start_times_seconds": [i * 0.1 for i in range(len(chars))]}
    )
    assert [(w.char, round(w.start, 2)) for w in words] == [(0, 0.0), (4, 0.2), (11, 0.8)]
    assert alignment_words(text, {"characters": list("nope"), "character_start_times_seconds": [0, 0, 0, 0]}) == []
    assert alignment_words(text, None) == []
