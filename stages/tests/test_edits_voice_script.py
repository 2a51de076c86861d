"""Targeted edits (issue 14) in the script and the voice: a re-run after an edit changes only the
edited segment, spends nothing on what it keeps, and leaves the timings in sync."""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, ClassVar

import numpy as np
import pytest

from stages import captions, publish, qc, script_generation, voiceover
from stages.base import PermanentStageError
from stages.providers.template import TemplateWriter
from stages.providers.tts import piper_available
from stages.scripts import FIELDS, validate_script
from stages.tests import test_cloud_tts as cloud
from stages.tests import test_llm as llm_tests
from stages.tests.fakeserver import FakeServer
from stages.tests.helpers import make_context
from stages.tests.test_script_generation import TOPIC
from stages.tests.test_voiceover import SCRIPT as VOICED
from stages.text import count_words, split_sentences


class RecordingWriter(TemplateWriter):
    """The template writer, counting its calls (a plug-in by dotted path, as a theme names one)."""

    name = "recording"
    calls: ClassVar[list[str]] = []

    def write(self, topic: dict[str, Any], theme: dict[str, Any], notes: list[str]) -> dict[str, Any]:
        RecordingWriter.calls.append(topic["title"])
        return super().write(topic, theme, notes)


RECORDING = {"script_generation": {"providers": [f"{__name__}.RecordingWriter"]}}


@pytest.fixture(autouse=True)
def _fresh_writer():
    RecordingWriter.calls.clear()


def script_run(tmp_path, *, overrides=None, base=None, attempt=1, notes=None):
    """One run of script_generation; ``base`` is the previous run's (output, work dir)."""
    ctx = make_context(
        tmp_path,
        "script_generation",
        theme={"settings": RECORDING},
        upstream={"trend_analysis": {"topic": TOPIC, "candidates": []}},
        overrides=overrides,
        base_output=base[0] if base else None,
        base_dir=base[1] if base else None,
        attempt=attempt,
        review_notes=notes,
    )
    return ctx, script_generation.run(ctx).output


NEW_LINE = "Schools can now run a language model on a board that costs eighty dollars."


def test_a_narration_edit_changes_only_that_segment_and_calls_no_writer(tmp_path):
    ctx1, first = script_run(tmp_path)
    assert len(RecordingWriter.calls) == 1
    assert first["overrides_applied"] == [] and first["base_reused"] is False

    edit = {"segments": {"3": {"narration": NEW_LINE}}}
    ctx2, second = script_run(tmp_path, overrides=edit, base=(first, ctx1.work_dir), attempt=2)

    assert len(RecordingWriter.calls) == 1  # no second write: no tokens spent, no other line rewritten
    assert second["base_reused"] is True
    assert second["overrides_applied"] == [{"index": 3, "segment": "beat2", "fields": ["narration"]}]
    for n, (old, new) in enumerate(zip(first["segments"], second["segments"], strict=True), start=1):
        if n == 3:
            assert new == {**old, "narration": NEW_LINE}
        else:
            assert new == old
    assert second["word_count"] == sum(count_words(s["narration"]) for s in second["segments"])
    assert second["word_count"] != first["word_count"]
    for key in ("title", "hook", "cta", "description", "hashtags", "provider", "patterns", "prompt_version"):
        assert second[key] == first[key]
    assert NEW_LINE in (ctx2.work_dir / "script.txt").read_text()
    assert json.loads((ctx2.work_dir / "script.json").read_text()) == second
    validate_script({k: second[k] for k in FIELDS})


def test_a_headline_edit_and_a_hook_edit_keep_hook_and_cta_fields_in_step(tmp_path):
    ctx1, first = script_run(tmp_path)
    last = len(first["segments"])
    edit = {
        "segments": {
            "1": {"narration": "Your next laptop might be a Pi."},
            "2": {"headline": "Eighty dollars, real AI"},
            str(last): {"narration": "Follow for the benchmarks."},
        }
    }
    _, second = script_run(tmp_path, overrides=edit, base=(first, ctx1.work_dir), attempt=2)
    assert second["hook"] == second["segments"][0]["narration"] == "Your next laptop might be a Pi."
    assert second["cta"] == second["segments"][-1]["narration"] == "Follow for the benchmarks."
    assert second["segments"][1]["headline"] == "Eighty dollars, real AI"
    assert second["segments"][1]["narration"] == first["segments"][1]["narration"]
    assert [a["index"] for a in second["overrides_applied"]] == [1, 2, last]
    assert len(RecordingWriter.calls) == 1


