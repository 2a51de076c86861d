"""Stage: scene_generation. One 1080x1920 card image per script segment, in speaking order.

Steps: read the script's segments, pick the renderer (``theme.settings.scene_generation.provider``:
``"cards"``, the offline Pillow default, or a dotted path to a ``SceneRenderer`` class), draw one
card per segment (checking for cancel between cards) and save ``scene-01.png``, ``scene-02.png``...

Output::

    {"scenes": [{"segment": <segment id>, "image": "scene-01.png", "width": 1080, "height": 1920}],
     "style": {"renderer", "palette", "font", "size", "safe_zone", "text_box", "caption_zone", "max_zoom"}}

``style.caption_zone`` is the part of the safe zone the cards leave empty for captions;
``style.max_zoom`` is the largest Ken Burns zoom at which the card text stays clear of platform UI.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult
from stages.providers.cards import HEIGHT, WIDTH, CardRenderer, CardSpec, SceneRenderer

PNG_COMPRESS_LEVEL = 3  # ~50 ms a card; level 6 is twice as slow for ~20 % smaller files


def get_renderer(settings: dict[str, Any]) -> SceneRenderer:
    """The configured renderer: "cards" (offline, default) or a dotted path to a renderer class."""
    provider = settings.get("provider") or "cards"
    if provider in {"cards", "offline"}:
        return CardRenderer()
    if not isinstance(provider, str) or "." not in provider:
        raise PermanentStageError(
            f"scene_generation provider {provider!r} is unknown",
            hint='set theme settings scene_generation.provider to "cards" or a dotted path to a renderer class',
        )
    try:
        obj = import_string(provider)
    except ImportError as exc:
        raise PermanentStageError(f"scene_generation provider {provider!r} cannot be imported: {exc}") from exc
    return obj() if isinstance(obj, type) else obj


def _segments(script: dict[str, Any]) -> list[dict[str, Any]]:
    segments = script.get("segments")
    if not isinstance(segments, list) or not segments:
        raise PermanentStageError("script_generation output has no segments", hint="re-run from script_generation")
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict) or not isinstance(seg.get("id"), str) or not isinstance(seg.get("headline"), str):
            raise PermanentStageError(
                f"script_generation segments[{i}] has no id or headline", hint="re-run from script_generation"
            )
    return segments


def run(ctx: StageContext) -> StageResult:
    script = ctx.output_of("script_generation")
    segments = _segments(script)
    topic = (ctx.upstream.get("trend_analysis") or {}).get("topic") or {}
    # The palette follows the topic, not the (operator-editable) video title, so a retitled
    # video keeps its look.
    seed = str(topic.get("title") or script.get("title") or ctx.job_id)
    source = str(topic.get("source") or "").strip()
    hashtags = [t for t in script.get("hashtags") or [] if isinstance(t, str)]
    renderer = get_renderer(ctx.stage_settings)
    total = len(segments)
    ctx.progress(0.0, f"rendering {total} scenes")

    scenes: list[dict[str, Any]] = []
    artifacts: list[ArtifactSpec] = []
    for i, seg in enumerate(segments):
        ctx.check_cancelled()
        footer = ""
        if seg["id"] == "hook" and source:
            footer = f"via {source}"
        elif seg["id"] == "cta" and hashtags:
            footer = " ".join(hashtags[:3])
        spec = CardSpec(
            headline=seg["headline"], index=i, total=total, seed=seed, label=str(ctx.theme.get("name") or ""), footer=footer
        )
        card = renderer.render(spec)
        if card.image.size != (WIDTH, HEIGHT):
            raise PermanentStageError(f"scene renderer drew {card.image.size[0]}x{card.image.size[1]}, expected {WIDTH}x{HEIGHT}")
        name = f"scene-{i + 1:02d}.png"
        card.image.convert("RGB").save(ctx.work_dir / name, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        scenes.append({"segment": seg["id"], "image": name, "width": WIDTH, "height": HEIGHT})
        artifacts.append(ArtifactSpec(path=name, kind="image", label=f"Scene {i + 1}: {seg['id']}"))
        ctx.progress((i + 1) / total, f"scene {i + 1}/{total} ({seg['id']}): {seg['headline'][:60]}")

    return StageResult(output={"scenes": scenes, "style": renderer.style(seed)}, artifacts=artifacts)
