"""Targeted edits (issue 14) in the script and the voice: a re-run after an edit changes only the
edited segment, spends nothing on what it keeps, and leaves the timings in sync."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from stages import script_generation
from stages.base import PermanentStageError
from stages.providers.template import TemplateWriter
from stages.scripts import FIELDS, validate_script
from stages.tests.helpers import make_context
from stages.tests.test_script_generation import TOPIC
from stages.text import count_words


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