def test_overrides_survive_a_later_rerun_and_apply_on_a_first_run_too(tmp_path):
    ctx1, first = script_run(tmp_path)
    one = {"segments": {"2": {"narration": NEW_LINE}}}
    ctx2, second = script_run(tmp_path, overrides=one, base=(first, ctx1.work_dir), attempt=2)
    both = {"segments": {"2": {"narration": NEW_LINE}, "4": {"headline": "Cases still fit"}}}
    _, third = script_run(tmp_path, overrides=both, base=(second, ctx2.work_dir), attempt=3)
    assert third["segments"][1]["narration"] == NEW_LINE
    assert third["segments"][3]["headline"] == "Cases still fit"
    assert [a["index"] for a in third["overrides_applied"]] == [2, 4]
    assert len(RecordingWriter.calls) == 1

    # A run with new operator notes writes again, and the edits still apply on top.
    _, fourth = script_run(tmp_path, overrides=both, base=(third, ctx2.work_dir), attempt=4, notes=["make it shorter"])
    assert len(RecordingWriter.calls) == 2
    assert fourth["base_reused"] is False
    assert fourth["segments"][1]["narration"] == NEW_LINE
    assert fourth["segments"][3]["headline"] == "Cases still fit"

    # With no base checkpoint at all (a first run), the writer writes and the edits apply on top.
    _, fresh = script_run(tmp_path, overrides=both, attempt=5)
    assert len(RecordingWriter.calls) == 3 and fresh["base_reused"] is False
    assert fresh["segments"] == third["segments"] and fresh["overrides_applied"] == third["overrides_applied"]


def as_rerun(ctx, number, overrides, base=None):
    """``ctx`` (made by another module's helper) as attempt ``number`` after an edit."""
    ctx.work_dir = ctx.work_dir.parent / f"attempt-{number}"
    ctx.work_dir.mkdir(parents=True)
    ctx.overrides, ctx.base_output, ctx.base_dir = overrides, *(base or (None, None))
    return ctx


def test_an_edit_spends_no_llm_tokens(tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TRENDREEL_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with FakeServer() as srv:
        srv.route("POST", llm_tests.PATH, llm_tests.chat(llm_tests.GOOD))
        ctx1 = as_rerun(llm_tests.ctx_for(tmp_path, srv), 1, {})
        first = script_generation.run(ctx1).output
        assert len(srv.requests) == 1
        edit = {"segments": {"4": {"narration": NEW_LINE}}}
        ctx2 = as_rerun(llm_tests.ctx_for(tmp_path, srv), 2, edit, (first, ctx1.work_dir))
        second = script_generation.run(ctx2).output
    assert len(srv.requests) == 1  # the local LLM server got no second request
    assert ctx2.usage.as_dict() == {}
    assert [s["narration"] for s in second["segments"]] == [
        NEW_LINE if n == 4 else s["narration"] for n, s in enumerate(first["segments"], start=1)
    ]
    assert (second["provider"], second["prompt_version"]) == (first["provider"], first["prompt_version"])


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"2": {"headline": "A headline far too long to fit on any card at all"}}, "segment 2 (beat1)"),
        ({"1": {"narration": "A hook that goes on and on for many more words than allowed."}}, "segment 1 (hook)"),
        ({"3": {"narration": "Nice \U0001f680 rocket."}}, "segment 3 (beat2)"),
        ({"9": {"narration": "No such segment."}}, "segment 9"),
    ],
)
def test_an_edit_that_breaks_the_contract_fails_naming_the_segment(tmp_path, edit, named):
    ctx1, first = script_run(tmp_path)
    with pytest.raises(PermanentStageError) as info:
        script_run(tmp_path, overrides={"segments": edit}, base=(first, ctx1.work_dir), attempt=2)
    assert named in info.value.message
    assert info.value.hint


# --- voiceover --------------------------------------------------------------------------------
SPOKEN = VOICED  # five sentences in four segments, the hook and beat 1 of two
ESPEAK = {"settings": {"voiceover": {"engine": "espeak-ng"}}}
EDITED_LINE = "Schools can run it in class."


def edited(script, number, narration):
    segments = [dict(s) for s in script["segments"]]
    segments[number - 1]["narration"] = narration
    return {**script, "segments": segments}


def voice_run(tmp_path, *, script=SPOKEN, theme=ESPEAK, overrides=None, base=None, attempt=1, upstream=None):
    ctx = make_context(
        tmp_path,
        "voiceover",
        theme=theme,
        upstream={"script_generation": script, **(upstream or {})},
        overrides=overrides,
        base_output=base[0] if base else None,
        base_dir=base[1] if base else None,
        attempt=attempt,
    )
    return ctx, voiceover.run(ctx).output


