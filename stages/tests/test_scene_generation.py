from __future__ import annotations

import time

import pytest
from PIL import Image, ImageChops

from stages import scene_generation
from stages.base import PermanentStageError, StageAborted
from stages.providers.cards import (
    CAPTION_ZONE,
    SAFE_BOX,
    TEXT_BOX,
    CardRenderer,
    CardSpec,
    has_glyph,
    renderable,
)
from stages.providers.template import TemplateWriter
from stages.tests.helpers import make_context

TOPIC = {
    "trend_id": 7,
    "title": "Raspberry Pi 6 launches with a built-in AI accelerator",
    "summary": "The 8GB model costs $80 and ships in March. Early benchmarks show the NPU running small models fast.",
    "url": "https://www.raspberrypi.com/news/raspberry-pi-6/",
    "source": "Hacker News",
    "keywords": ["raspberry pi", "ai"],
    "hashtags": ["#RaspberryPi", "#AI"],
    "angle": "",
    "related": [],
}
SCRIPT = {
    "title": TOPIC["title"],
    "hook": "Chips just got cheaper.",
    "segments": [
        {"id": "hook", "narration": "Chips just got cheaper.", "headline": "Chips just got cheaper"},
        {
            "id": "beat1",
            "narration": "Raspberry Pi 6 launches with an AI accelerator.",
            "headline": "Raspberry Pi 6 launches",
        },
        {"id": "beat2", "narration": "The 8GB model costs $80 and ships in March.", "headline": "8GB model costs $80"},
        {
            "id": "beat3",
            "narration": "Early benchmarks show the NPU running small models fast.",
            "headline": "Early benchmarks show the NPU running",
        },
        {"id": "beat4", "narration": "Cheap local AI is getting real.", "headline": "Cheap local AI is getting real"},
        {"id": "cta", "narration": "Follow for more stories like this.", "headline": "Follow for more"},
    ],
    "cta": "Follow for more stories like this.",
    "hashtags": ["#RaspberryPi", "#AI", "#EdgeAI"],
    "description": "…",
    "target_seconds": 30,
    "word_count": 40,
    "words_per_second": 2.5,
    "notes_applied": [],
    "writer": "template",
}


def _ctx(tmp_path, script=None, log=None, settings=None):
    return make_context(
        tmp_path,
        "scene_generation",
        theme={"settings": {"scene_generation": settings or {}}},
        upstream={"script_generation": script or SCRIPT, "trend_analysis": {"topic": TOPIC, "candidates": []}},
        progress_log=log,
    )


def _inside(box, outer) -> bool:
    return box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


def _drawn_area(spec: CardSpec):
    """Bounding box of every pixel the text layer changed on the card's own background."""
    renderer = CardRenderer()
    with_text = renderer.render(spec).image
    background = renderer.render(spec, with_text=False).image
    return ImageChops.difference(with_text, background).getbbox()


def test_it_renders_one_card_per_segment_in_order(tmp_path):
    log: list[tuple[float, str]] = []
    ctx = _ctx(tmp_path, log=log)
    result = scene_generation.run(ctx)

    scenes = result.output["scenes"]
    assert [s["segment"] for s in scenes] == [s["id"] for s in SCRIPT["segments"]]
    assert [s["image"] for s in scenes] == [f"scene-0{i}.png" for i in range(1, 7)]
    for scene in scenes:
        assert (scene["width"], scene["height"]) == (1080, 1920)
        with Image.open(ctx.work_dir / scene["image"]) as image:
            assert image.format == "PNG"
            assert image.size == (1080, 1920)
            assert image.mode == "RGB"
    assert [(a.path, a.kind) for a in result.artifacts] == [(s["image"], "image") for s in scenes]
    style = result.output["style"]
    assert style["renderer"] == "cards"
    assert style["text_box"] == list(TEXT_BOX)
    assert style["safe_zone"] == {"top": 130, "bottom": 350, "left": 65, "right": 140}  # stages.look
    assert style["safe_box"] == [65, 130, 940, 1570]
    assert set(style["palette"]) == {"top", "bottom", "accent", "secondary", "ink"}
    # progress per scene, ending at 1.0
    assert [round(f, 3) for f, _ in log[1:]] == [round(i / 6, 3) for i in range(1, 7)]
    assert "scene 6/6 (cta)" in log[-1][1]


