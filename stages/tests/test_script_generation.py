from __future__ import annotations

import copy
import json
import re

import pytest

from stages import script_generation
from stages.base import PermanentStageError
from stages.providers.template import CTAS, HOOKS, OPENERS, TemplateWriter
from stages.script_generation import validate_script
from stages.scripts import OPERATOR_HOOK_MAX_WORDS, duplicates, parse_notes
from stages.scripts import WORDS_PER_SECOND as WPS
from stages.tests.helpers import make_context
from stages.text import count_words, is_emoji

TOPIC = {
    "trend_id": 7,
    "title": "Raspberry Pi 6 launches with a built-in AI accelerator",
    "summary": (
        "<p>The Raspberry Pi Foundation on Tuesday announced the <b>Raspberry Pi 6</b>, its first board with a "
        "dedicated neural processing unit. The 8GB model costs $80 and ships in March, while a 16GB version "
        "follows later this year.</p><p>Early benchmarks show the NPU running small language models at 20 tokens "
        "per second, roughly five times faster than the Pi 5 with a USB accelerator. Read more at "
        "https://example.com/pi6 &amp; more.</p><p>The foundation says existing cases and HATs remain compatible.</p>"
        '<p>The post Raspberry Pi 6 launches appeared first on <a href="https://blog.example">Example Blog</a>.</p>'
    ),
    "url": "https://www.raspberrypi.com/news/raspberry-pi-6/",
    "source": "Hacker News",
    "keywords": ["raspberry pi", "ai", "npu"],
    "hashtags": ["#RaspberryPi", "#AI", "#EdgeAI"],
    "angle": "Cheap local AI is getting real for hobbyists and schools",
    "related": [
        {
            "title": "Raspberry Pi 6 hands-on: the NPU is the story",
            "url": "https://www.theverge.com/pi6",
            "source": "The Verge",
        },
        {"title": "Pi 6 pricing and availability", "url": "https://arstechnica.com/pi6", "source": "Ars Technica"},
    ],
}


def _ctx(tmp_path, *, topic=None, seconds=30, notes=None, settings=None, log=None):
    return make_context(
        tmp_path,
        "script_generation",
        theme={"target_seconds": seconds, "settings": {"script_generation": settings or {}}},
        upstream={"trend_analysis": {"topic": topic or TOPIC, "candidates": []}},
        review_notes=notes,
        progress_log=log,
    )


def _all_text(script: dict) -> str:
    parts = [script["title"], script["hook"], script["cta"], *script["hashtags"]]
    for seg in script["segments"]:
        parts += [seg["narration"], seg["headline"]]
    return "\n".join(parts)


def _write(topic=None, seconds=30, notes=None) -> dict:
    return TemplateWriter().write(topic or TOPIC, {"target_seconds": seconds}, notes or [])


# --- sizing ---------------------------------------------------------------------------------


def test_it_sizes_a_30_second_script(tmp_path):
    log: list[tuple[float, str]] = []
    result = script_generation.run(_ctx(tmp_path, seconds=30, log=log))
    script = result.output

    ids = [s["id"] for s in script["segments"]]
    assert ids == ["hook", "beat1", "beat2", "beat3", "cta"]
    assert script["target_seconds"] == 30
    assert script["words_per_second"] == WPS
    assert 0.8 * 30 * WPS <= script["word_count"] <= round(30 * WPS)
    assert script["word_count"] == sum(count_words(s["narration"]) for s in script["segments"])
    assert count_words(script["hook"]) <= OPERATOR_HOOK_MAX_WORDS  # a named hook may use the contract's 8
    assert script["segments"][0]["narration"] == script["hook"]
    assert script["segments"][-1]["narration"] == script["cta"]
    assert script["writer"] == "template"
    assert script["notes_applied"] == []
    saved = json.loads((tmp_path / "script_generation" / "attempt-1.partial" / "script.json").read_text())
    assert saved == script
    assert [(a.path, a.kind) for a in result.artifacts] == [("script.json", "json"), ("script.txt", "text")]
    assert log[-1][0] == 1.0 and "words" in log[-1][1]


def test_it_sizes_a_60_second_script_with_more_beats(tmp_path):
    script = script_generation.run(_ctx(tmp_path, seconds=60)).output

    beats = [s for s in script["segments"] if s["id"].startswith("beat")]
    assert len(beats) == 6
    assert 0.8 * 60 * WPS <= script["word_count"] <= round(60 * WPS)
    # The concrete facts of the summary are spoken, without the feed's furniture.
    narration = " ".join(s["narration"] for s in script["segments"])
    assert "$80" in narration and "20 tokens per second" in narration
    assert "appeared first on" not in narration and "Read more" not in narration
    assert "http" not in narration and "<" not in narration and "&amp;" not in narration