def characters(ctx) -> int:
    return sum(row.get("tts_characters", 0) for row in ctx.usage.as_dict().values())


def spoken_chars(*narrations: str) -> int:
    return sum(len(s) for n in narrations for s in split_sentences(voiceover.normalise_text(n)))


def assert_in_sync(out, wav):
    """The QC word-sync check (``stages.qc``): every onset of speech in the voice track has a word
    highlight within ``SYNC_TOLERANCE``, as a karaoke caption track would draw it; words are in
    order and tile their segments' windows."""
    words = captions.words_from(out)
    pictures = [
        captions.Picture(frame=round(w.start * captions.FPS), words=[i], highlight=i) for i, w in enumerate(words)
    ]
    track = captions.Track(style="karaoke", size=1, pictures=pictures, words=words)
    errors, onsets = qc.onset_errors_for(track, words, wav)
    assert onsets >= len(out["segments"])
    assert max(abs(e) for e in errors) <= qc.SYNC_TOLERANCE, errors
    assert max(abs(e) for e in qc.sync_errors(track, words)) <= 1 / captions.FPS
    for a, b in itertools.pairwise(words):
        assert a.start < a.end <= b.start
    windows = {w["segment"]: w for w in out["segments"]}
    for w in words:
        assert windows[w.segment]["start"] <= w.start < w.end <= windows[w.segment]["end"]
    for a, b in itertools.pairwise(out["segments"]):
        assert a["end"] == b["start"]


def assert_reused_in_place(first, second, old_dir, new_dir):
    """Each reused segment's speech (its file) sits in both tracks, sample for sample, where the
    outputs say (starts are rounded to 0.1 ms, hence the search over a few samples)."""
    reused = [
        (old, new) for old, new in zip(first["segment_audio"], second["segment_audio"], strict=True) if new["reused"]
    ]
    assert reused
    for folder, index in ((old_dir, 0), (new_dir, 1)):
        track, rate = qc.read_wav(folder / "voice.wav")
        for pair in reused:
            record = pair[index]
            piece, _ = qc.read_wav(new_dir / pair[1]["audio"])
            at = round(record["start"] * rate)
            assert any(np.array_equal(track[b : b + len(piece)], piece) for b in range(at - 2, at + 3)), record


def test_a_voice_rerun_speaks_only_the_changed_segment_and_splices_it_in(tmp_path):
    ctx1, first = voice_run(tmp_path)
    assert characters(ctx1) == first["tts_characters"] == spoken_chars(*(s["narration"] for s in SPOKEN["segments"]))
    assert [r["reused"] for r in first["segment_audio"]] == [False] * 4

    script = edited(SPOKEN, 3, EDITED_LINE)
    ctx2, second = voice_run(
        tmp_path,
        script=script,
        overrides={"segments": {"3": {"narration": EDITED_LINE}}},
        base=(first, ctx1.work_dir),
        attempt=2,
    )
    assert characters(ctx2) == second["tts_characters"] == spoken_chars(EDITED_LINE)
    assert [r["reused"] for r in second["segment_audio"]] == [True, True, False, True]
    for old, new in zip(first["segment_audio"], second["segment_audio"], strict=True):
        if new["reused"]:
            assert new["key"] == old["key"]
            for name in ("audio", "timings"):  # the same file, hard-linked from the base checkpoint
                assert os.stat(ctx2.work_dir / new[name]).st_ino == os.stat(ctx1.work_dir / old[name]).st_ino
    assert second["segment_audio"][2]["key"]["text"] == EDITED_LINE

    # Later segments moved by the new line's length; earlier ones did not move at all.
    shift = second["segment_audio"][3]["start"] - first["segment_audio"][3]["start"]
    assert shift != 0
    before = [w for w in first["words"] if w["segment"] in ("hook", "beat1")]
    assert [w for w in second["words"] if w["segment"] in ("hook", "beat1")] == before
    for old, new in zip(
        [w for w in first["words"] if w["segment"] == "cta"],
        [w for w in second["words"] if w["segment"] == "cta"],
        strict=True,
    ):
        assert new["start"] == pytest.approx(old["start"] + shift, abs=1e-3)
    assert_in_sync(second, ctx2.work_dir / "voice.wav")

    assert_reused_in_place(first, second, ctx1.work_dir, ctx2.work_dir)

    # The spliced track is the track a first run of the edited script makes (eSpeak NG varies a
    # sentence's length by a fraction of a millisecond between calls, hence the tolerance).
    _, fresh = voice_run(tmp_path, script=script, attempt=3)
    assert [w["text"] for w in fresh["words"]] == [w["text"] for w in second["words"]]
    assert [c["text"] for c in fresh["captions"]] == [c["text"] for c in second["captions"]]
    for a, b in zip(fresh["words"], second["words"], strict=True):
        assert (a["segment"], a["sentence"]) == (b["segment"], b["sentence"])
        assert abs(a["start"] - b["start"]) < 0.02
    assert abs(fresh["duration"] - second["duration"]) < 0.02