def test_it_renders_every_segment_of_a_written_script(tmp_path):
    script = TemplateWriter().write(TOPIC, {"target_seconds": 60}, [])
    ctx = _ctx(tmp_path, script=script)

    scenes = scene_generation.run(ctx).output["scenes"]

    assert len(scenes) == len(script["segments"])
    assert all((ctx.work_dir / s["image"]).stat().st_size > 50_000 for s in scenes)


def test_it_keeps_every_drawn_pixel_inside_the_safe_zone():
    specs = [
        CardSpec("Chips just got cheaper", 0, 6, TOPIC["title"], label="Tech pulse", footer="via Hacker News"),
        CardSpec("Early benchmarks show the NPU running", 3, 6, TOPIC["title"], label="Tech pulse"),
        CardSpec(
            "Supercalifragilisticexpialidocious antidisestablishmentarianism wins everything today",
            4,
            6,
            "glowing frog",
            label="A theme name far too long to fit beside the segment marker pill",
            footer="#Averyveryverylonghashtag #Anotherveryverylonghashtag #Third",
        ),
        CardSpec("W" * 80, 5, 6, "wide letters"),
    ]
    for spec in specs:
        card = CardRenderer().render(spec)
        for name, box in card.boxes.items():
            assert _inside(box, TEXT_BOX), (spec.headline, name, box)
        drawn = _drawn_area(spec)
        assert drawn is not None
        assert _inside(drawn, TEXT_BOX), (spec.headline, drawn)
        assert _inside(drawn, SAFE_BOX)
        assert drawn[3] <= CAPTION_ZONE[1]  # the caption area stays free for composition


def test_it_fits_long_headlines_by_shrinking_the_type():
    short = CardRenderer().render(CardSpec("AI wins", 1, 5, "x"))
    long = CardRenderer().render(CardSpec("Early benchmarks show the NPU running small models", 1, 5, "x"))

    short_h = short.boxes["headline"][3] - short.boxes["headline"][1]
    long_lines_h = long.boxes["headline"][3] - long.boxes["headline"][1]
    assert long_lines_h > short_h  # wrapped onto more lines
    assert _inside(long.boxes["headline"], TEXT_BOX)


def test_it_draws_accented_headlines_and_drops_glyphs_the_font_lacks():
    renderer = CardRenderer()
    accented = CardSpec("Café Zürich: señor Ærøskøbing", 1, 5, "seed")
    drawn = _drawn_area(accented)
    assert drawn is not None and drawn[2] - drawn[0] > 300

    plain = renderer.render(CardSpec("Cafe Zurich: senor AEroskobing", 1, 5, "seed")).image
    assert ImageChops.difference(renderer.render(accented).image, plain).getbbox() is not None

    assert has_glyph("é") and has_glyph("ñ") and not has_glyph("🚀") and not has_glyph("東")
    assert renderable("Launch 🚀 day ✨ in 東京") == "Launch day in"
    with_emoji = renderer.render(CardSpec("Launch 🚀 day", 2, 5, "seed")).image
    without = renderer.render(CardSpec("Launch day", 2, 5, "seed")).image
    assert ImageChops.difference(with_emoji, without).getbbox() is None  # no tofu box drawn


def test_it_falls_back_to_the_theme_name_when_the_font_has_no_glyphs_for_a_headline():
    card = CardRenderer().render(CardSpec("東京で新しいAIロボット", 1, 5, "東京", label="Tech pulse"))

    assert card.headline == "Tech pulse"


def test_it_draws_the_same_card_for_the_same_input_and_varies_the_background_per_segment():
    renderer = CardRenderer()
    a = renderer.render(CardSpec("Same words", 1, 5, TOPIC["title"])).image
    b = renderer.render(CardSpec("Same words", 1, 5, TOPIC["title"])).image
    c = renderer.render(CardSpec("Same words", 2, 5, TOPIC["title"])).image
    other_topic = renderer.render(CardSpec("Same words", 1, 5, "A different story")).image

    assert a.tobytes() == b.tobytes()
    assert ImageChops.difference(a, c).getbbox() is not None
    assert ImageChops.difference(a, other_topic).getbbox() is not None
    # the background has structure (shapes, gradient), not one flat colour a zoom would hide
    background = renderer.render(CardSpec("x", 0, 1, TOPIC["title"]), with_text=False).image
    assert len(background.resize((108, 192)).getcolors(maxcolors=100_000)) > 500


