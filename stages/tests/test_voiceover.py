from __future__ import annotations

import itertools
import wave

import numpy as np
import pytest

from stages import voiceover
from stages.base import PermanentStageError, StageAborted
from stages.providers.tts import ESPEAK, PIPER, make_provider
from stages.tests.helpers import make_context

SCRIPT = {
    "title": "Raspberry Pi 6 launches with a built-in AI accelerator",
    "hook": "Chips just got cheaper.",
    "segments": [
        {
            "id": "hook",
            "narration": "Chips just got cheaper. And this one thinks for itself.",
            "headline": "Chips just got cheaper",
        },
        {
            "id": "beat1",
            "narration": "Raspberry Pi 6 launches with a built-in AI accelerator, and the 8GB model costs $80.",
            "headline": "Raspberry Pi 6 launches",
        },
        {
            "id": "beat2",
            "narration": "Early benchmarks show the NPU running small language models at twenty tokens a second.",
            "headline": "20 tokens a second",
        },
        {"id": "cta", "narration": "Follow for more tech news!", "headline": "Follow for more"},
    ],
    "cta": "Follow for more tech news!",
    "hashtags": ["#RaspberryPi", "#AI"],
}
ESPEAK_THEME = {"settings": {"voiceover": {"engine": "espeak-ng"}}}


def run_stage(tmp_path, script=SCRIPT, theme=ESPEAK_THEME, progress_log=None):
    ctx = make_context(
        tmp_path, "voiceover", theme=theme, upstream={"script_generation": script}, progress_log=progress_log
    )
    return ctx, voiceover.run(ctx)


def read_wav(path):
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, dtype="<i2"), wav.getframerate()


def test_it_times_captions_inside_segment_windows_that_tile_the_audio(tmp_path):
    log: list[tuple[float, str]] = []
    ctx, result = run_stage(tmp_path, progress_log=log)
    out = result.output

    assert out["engine"] == ESPEAK
    assert out["audio"] == "voice.wav"
    samples, rate = read_wav(ctx.work_dir / "voice.wav")
    assert rate == out["sample_rate"] == 22050
    assert abs(len(samples) / rate - out["duration"]) < 0.001

    windows = out["segments"]
    assert [w["segment"] for w in windows] == ["hook", "beat1", "beat2", "cta"]
    assert windows[0]["start"] == 0.0
    assert windows[-1]["end"] == out["duration"]
    for a, b in itertools.pairwise(windows):
        assert a["end"] == b["start"]  # no gaps, no overlaps
    assert all(w["end"] > w["start"] for w in windows)

    captions = out["captions"]
    assert len(captions) >= 8
    for a, b in itertools.pairwise(captions):
        assert a["start"] < a["end"] <= b["start"]
    for caption in captions:
        assert len(caption["text"].split()) <= 7
        assert len(caption["text"]) <= 32
        inside = [w for w in windows if w["start"] <= caption["start"] and caption["end"] <= w["end"]]
        assert len(inside) == 1, caption
    # Every spoken word shows up in a caption, in order.
    spoken = " ".join(seg["narration"] for seg in SCRIPT["segments"])
    shown = " ".join(c["text"] for c in captions)
    assert [w.strip(".,!?") for w in shown.split()] == [w.strip(".,!?") for w in spoken.split()]

    # A caption starts where its sentence's sound starts: silence just before, speech just after.
    beat2 = next(c for c in captions if c["text"].startswith("Early"))
    start = int(beat2["start"] * rate)
    before = samples[start - int(0.1 * rate) : start - int(0.03 * rate)]
    after = samples[start : start + int(0.3 * rate)]
    assert np.abs(before).max() < 400
    assert np.abs(after).max() > 3000

    assert result.artifacts[0].path == "voice.wav" and result.artifacts[0].kind == "audio"
    assert [f for f, _ in log] == sorted(f for f, _ in log)
    assert sum(": sentence" in message for _, message in log) == 5


def test_it_speaks_with_piper_by_default(tmp_path):
    ctx, result = run_stage(tmp_path, theme={"voice": "", "settings": {}})
    out = result.output

    assert out["engine"] == PIPER
    assert out["voice"] == "en_US-joe-medium"
    samples, rate = read_wav(ctx.work_dir / "voice.wav")
    assert rate == 22050
    words = sum(len(seg["narration"].split()) for seg in SCRIPT["segments"])
    assert words / 4.0 < out["duration"] < words / 1.5  # natural speech: 1.5-4 words a second
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    assert 20 * np.log10(rms / 32768) > -35  # real speech, not silence or hiss
    windows = out["segments"]
    assert windows[-1]["end"] == out["duration"]
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(windows))
    for caption in out["captions"]:
        assert any(w["start"] <= caption["start"] < caption["end"] <= w["end"] for w in windows), caption