def test_a_whole_voice_edit_speaks_every_segment_again(tmp_path):
    ctx1, first = voice_run(tmp_path)
    ctx2, second = voice_run(tmp_path, overrides={"voice": "espeak-ng:en-gb"}, base=(first, ctx1.work_dir), attempt=2)
    assert second["voice"] == "en-gb" and second["voice_source"] == "override"
    assert not any(r["reused"] for r in second["segment_audio"])
    assert characters(ctx2) == characters(ctx1)
    assert {r["key"]["voice"] for r in second["segment_audio"]} == {"en-gb"}
    assert_in_sync(second, ctx2.work_dir / "voice.wav")


def test_a_segment_voice_or_a_new_take_respeaks_only_that_segment(tmp_path):
    ctx1, first = voice_run(tmp_path)
    own_voice = {"segments": {"2": {"voice": "en-gb", "voice_take": 1}}}
    ctx2, second = voice_run(tmp_path, overrides=own_voice, base=(first, ctx1.work_dir), attempt=2)
    assert [r["reused"] for r in second["segment_audio"]] == [True, False, True, True]
    assert second["segment_audio"][1]["key"] == {
        "engine": "espeak-ng",
        "voice": "en-gb",
        "text": SPOKEN["segments"][1]["narration"],
        "take": 1,
    }
    assert second["voice"] == "en-us"  # the video's voice is unchanged
    assert characters(ctx2) == spoken_chars(SPOKEN["segments"][1]["narration"])
    assert_in_sync(second, ctx2.work_dir / "voice.wav")

    # The edit state is cumulative: a later re-run with the same overrides reuses everything.
    ctx3, third = voice_run(tmp_path, overrides=own_voice, base=(second, ctx2.work_dir), attempt=3)
    assert all(r["reused"] for r in third["segment_audio"]) and characters(ctx3) == 0
    assert third["words"] == second["words"]

    # Another take of segment 4 (same voice): only it is spoken again.
    take = {"segments": {**own_voice["segments"], "4": {"voice_take": 1}}}
    ctx4, fourth = voice_run(tmp_path, overrides=take, base=(third, ctx3.work_dir), attempt=4)
    assert [r["reused"] for r in fourth["segment_audio"]] == [True, True, True, False]
    assert characters(ctx4) == spoken_chars(SPOKEN["segments"][3]["narration"])


def test_the_voice_chosen_from_past_results_is_spoken(tmp_path):
    chosen = {"trend_analysis": {"patterns": {"active": True, "chosen": {"voice": "espeak-ng:en-gb"}}}}
    _, out = voice_run(tmp_path, upstream=chosen)
    assert (out["engine"], out["voice"], out["voice_source"]) == ("espeak-ng", "en-gb", "pattern")
    # Publish records the voice as the feedback loop named it, so the next choice learns from this video.
    publishing = make_context(tmp_path, "publish", upstream={"voiceover": out})
    assert publish.made_with(publishing, SPOKEN, {}, "hook")["voice"] == "espeak-ng:en-gb"

    # The theme's explicit voice setting and an operator's edit both win over the pattern.
    explicit = {"settings": {"voiceover": {"engine": "espeak-ng", "voice": "en-us"}}}
    _, out = voice_run(tmp_path, theme=explicit, upstream=chosen, attempt=2)
    assert (out["voice"], out["voice_source"]) == ("en-us", "settings")
    _, out = voice_run(tmp_path, upstream=chosen, overrides={"voice": "en-sc"}, attempt=3)
    assert (out["voice"], out["voice_source"]) == ("en-sc", "override")

    # The pattern wins over the theme's plain voice; without any, the engine's default speaks.
    _, out = voice_run(tmp_path, theme={**ESPEAK, "voice": "en-us"}, upstream=chosen, attempt=4)
    assert (out["voice"], out["voice_source"]) == ("en-gb", "pattern")
    _, out = voice_run(tmp_path, attempt=5)
    assert (out["voice"], out["voice_source"]) == ("en-us", "default")