def test_it_uses_the_theme_words_per_second(tmp_path):
    script = script_generation.run(_ctx(tmp_path, seconds=60, settings={"words_per_second": 2.0})).output

    assert script["words_per_second"] == 2.0
    assert script["word_count"] <= 120


def test_it_keeps_headlines_short_for_the_cards():
    for seconds in (30, 45, 60):
        for seg in _write(seconds=seconds)["segments"]:
            assert 1 <= count_words(seg["headline"]) <= 7
            assert len(seg["headline"]) <= 40
            assert not seg["headline"].endswith(".")


def test_it_writes_a_description_with_the_source_links():
    script = _write()

    description = script["description"]
    assert "https://www.raspberrypi.com/news/raspberry-pi-6/" in description
    assert "https://www.theverge.com/pi6" in description and "The Verge" in description
    assert description.rstrip().endswith("#RaspberryPi #AI #EdgeAI #NPU")
    assert script["hashtags"] == ["#RaspberryPi", "#AI", "#EdgeAI", "#NPU"]


# --- operator notes -------------------------------------------------------------------------


def test_it_replaces_the_hook_and_shortens_on_request(tmp_path):
    before = script_generation.run(_ctx(tmp_path / "a")).output
    after = script_generation.run(_ctx(tmp_path / "b", notes=["hook: Chips just got cheaper", "Shorter please"])).output

    assert after["hook"] == "Chips just got cheaper."
    assert after["segments"][0]["narration"] == "Chips just got cheaper."
    assert not duplicates(after["segments"][0]["headline"], after["hook"])  # the card shows a key phrase
    assert after["target_seconds"] == 22
    assert after["word_count"] < before["word_count"]
    assert after["word_count"] <= round(22 * WPS)
    assert any(n.startswith("shorter: target 30 s -> 22 s") for n in after["notes_applied"])
    assert 'hook replaced: "Chips just got cheaper."' in after["notes_applied"]


def test_it_compounds_repeated_length_notes():
    assert parse_notes(["shorter", "still too long"]).length_factor == pytest.approx(0.5625)
    assert parse_notes(["longer"]).length_factor == pytest.approx(1 / 0.75)
    longer = _write(seconds=30, notes=["a bit longer"])
    assert longer["target_seconds"] == 40
    assert longer["word_count"] > _write(seconds=30)["word_count"]


def test_it_drops_or_adds_hashtags_on_request():
    none = _write(notes=["No hashtags this time"])
    assert none["hashtags"] == []
    assert "#" not in none["description"]
    assert "no hashtags" in none["notes_applied"]

    more = _write(notes=["more hashtags"])
    assert len(more["hashtags"]) > len(_write()["hashtags"])
    assert len(more["hashtags"]) <= 10
    assert all(re.fullmatch(r"#\w+", t) for t in more["hashtags"])


def test_it_removes_avoided_words_everywhere_the_audience_sees_them():
    script = _write(seconds=60, notes=['avoid "Raspberry"'])

    assert "raspberry" not in _all_text(script).lower()
    description_prose = re.sub(r"https?://\S+", "", script["description"])
    assert "raspberry" not in description_prose.lower()
    assert "https://www.raspberrypi.com/news/raspberry-pi-6/" in script["description"]  # links stay intact
    assert any(n.startswith('avoid "Raspberry":') for n in script["notes_applied"])
    validate_script(script)


def test_it_replaces_title_and_cta_and_changes_tone():
    script = _write(
        notes=["title: The $80 board that runs AI", "cta: Tell me what you'd build with it", "tone: serious"]
    )

    assert script["title"] == "The $80 board that runs AI"
    assert script["cta"] == "Tell me what you'd build with it."
    assert script["segments"][-1]["narration"] == script["cta"]
    assert "tone: serious" in script["notes_applied"]
    serious_hooks = {
        h.format(s=s) for h in HOOKS["serious"]["subject"] for s in ("Raspberry Pi 6", "Raspberry Pi", "AI", "NPU")
    }
    assert script["hook"] in serious_hooks | set(HOOKS["serious"]["plain"])
    openers = {o for role in OPENERS.values() for o in role["serious"] if o}
    assert script["segments"][1]["narration"].startswith(tuple(openers))


def test_it_records_notes_it_has_no_rule_for():
    script = _write(notes=["Make the colours warmer\nshorter"])

    assert 'noted, no automatic rule: "Make the colours warmer"' in script["notes_applied"]
    assert any(n.startswith("shorter") for n in script["notes_applied"])


def test_it_trims_an_overlong_operator_hook():
    script = _write(notes=["hook: This is a very long hook that nobody could say in two seconds"])

    assert count_words(script["hook"]) == 8
    validate_script(script)