def test_it_stops_between_scenes_when_cancelled(tmp_path):
    ctx = _ctx(tmp_path)

    def report(fraction: float, message: str) -> None:
        if message.startswith("scene 2/"):
            ctx.abort.abort("cancelled")

    ctx.report = report
    with pytest.raises(StageAborted):
        scene_generation.run(ctx)
    assert sorted(p.name for p in ctx.work_dir.iterdir()) == ["scene-01.png", "scene-02.png"]


def test_it_does_nothing_when_cancelled_before_it_starts(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.abort.abort("cancelled")

    with pytest.raises(StageAborted):
        scene_generation.run(ctx)
    assert list(ctx.work_dir.iterdir()) == []


def test_it_needs_script_segments(tmp_path):
    with pytest.raises(PermanentStageError, match="needs the output of script_generation"):
        scene_generation.run(make_context(tmp_path, "scene_generation"))
    with pytest.raises(PermanentStageError, match="has no segments"):
        scene_generation.run(_ctx(tmp_path, script={**SCRIPT, "segments": []}))
    with pytest.raises(PermanentStageError, match=r"segments\[1\] has no id or headline"):
        scene_generation.run(_ctx(tmp_path, script={**SCRIPT, "segments": [SCRIPT["segments"][0], {"id": "beat1"}]}))
    with pytest.raises(PermanentStageError, match="provider 'dall-e' is unknown"):
        scene_generation.run(_ctx(tmp_path, settings={"provider": "dall-e"}))


def test_it_renders_six_scenes_quickly(tmp_path):
    ctx = _ctx(tmp_path)
    started = time.process_time()  # CPU time: other jobs on a busy CI machine do not count
    scene_generation.run(ctx)
    elapsed = time.process_time() - started

    # ~0.65 s measured on the 2-core dev machine; the bound catches a regression (grain, full-size blurs).
    assert elapsed < 3.0, f"6 scenes took {elapsed:.2f} s of CPU"
    assert len(list(ctx.work_dir.glob("scene-*.png"))) == 6


def test_the_theme_style_sets_the_palette_and_bad_values_are_refused(tmp_path):
    from PIL import Image

    from stages.base import PermanentStageError
    from stages.providers.cards import palette_for

    assert palette_for("x", 0, hue=210, accent="#ffcc00").accent == (255, 204, 0)
    assert palette_for("x", 0, hue=210).top == palette_for("something else", 0, hue=210).top
    script = {"segments": [{"id": "hook", "narration": "Hi there.", "headline": "Hi there"}]}
    up = {"script_generation": script, "trend_analysis": {"topic": {"title": "A topic", "source": "x"}}}
    styled = make_context(
        tmp_path / "a",
        "scene_generation",
        theme={"settings": {"scene_generation": {"style": {"hue": 10, "accent": "#ff0000"}}}},
        upstream=up,
    )
    plain = make_context(tmp_path / "b", "scene_generation", upstream=up)
    a = scene_generation.run(styled).output["scenes"][0]["image"]
    b = scene_generation.run(plain).output["scenes"][0]["image"]
    assert Image.open(styled.work_dir / a).getpixel((20, 20)) != Image.open(plain.work_dir / b).getpixel((20, 20))
    bad = make_context(
        tmp_path / "c",
        "scene_generation",
        theme={"settings": {"scene_generation": {"style": {"accent": "red"}}}},
        upstream=up,
    )
    with pytest.raises(PermanentStageError, match="accent"):
        scene_generation.run(bad)


def test_headline_words_are_not_broken_when_a_smaller_size_keeps_them_whole():
    from stages.providers.cards import fit_headline

    text = "Oslo-based lab's Fjord-2B model"
    _, lines, _ = fit_headline(text, 1080 - 2 * 96, 1000)
    # lines rejoin to the headline exactly: breaks only between words or after a word's own hyphen
    assert "".join(line if line.endswith("-") else line + " " for line in lines).strip() == text, lines
    _, lines, _ = fit_headline("Supercalifragilisticexpialidocious-level engineering", 500, 1000)
    assert lines  # a word too long for any size is still split rather than dropped