@pytest.mark.skipif(not piper_available(), reason="piper-tts and its voice are not installed")
def test_a_piper_rerun_reuses_the_other_segments_and_stays_in_sync(tmp_path):
    piper = {"voice": "", "settings": {"voiceover": {"engine": "piper"}}}
    short = SPOKEN
    for number, line in enumerate(
        ["Chips got cheaper.", "It costs eighty dollars. It ships soon.", "Fast.", "Follow."]
    ):
        short = edited(short, number + 1, line)
    ctx1, first = voice_run(tmp_path, theme=piper, script=short)
    assert first["engine"] == "piper"
    script = edited(short, 3, EDITED_LINE)
    ctx2, second = voice_run(tmp_path, theme=piper, script=script, base=(first, ctx1.work_dir), attempt=2)
    assert [r["reused"] for r in second["segment_audio"]] == [True, True, False, True]
    assert characters(ctx2) == spoken_chars(EDITED_LINE)
    assert_reused_in_place(first, second, ctx1.work_dir, ctx2.work_dir)
    assert_in_sync(second, ctx2.work_dir / "voice.wav")


def test_network_voices_are_reused_too_and_a_segment_may_speak_with_another_engine(tmp_path):
    def attempt(srv, number, overrides, base=None):
        ctx = as_rerun(cloud.ctx_for(tmp_path, srv, providers=("openai",)), number, overrides, base)
        out = voiceover.run(ctx).output
        cloud.assert_contract(ctx, out)
        return ctx, out

    with FakeServer() as srv:
        srv.route("POST", cloud.OA_PATH, [cloud.oa_reply(s) for s in [*cloud.SENTENCES, cloud.LONG]])
        ctx1, first = attempt(srv, 1, {})
        assert len(srv.requests) == 3
        ctx2, second = attempt(srv, 2, {"segments": {"2": {"voice": "shimmer"}}}, (first, ctx1.work_dir))
        assert [r.json()["voice"] for r in srv.requests[3:]] == ["shimmer"]
        assert characters(ctx2) == len(cloud.LONG)  # counted once (by the stage, or by a provider that bills)
        assert [r["reused"] for r in second["segment_audio"]] == [True, False, True]

        # Segment 2 in an offline voice (22050 Hz) inside the 24 kHz OpenAI track: resampled, no request.
        ctx3, third = attempt(srv, 3, {"segments": {"2": {"voice": "espeak-ng:en-us"}}}, (second, ctx2.work_dir))
        assert len(srv.requests) == 4
        assert third["sample_rate"] == 24000 and third["engine"] == "openai"
        assert third["segment_audio"][1]["key"]["engine"] == "espeak-ng"
        assert ctx3.usage.as_dict() == {"espeak-ng": {"tts_characters": len(cloud.LONG)}}
        window = third["segments"][1]
        beat = [w for w in third["words"] if w["segment"] == "beat1"]
        assert [w["text"] for w in beat] == cloud.LONG.split()
        assert all(window["start"] <= w["start"] < w["end"] <= window["end"] for w in beat)

        # The whole video in a voice that names its engine: that engine alone speaks, no request.
        _, fourth = attempt(srv, 4, {"voice": "espeak-ng:en-gb"}, (third, ctx3.work_dir))
        assert (fourth["engine"], fourth["voice"], fourth["provider"]) == ("espeak-ng", "en-gb", "espeak-ng")
        assert len(srv.requests) == 4


def test_a_missing_or_foreign_base_file_is_spoken_again_not_trusted(tmp_path):
    ctx1, first = voice_run(tmp_path)
    (ctx1.work_dir / first["segment_audio"][0]["timings"]).unlink()
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes((ctx1.work_dir / first["segment_audio"][1]["audio"]).read_bytes())
    records = [dict(r) for r in first["segment_audio"]]
    records[1]["audio"] = "../../elsewhere.wav"  # a record naming a file outside the base folder
    base = {**first, "segment_audio": records}
    ctx2, second = voice_run(tmp_path, base=(base, ctx1.work_dir), attempt=2)
    assert [r["reused"] for r in second["segment_audio"]] == [False, False, True, True]
    assert characters(ctx2) == spoken_chars(*(s["narration"] for s in SPOKEN["segments"][:2]))
    assert_in_sync(second, ctx2.work_dir / "voice.wav")