# --- determinism and robustness -------------------------------------------------------------


def test_it_writes_the_same_script_for_the_same_topic(tmp_path):
    first = script_generation.run(_ctx(tmp_path / "a", seconds=45)).output
    second = script_generation.run(_ctx(tmp_path / "b", seconds=45)).output
    assert first == second

    titles = [
        f"{name} ships a new open source robot kit"
        for name in ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark")
    ]
    scripts = [_write({**TOPIC, "title": t}) for t in titles]
    assert len({(s["hook"], s["cta"], s["segments"][1]["narration"][:12]) for s in scripts}) > 1


def test_it_trims_overlong_input_to_a_valid_script():
    topic = {
        **TOPIC,
        "title": "Breaking: " + "an extraordinarily long headline " * 62,  # ~2,000 characters
        "summary": ("This sentence repeats to simulate a feed that sends a whole article as its summary. " * 3000),
        "keywords": ["x" * 300, "robots"],
        "angle": "word " * 500,
    }
    assert len(topic["title"]) > 2000

    for seconds in (30, 60):
        script = TemplateWriter().write(topic, {"target_seconds": seconds}, [])
        validate_script(script)
        assert len(script["title"]) <= 100
        assert script["word_count"] <= seconds * WPS
        assert all(len(s["narration"]) < 600 for s in script["segments"])


def test_it_strips_emoji_from_speech_but_keeps_them_in_the_description():
    topic = {
        "trend_id": 9,
        "title": "🔥 Café Zürich’s façade robot goes viral 🤖✨ — señor García approves",
        "summary": "The robot 🤖 paints façades in Zürich. Locals love it 😍! Über 2 Mio. Aufrufe in 24 Stunden. 👨‍👩‍👧 Families queue to watch.",
        "url": "https://example.ch/robot",
        "source": "Le Monde 🇫🇷",
        "keywords": ["robot", "zürich"],
        "hashtags": ["#🔥", "#Zürich", "#Café", "#robot🤖"],
        "angle": "",
        "related": [],
    }
    script = TemplateWriter().write(topic, {"target_seconds": 30}, [])

    validate_script(script)
    spoken = " ".join(s["narration"] + " " + s["headline"] for s in script["segments"])
    assert not any(is_emoji(ch) for ch in spoken)
    assert "Zürich" in spoken and "façade" in spoken and "García" in spoken
    assert script["hashtags"][:3] == ["#Zürich", "#Café", "#Robot"]
    assert "🔥" in script["title"]
    assert "🔥 Café Zürich’s façade robot goes viral 🤖✨" in script["description"]


def test_it_writes_a_valid_script_for_a_bare_topic():
    topic = {
        "trend_id": 3,
        "title": "Show HN: I built a SQLite clone in 1,000 lines of Rust",
        "summary": "",
        "keywords": ["rust", "sqlite"],
    }
    for seconds in (30, 60):
        script = TemplateWriter().write(topic, {"target_seconds": seconds}, [])
        validate_script(script)
        narrations = [s["narration"] for s in script["segments"]]
        assert len(narrations) == len(set(narrations))  # thin material is never padded by repetition
        assert "Show HN" not in script["title"]
        assert "#SQLite" in script["hashtags"]


# --- the contract ---------------------------------------------------------------------------


def _break(script: dict, path: str, value) -> dict:
    broken = copy.deepcopy(script)
    target = broken
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        target = target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("title", KeyError, "title is missing"),
        ("title", "   ", "title is empty"),
        ("title", "x" * 101, "title has 101 characters"),
        ("segments.1.headline", "", "segments[1].headline"),
        ("segments.2.headline", "one two three four five six seven eight", "segments[2].headline"),
        ("segments.2.narration", 42, "segments[2].narration"),
        ("segments.1.id", "intro", "segments[1].id"),
        ("segments.1.narration", "Here is a rocket 🚀 launch.", "segments[1]"),
        ("hashtags", ["#Good", "#bad tag"], "hashtags[1]"),
        ("word_count", 3, "word_count"),
        ("target_seconds", "30", "target_seconds"),
        ("writer", None, "writer"),
        ("extra", 1, "extra is not part"),
    ],
)
def test_it_rejects_scripts_outside_the_contract(path, value, field):
    script = _write()
    validate_script(script)
    with pytest.raises(PermanentStageError) as err:
        validate_script(_break(script, path, value))
    assert field in err.value.message