def test_it_copes_with_emoji_and_non_ascii_text(tmp_path):
    script = {
        "segments": [
            {"id": "hook", "narration": "🚀🚀 São Paulo’s café scene — “wild” 👨‍👩‍👧 right now! 🔥", "headline": "x"},
            {
                "id": "beat1",
                "narration": "Crème brûlée costs 5€ at #TechWeek (see https://example.com/x) 👍🏽",
                "headline": "y",
            },
            {"id": "cta", "narration": "😀😀😀", "headline": "z"},
        ]
    }
    ctx, result = run_stage(tmp_path, script=script)
    out = result.output

    text = " ".join(c["text"] for c in out["captions"])
    assert "São Paulo's café scene" in text
    assert "Crème brûlée costs 5€ at TechWeek" in text
    assert not any(ord(ch) > 0x2FFF for ch in text)  # no emoji, joiners or variation selectors
    assert "http" not in text and "#" not in text
    # The emoji-only segment keeps a short silent window so its scene still shows.
    cta = out["segments"][-1]
    assert cta["segment"] == "cta" and cta["end"] - cta["start"] >= 1.0
    samples, rate = read_wav(ctx.work_dir / "voice.wav")
    assert abs(len(samples) / rate - out["duration"]) < 0.001


def test_it_rejects_a_script_with_nothing_to_say(tmp_path):
    script = {
        "segments": [
            {"id": "hook", "narration": "🔥🔥 👀", "headline": "x"},
            {"id": "cta", "narration": "  ", "headline": "y"},
        ]
    }
    with pytest.raises(PermanentStageError) as exc:
        run_stage(tmp_path, script=script)
    assert "narration is empty" in exc.value.message


def test_it_rejects_an_unknown_engine(tmp_path):
    with pytest.raises(PermanentStageError) as exc:
        run_stage(tmp_path, theme={"settings": {"voiceover": {"engine": "polly"}}})
    assert "polly" in exc.value.message


def test_it_stops_at_once_when_cancelled_before_it_starts(tmp_path):
    ctx = make_context(tmp_path, "voiceover", theme=ESPEAK_THEME, upstream={"script_generation": SCRIPT})
    ctx.abort.abort("cancelled")
    with pytest.raises(StageAborted):
        voiceover.run(ctx)
    assert not (ctx.work_dir / "voice.wav").exists()


def test_it_stops_between_sentences_when_cancelled(tmp_path):
    log: list[tuple[float, str]] = []
    ctx = make_context(tmp_path, "voiceover", theme=ESPEAK_THEME, upstream={"script_generation": SCRIPT})

    def report(fraction: float, message: str) -> None:
        log.append((fraction, message))
        if sum(": sentence" in m for _, m in log) == 3:
            ctx.abort.abort("cancelled")  # the operator presses cancel while sentence 3 is spoken

    ctx.report = report
    with pytest.raises(StageAborted):
        voiceover.run(ctx)
    assert sum(": sentence" in m for _, m in log) == 3
    assert not (ctx.work_dir / "voice.wav").exists()


def test_it_picks_the_engine_from_the_theme_voice():
    assert make_provider({}, "espeak-ng:en-gb").voice == "en-gb"
    assert make_provider({}, "en-gb").engine == ESPEAK
    assert make_provider({}, "en_US-joe-medium").engine == PIPER
    # The stage setting wins over the theme, and a Piper voice name is not handed to espeak.
    forced = make_provider({"engine": "espeak-ng"}, "en_US-joe-medium")
    assert (forced.engine, forced.voice) == (ESPEAK, "en-us")


def test_it_normalises_text_for_speech_and_captions():
    assert voiceover.normalise_text("Big news 🚀🔥 — it’s “here”…") == 'Big news, it\'s "here"...'
    assert voiceover.normalise_text("R&D at #OpenAI, see www.example.com!") == "R and D at OpenAI, see!"
    assert voiceover.normalise_text("👍🏽👨‍👩‍👧") == ""


def test_it_splits_sentences_but_not_abbreviations():
    text = "Dr. Smith moved to the U.S. in 2020. Wait... what? J. K. Rowling agreed! It costs $3.50."
    assert voiceover.split_sentences(text) == [
        "Dr. Smith moved to the U.S. in 2020.",
        "Wait... what?",
        "J. K. Rowling agreed!",
        "It costs $3.50.",
    ]


def test_it_breaks_caption_lines_at_commas_and_not_after_articles():
    lines = voiceover.split_lines(
        "Instead of shuttling data back and forth, the chip computes right where the numbers are stored."
    )
    texts = [line.text for line in lines]
    assert "data back and forth," in texts
    assert all(len(t) <= 32 and len(t.split()) <= 7 for t in texts)
    assert not any(t.split()[-1].lower() in {"the", "a", "of"} for t in texts[:-1])
    assert (
        " ".join(texts)
        == "Instead of shuttling data back and forth, the chip computes right where the numbers are stored."
    )