def test_it_rejects_too_few_or_too_many_beats():
    script = _write()
    two = copy.deepcopy(script)
    del two["segments"][3]
    with pytest.raises(PermanentStageError, match="segments has 2 beats"):
        validate_script(two)

    seven = copy.deepcopy(script)
    beat = seven["segments"][1]
    seven["segments"][1:4] = [dict(beat, id=f"beat{i}") for i in range(1, 8)]
    with pytest.raises(PermanentStageError, match="segments has 7 beats"):
        validate_script(seven)


def test_it_rejects_narration_far_over_the_word_budget():
    script = _write()
    long = copy.deepcopy(script)
    long["segments"][2]["narration"] = "word " * 90
    long["word_count"] = sum(count_words(s["narration"]) for s in long["segments"])
    with pytest.raises(
        PermanentStageError, match=r"word_count is \d+ words, over 1.35x the budget of " + str(round(30 * WPS))
    ):
        validate_script(long)


class OverlongWriter:
    """A writer that ignores the budget: the stage must refuse its script."""

    name = "overlong"

    def write(self, topic, theme, notes):
        script = TemplateWriter().write(topic, theme, notes)
        beat = script["segments"][1]
        script["segments"][1:-1] = [dict(beat, id=f"beat{i}") for i in range(1, 9)]
        script["word_count"] = sum(count_words(s["narration"]) for s in script["segments"])
        return script


def test_it_fails_the_stage_permanently_when_the_writer_breaks_the_contract(tmp_path):
    ctx = _ctx(tmp_path, settings={"provider": "stages.tests.test_script_generation.OverlongWriter"})

    with pytest.raises(PermanentStageError, match="segments has 8 beats"):
        script_generation.run(ctx)
    assert not (ctx.work_dir / "script.json").exists()


def test_it_names_an_unknown_provider(tmp_path):
    with pytest.raises(PermanentStageError, match="provider 'gpt-9' is unknown"):
        script_generation.run(_ctx(tmp_path, settings={"provider": "gpt-9"}))
    with pytest.raises(PermanentStageError, match="cannot be imported"):
        script_generation.run(_ctx(tmp_path, settings={"provider": "stages.providers.nowhere.Writer"}))


def test_it_needs_a_topic_with_a_title(tmp_path):
    with pytest.raises(PermanentStageError, match="needs the output of trend_analysis"):
        script_generation.run(make_context(tmp_path, "script_generation"))
    with pytest.raises(PermanentStageError, match="topic.title is missing"):
        script_generation.run(_ctx(tmp_path, topic={**TOPIC, "title": "  "}))


def test_the_cta_templates_fit_the_card_headline_limits():
    for options in CTAS.values():
        for spoken, headline in options:
            assert count_words(headline) <= 7 and len(headline) <= 40
            assert spoken.endswith((".", "?", "!"))


def test_it_raises_a_target_too_short_for_hook_beats_and_cta():
    script = _write(seconds=5)

    validate_script(script)
    assert script["target_seconds"] == 15
    assert len(script["segments"]) == 5
    assert any(n.startswith("target 5 s raised to 15 s") for n in script["notes_applied"])


def test_it_ignores_an_operator_hook_with_nothing_to_say():
    script = _write(notes=["hook: 🔥🔥🔥", "cta: 🎉"])

    validate_script(script)
    assert count_words(script["hook"]) >= 3
    assert 'hook not replaced: nothing speakable in "🔥🔥🔥"' in script["notes_applied"]
    assert 'cta not replaced: nothing speakable in "🎉"' in script["notes_applied"]


def test_it_survives_malformed_markup_and_wordless_titles():
    topic = {
        "trend_id": 4,
        "title": ")[ 🔥",
        "summary": "<![weird <p>Solar panels got 30% cheaper this year.</p><p>Installers are booked out.",
        "keywords": [],
    }

    script = TemplateWriter().write(topic, {"target_seconds": 30}, [])

    validate_script(script)
    narration = " ".join(s["narration"] for s in script["segments"])
    assert "Solar panels got 30% cheaper this year." in narration
    assert "<" not in narration and ")[" not in narration


def test_the_theme_can_fix_the_number_of_beats(tmp_path):
    from stages.tests.helpers import make_context as ctx_for

    topic = {
        "title": "Open-source AI model runs on a Raspberry Pi",
        "summary": "It answers questions offline. It is fast. It is free.",
        "keywords": ["ai"],
        "hashtags": [],
        "angle": "",
        "related": [],
        "source": "x",
        "url": "https://x.example",
    }
    for beats in (3, 4):
        ctx = ctx_for(
            tmp_path / str(beats),
            "script_generation",
            theme={"settings": {"script_generation": {"beats": beats}}},
            upstream={"trend_analysis": {"topic": topic}},
        )
        segments = script_generation.run(ctx).output["segments"]
        assert len(segments) == beats + 2
