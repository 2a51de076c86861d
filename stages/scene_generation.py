"""Stage: scene_generation. One scene image per script segment, in speaking order, in the theme's
frame (``stages.look``: 1080x1920 by default, 1080x1080 or 1920x1080).

Each card shows the segment's key phrase, not its sentence: the captions carry the spoken words,
so a headline that repeats the narration (``stages.scripts.duplicates``) is replaced by the
facts in it (``card_text``: "Fjord-2B · 9 tokens/s") or left out (a picture-only card).

Steps: read the script's segments and the provider chain (``theme.settings.scene_generation``
``providers``, e.g. ``["pexels", "cards"]``, or the older single ``provider``; default
``["cards"]``). For each segment the chain is tried in order:

* ``"pexels"`` (``stages.providers.pexels``): search Pexels with the segment's headline + the topic
  keywords, download the best portrait file (cached under ``MEDIA_ROOT/cache/pexels`` up to
  ``TRENDREEL_CACHE_MB``, probed before use), cover-fit it to 1080x1920, darken it a little and draw the card's headline/marker
  on top (the same text layout as the cards, so composition's safe-zone pan still holds). For
  ``media: "videos"`` the clip is kept beside the scene (``"clip"``) with an RGBA layer
  (``"overlay"``: the photo cards' darkening and the card's text): composition plays the clip
  under it. A frame at ~1 s, darkened and with the text drawn on, is the scene image
  (thumbnail, console, and the picture if the clip cannot be used).
  A failed search (no key, 401, 429, timeout, malformed answer) switches Pexels off for the rest of
  the run, once, recorded in ``provider_failures``; a segment without a usable hit falls through.
* ``"cards"``/``"offline"`` (the offline Pillow renderer) or a dotted path to a ``SceneRenderer``.

Each card is saved as ``scene-01.png``, ``scene-02.png``... (cancel is checked between scenes).

Targeted edits (issue 14): each scene has a ``key``, a hash of what it is made from (the card's
key phrase, position, look and frame, the provider chain and its settings, the scene edit with its
take). A re-run with ``ctx.base_output`` links every scene whose key is unchanged from
``ctx.base_dir`` and makes only the others. Scene edits (``ctx.overrides["segments"][n]["scene"]``,
n from 1): ``text`` re-renders the card with that text; ``upload`` (a path under MEDIA_ROOT,
anything outside it refused; ``media`` image or video) uses the operator's picture, cover-fitted,
or clip, normalised to the frame at 30 fps H.264 without sound (composition loops or trims it to
the shot as it does stock clips); ``pick`` takes the next stock result not used before, or
offline another background of the same look (the same for the same pick number).

Output::

    {"scenes": [{"segment": <segment id>, "image": "scene-01.png", "width": 1080, "height": 1920,
                 "source": "pexels" | "card" | "upload", "provider": <chain name> | "upload",
                 "text": <the key phrase as drawn>, "boxes": {"badge" | "headline" | ...: [x0, y0, x1, y1]},
                 # pexels scenes only:
                 "query": "...", "pexels": {"id", "media", "url", "file", "photographer",
                                            "photographer_url", "text"},
                 # videos only:
                 "clip": "clip-01.mp4", "clip_seconds": 12.5, "overlay": "text-01.png",
                 # targeted edits:
                 "key": "<sha256>", "reused": bool, "override": {<the scene edit>},
                 "upload": "<path under MEDIA_ROOT>", "media": "image" | "video"}],
     "style": {"renderer", "palette", "font", "size", "safe_box", "safe_zone", "text_box", "caption_zone",
               "max_zoom"},
     "provider": "pexels" | "cards" | "pexels,cards",  # who produced the scenes, in order of first use
     "provider_failures": [{"provider", "kind", "error", "hint", "segment"}],
     "credits": ["Photo by … on Pexels (https://www.pexels.com/photo/…)"]}

``style.caption_zone`` is the part of the safe zone the cards leave empty for captions;
``style.max_zoom`` is the largest Ken Burns zoom at which the card text stays clear of platform UI.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from stages import media
from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageError, StageResult
from stages.chain import Registry, run_chain
from stages.look import look_for
from stages.providers import pexels as pexels_provider
from stages.providers.cards import Card, CardRenderer, CardSpec, Layout, palette_for
from stages.scripts import card_text

PNG_COMPRESS_LEVEL = 3  # ~50 ms a card; level 6 is twice as slow for ~20 % smaller files


class SceneRenderer(Protocol):
    """Draws the scene for one segment; ``card.meta`` says where it came from (``source``...).
    A renderer may also describe its look for later stages (``style(seed)``)."""

    name: str

    def render(self, spec: CardSpec) -> Card: ...


PROVIDERS = Registry(
    "scene_generation",
    {
        "cards": "stages.providers.cards.CardRenderer",  # offline Pillow cards, the fallback
        "pexels": "stages.scene_generation.StockScenes",  # Pexels photos/videos under the card's text
    },
    default="cards",
    method="render",
    aliases={"offline": "cards"},
    plug_ins=True,
)


_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def theme_style(ctx: StageContext) -> dict[str, Any]:
    """The theme's visual style (``settings.scene_generation.style``): ``hue`` 0-360, ``accent`` #rrggbb."""
    style = ctx.stage_settings.get("style") or {}
    if not isinstance(style, dict):
        raise PermanentStageError(
            "scene_generation style must be an object", hint='e.g. {"hue": 210, "accent": "#ffcc00"}'
        )
    out: dict[str, Any] = {}
    if style.get("hue") is not None:
        hue = style["hue"]
        if not isinstance(hue, (int, float)) or isinstance(hue, bool) or not 0 <= hue <= 360:
            raise PermanentStageError(
                f"scene_generation style hue {hue!r} is not a number from 0 to 360", hint="fix the theme's style"
            )
        out["hue"] = float(hue)
    if style.get("accent") is not None:
        if not isinstance(style["accent"], str) or not _HEX.match(style["accent"]):
            raise PermanentStageError(
                f"scene_generation style accent {style['accent']!r} is not a #rrggbb colour",
                hint="fix the theme's style",
            )
        out["accent"] = style["accent"]
    return out


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


class SceneMiss(PermanentStageError):
    """Pexels had nothing usable for one segment: the next provider draws it; Pexels stays on."""


def run(ctx: StageContext) -> StageResult:
    script = ctx.output_of("script_generation")
    segments = _segments(script)
    topic = (ctx.upstream.get("trend_analysis") or {}).get("topic") or {}
    # The palette follows the topic, not the (operator-editable) video title, so a retitled
    # video keeps its look.
    seed = str(topic.get("title") or script.get("title") or ctx.job_id)
    source = str(topic.get("source") or "").strip()
    keywords = [str(k) for k in (topic.get("keywords") or ctx.theme.get("keywords") or []) if str(k).strip()]
    names = PROVIDERS.names(ctx)
    # Every renderer is built up front, so a typo in the chain fails before any network call
    # (Pexels reads its key on first use: a missing key is a failure the chain records).
    renderers: dict[str, SceneRenderer] = {name: PROVIDERS.resolve(ctx, name) for name in names}
    for renderer in renderers.values():
        if isinstance(renderer, StockScenes):
            renderer.keywords = keywords
    style_renderer = next((r for r in renderers.values() if callable(getattr(r, "style", None))), CardRenderer())
    look = look_for(ctx.theme.get("settings"))
    captions = look.captions.position if look.captions.style != "none" else "none"
    layout = Layout(look.frame.width, look.frame.height, look.frame.safe_zone, captions)
    total = len(segments)
    ctx.progress(0.0, f"making {total} scenes ({', '.join(names)})")

    edits = _scene_edits(ctx, total)
    specs: list[CardSpec] = []
    keys: list[str] = []
    for i, seg in enumerate(segments):
        footer = f"via {source}" if seg["id"] == "hook" and source and look.credit else ""
        spec = CardSpec(
            headline=card_text(seg),
            index=i,
            total=total,
            seed=seed,
            label=str(ctx.theme.get("name") or ""),
            footer=footer,
            counter=look.counter,
            layout=layout,
            search=seg["headline"],
            **theme_style(ctx),
        )
        edit = edits.get(i) or {}
        if isinstance(edit.get("text"), str):
            spec = replace(spec, headline=edit["text"])
        if edit.get("pick") is not None:
            spec = replace(spec, variant=int(edit["pick"]))
        specs.append(spec)
        keys.append(scene_key(ctx, spec, names, edit))

    # A re-run after an edit: every scene whose key is unchanged is linked from the last checkpoint.
    reused = _reuse(ctx, keys)
    # Stock footage the other scenes show, and what an edited "pick" scene showed before, is not
    # picked again.
    before = (ctx.base_output or {}).get("scenes") or []
    taken = list(reused.values()) + [before[i] for i, e in edits.items() if e.get("pick") and i < len(before)]
    for scene in taken:
        for renderer in renderers.values():
            if isinstance(renderer, StockScenes) and isinstance(scene, dict) and scene.get("pexels"):
                renderer.used.add(scene["pexels"].get("id"))

    scenes: list[dict[str, Any]] = []
    artifacts: list[ArtifactSpec] = []
    failures: list[dict[str, Any]] = []
    used: list[str] = []
    try:
        for i, (seg, spec, key) in enumerate(zip(segments, specs, keys, strict=True)):
            ctx.check_cancelled()
            name = f"scene-{i + 1:02d}.png"
            edit = edits.get(i) or {}
            if i in reused:
                scene = reused[i]
                how = "reused"
            elif edit.get("upload"):
                scene = _upload_scene(ctx, edit, i, layout)
                how = f"upload ({edit.get('media')})"
            else:
                scene = {"segment": seg["id"], "image": name, "width": layout.width, "height": layout.height}

                def attempt(provider: str, spec=spec) -> Card:
                    return renderers[provider].render(spec)

                card, report = run_chain(
                    ctx,
                    names,
                    attempt,
                    subject=f" for {seg['id']}",
                    unavailable=lambda name: renderers[name].off if isinstance(renderers[name], StockScenes) else None,
                    unwrap_single=False,
                )
                failures += [{**f, "segment": seg["id"]} for f in report["failures"]]
                if card.image.size != layout.size:
                    raise PermanentStageError(
                        f"scene renderer drew {card.image.size[0]}x{card.image.size[1]}, "
                        f"expected {layout.width}x{layout.height}"
                    )
                card.image.convert("RGB").save(ctx.work_dir / name, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
                scene.update({"source": "card", **card.meta, "provider": report["provider"]})
                # What was drawn over the picture, and where: composition's QC checks it against the
                # platforms' UI and the narration.
                scene["text"] = card.headline
                scene["boxes"] = {k: [int(v) for v in box] for k, box in card.boxes.items()}
                how = f"pexels {scene['pexels']['id']}" if scene["source"] == "pexels" else "card"
            scene.update(segment=seg["id"], key=key, reused=i in reused)
            if edit:
                scene["override"] = edit
            scenes.append(scene)
            if scene["provider"] not in used:
                used.append(scene["provider"])
            artifacts.append(ArtifactSpec(path=name, kind="image", label=f"Scene {i + 1}: {seg['id']}"))
            if scene.get("clip"):
                artifacts.append(ArtifactSpec(path=scene["clip"], kind="video", label=f"Clip {i + 1}: {seg['id']}"))
            ctx.progress((i + 1) / total, f"scene {i + 1}/{total} ({seg['id']}): {seg['headline'][:60]} [{how}]")
    finally:
        for renderer in renderers.values():
            close = getattr(renderer, "close", None)
            if callable(close):
                close()

    credits = list(dict.fromkeys(f"{s['pexels']['text']} ({s['pexels']['url']})" for s in scenes if s.get("pexels")))
    output = {
        "scenes": scenes,
        "style": _style(style_renderer, seed, layout),
        "provider": ",".join(used),
        "provider_failures": failures,
        "credits": credits,
    }
    return StageResult(output=output, artifacts=artifacts)


# -- targeted edits (issue 14) -------------------------------------------------------------------
SCENE_KEY_VERSION = 1
MAX_UPLOAD_SECONDS = 60.0  # an uploaded clip is cut to this; composition loops/trims it to its shot


def _scene_edits(ctx: StageContext, total: int) -> dict[int, dict[str, Any]]:
    """Scene edits by 0-based segment position (``overrides["segments"]["n"]["scene"]``, n from 1)."""
    out: dict[int, dict[str, Any]] = {}
    for key, edit in ((ctx.overrides or {}).get("segments") or {}).items():
        scene = edit.get("scene") if isinstance(edit, dict) else None
        try:
            n = int(key)
        except (TypeError, ValueError):
            continue
        if not isinstance(scene, dict) or not 1 <= n <= total:
            continue
        pick, text, upload = scene.get("pick"), scene.get("text"), scene.get("upload")
        if (
            (pick is not None and (not isinstance(pick, int) or isinstance(pick, bool) or pick < 0))
            or (text is not None and not isinstance(text, str))
            or (upload is not None and scene.get("media") not in ("image", "video"))
        ):
            raise PermanentStageError(
                f"scene edit {n} is malformed: {str(scene)[:200]}", hint="make the scene edit again"
            )
        out[n - 1] = dict(scene)
    return out


def scene_key(ctx: StageContext, spec: CardSpec, providers: list[str], edit: dict[str, Any]) -> str:
    """What a scene is made from: the card (key phrase, position, look, frame), the provider chain
    and its settings, the scene edit (its take included; an upload by its content)."""
    conf = {k: v for k, v in ctx.stage_settings.items() if k != "pexels"}
    pexels = {k: v for k, v in (ctx.stage_settings.get("pexels") or {}).items() if k != "api_key"}
    data: dict[str, Any] = {
        "v": SCENE_KEY_VERSION,
        "spec": asdict(spec),
        "providers": providers,
        "settings": conf,
        "pexels": pexels,
        "edit": edit,
    }
    if edit.get("upload"):
        data["upload"] = media.file_digest(upload_path(edit["upload"]))
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _reuse(ctx: StageContext, keys: list[str]) -> dict[int, dict[str, Any]]:
    """Scenes of the last checkpoint with the same key, linked into this run's folder under this
    run's names (``scene-03.png``...): {position: scene record}."""
    base = ctx.base_output or {}
    if ctx.base_dir is None or not isinstance(base.get("scenes"), list):
        return {}
    by_key = {s.get("key"): s for s in base["scenes"] if isinstance(s, dict) and s.get("key")}
    out: dict[int, dict[str, Any]] = {}
    for i, key in enumerate(keys):
        old = by_key.get(key)
        if old is None:
            continue
        names = {"image": f"scene-{i + 1:02d}.png", "clip": f"clip-{i + 1:02d}.mp4", "overlay": f"text-{i + 1:02d}.png"}
        files = {f: str(old[f]) for f in names if old.get(f)}
        sources = {f: (ctx.base_dir / name).resolve() for f, name in files.items()}
        if "image" not in files or not all(
            src.is_file() and ctx.base_dir.resolve() in src.parents for src in sources.values()
        ):
            continue
        scene = dict(old)
        for f, src in sources.items():
            media.link_or_copy(src, ctx.work_dir / names[f])
            scene[f] = names[f]
        out[i] = scene
    return out


def upload_path(relative: Any) -> Path:
    """An uploaded file, named relative to MEDIA_ROOT; anything that resolves outside it (``..``,
    an absolute path, a symlink out) is refused."""
    from django.conf import settings

    root = Path(settings.MEDIA_ROOT).resolve()
    if not isinstance(relative, str) or not relative.strip() or "\x00" in relative:
        raise PermanentStageError(f"scene upload {relative!r} is not a path", hint="upload the file again")
    path = (root / relative).resolve()
    if Path(relative).is_absolute() or root not in path.parents:
        raise PermanentStageError(
            f"scene upload {relative[:120]!r} is outside MEDIA_ROOT: refused", hint="upload the file again"
        )
    if not path.is_file():
        raise PermanentStageError(f"scene upload {relative[:120]!r} is missing", hint="upload the file again")
    return path


def _upload_scene(ctx: StageContext, edit: dict[str, Any], i: int, layout: Layout) -> dict[str, Any]:
    """An operator's image (cover-fitted to the frame) or clip (normalised to the frame, 30 fps,
    H.264, no sound; composition loops or trims it to the shot as it does stock clips)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    source = upload_path(edit.get("upload"))
    name = f"scene-{i + 1:02d}.png"
    scene: dict[str, Any] = {
        "image": name,
        "width": layout.width,
        "height": layout.height,
        "source": "upload",
        "provider": "upload",
        "upload": edit["upload"],
        "media": "video" if edit.get("media") == "video" else "image",
        "text": "",  # nothing drawn over an operator's own picture: the captions carry the words
        "boxes": {},
    }
    if scene["media"] == "image":
        try:
            with Image.open(source) as picture:
                image = ImageOps.exif_transpose(picture).convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise PermanentStageError(f"scene upload {source.name} is not a readable image: {exc}") from None
        image = ImageOps.fit(image, layout.size, method=Image.Resampling.LANCZOS)
        image.save(ctx.work_dir / name, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return scene
    clip = f"clip-{i + 1:02d}.mp4"
    w, h = layout.size
    fit = f"fps={media.VIDEO_FPS},scale={w}:{h}:force_original_aspect_ratio=increase:flags=bicubic,crop={w}:{h}"
    code, lines = media.run_ffmpeg(
        ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-i", str(source), "-t", f"{MAX_UPLOAD_SECONDS:g}"]
        + ["-an", "-vf", f"{fit},setsar=1,format=yuv420p", "-c:v", "libx264", "-preset", "superfast", "-crf", "18"]
        + ["-profile:v", "high", "-pix_fmt", "yuv420p", "-r", str(media.VIDEO_FPS), str(ctx.work_dir / clip)],
        ctx,
    )
    info = media.probe(ctx.work_dir / clip, ctx) if code == 0 else None
    if info is None or info.video_codec != "h264" or not info.duration:
        raise PermanentStageError(f"scene upload {source.name} could not be used as a clip: {' | '.join(lines[-3:])}")
    at = min(1.0, info.duration / 2)
    code, lines = media.run_ffmpeg(
        ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-ss", f"{at:.2f}", "-i", str(ctx.work_dir / clip)]
        + ["-frames:v", "1", str(ctx.work_dir / name)],
        ctx,
    )
    if code != 0 or not (ctx.work_dir / name).is_file():
        raise PermanentStageError(f"no frame could be taken from scene upload {source.name}: {' | '.join(lines[-3:])}")
    scene.update(clip=clip, clip_seconds=round(info.duration, 3))
    return scene


def _style(renderer: Any, seed: str, layout: Layout) -> dict[str, Any]:
    """The renderer's description of its look, for the frame in use (older renderers take no layout)."""
    try:
        return renderer.style(seed, layout)
    except TypeError:
        return renderer.style(seed)


class StockScenes:
    """The "pexels" provider: stock media under the card's text. One per run: the Pexels client is
    opened on first use, searches are remembered, each hit is used once if possible. A failure of
    the API itself (no key, 401, 429, a malformed answer) switches it ``off`` for the rest of the
    run; a segment without a usable hit (``SceneMiss``) just falls through to the next provider."""

    name = "pexels"
    MAX_HITS = 3  # hits tried per segment before it falls through to the next provider

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.keywords: list[str] = []
        self.overlay = CardRenderer()  # the cards' own text layer, so layout and safe zone match
        self.source: pexels_provider.PexelsSource | None = None
        self.off: StageError | None = None
        self.searches: dict[str, list[pexels_provider.Hit]] = {}
        self.used: set[Any] = set()
        self.failed: dict[Any, str] = {}  # hits whose files failed this run: not downloaded again

    def close(self) -> None:
        if self.source is not None:
            self.source.close()

    def render(self, spec: CardSpec) -> Card:
        try:
            return self._render(spec)
        except SceneMiss:
            raise
        except StageError as exc:
            self.off = exc  # the API itself failed: the other segments go straight to the next provider
            raise

    def _render(self, spec: CardSpec) -> Card:
        if self.source is None:
            self.source = pexels_provider.PexelsSource(self.ctx)
        source = self.source
        query = (
            pexels_provider.query_for(spec.search or spec.headline, self.keywords)
            or " ".join(self.keywords[:2])
            or "technology"
        )
        if query not in self.searches:
            self.searches[query] = source.search(query)
        hits = self.searches[query]
        if not hits:
            raise SceneMiss(f"pexels has no {source.media} for {query!r}")
        fresh = [h for h in hits if h.id not in self.used]
        if fresh and spec.variant:  # an operator's "another pick": the next result not used before
            shift = (spec.variant - 1) % len(fresh)
            fresh = fresh[shift:] + fresh[:shift]
        ordered = fresh + [h for h in hits if h.id in self.used]
        errors: list[str] = []
        for hit in ordered[: self.MAX_HITS]:
            self.ctx.check_cancelled()
            if hit.id in self.failed:
                errors.append(self.failed[hit.id])
                continue
            try:
                fetched = source.fetch(hit)
                card, extra = self._compose(fetched, spec, spec.index)
            except StageError as exc:
                errors.append(exc.message)
                self.failed[hit.id] = exc.message
                self.ctx.logger.info("scene_generation: pexels %s %s skipped: %s", hit.media, hit.id, exc.message)
                continue
            self.used.add(hit.id)
            card.meta = {"source": "pexels", "query": query, "pexels": fetched.credit(), **extra}
            return card
        raise SceneMiss(f"pexels: no usable {source.media} for {query!r} ({'; '.join(errors)})")

    def _compose(self, fetched: pexels_provider.Fetched, spec: CardSpec, index: int) -> tuple[Card, dict[str, Any]]:
        from PIL import Image

        extra: dict[str, Any] = {}
        still = fetched.path
        if fetched.hit.media == "video":
            clip = f"clip-{index + 1:02d}.mp4"
            pexels_provider.copy_into(fetched.path, self.ctx.work_dir / clip)
            still = self.ctx.work_dir / f".frame-{index + 1:02d}.png"
            at = min(1.0, (fetched.duration or 2.0) / 2)
            code, lines = media.run_ffmpeg(
                [
                    "-hide_banner",
                    "-nostdin",
                    "-y",
                    "-ss",
                    f"{at:.2f}",
                    "-i",
                    str(fetched.path),
                    "-frames:v",
                    "1",
                    str(still),
                ],
                self.ctx,
            )
            if code != 0 or not still.is_file():
                (self.ctx.work_dir / clip).unlink(missing_ok=True)
                raise PermanentStageError(
                    f"no frame could be taken from pexels video {fetched.hit.id}: {' '.join(lines[-2:])}"
                )
            extra["clip"] = clip
            extra["clip_seconds"] = round(float(fetched.duration or 0), 3)
            # composition plays the clip under this layer: the same darkening as the photo cards
            # (toward the palette's ink) with the card's text on top
            layer = f"text-{index + 1:02d}.png"
            ink = palette_for(spec.seed, spec.index, spec.hue, spec.accent).ink
            scrim = Image.new("RGBA", spec.layout.size, (*ink, round(255 * SCRIM)))
            Image.alpha_composite(scrim, self.overlay.text_layer(spec)).save(
                self.ctx.work_dir / layer, format="PNG", compress_level=PNG_COMPRESS_LEVEL
            )
            extra["overlay"] = layer
        try:
            pexels_provider.probe_photo(still)
            return photo_card(still, spec, self.overlay), extra
        finally:
            if still != fetched.path:
                still.unlink(missing_ok=True)


SCRIM = 0.42  # how far a photo is darkened toward the palette's ink so white type stays legible


def photo_card(path: Path, spec: CardSpec, overlay: CardRenderer) -> Card:
    """A photo cover-fitted to the frame, darkened, with the card's text layer drawn on top."""
    from PIL import Image, ImageOps

    with Image.open(path) as source:
        image = ImageOps.exif_transpose(source).convert("RGB")
    image = ImageOps.fit(image, spec.layout.size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.45))
    pal = palette_for(spec.seed, spec.index, spec.hue, spec.accent)
    image = Image.blend(image, Image.new("RGB", image.size, pal.ink), SCRIM)
    card = Card(image=image)
    # The cards' own text drawing (marker, headline, footer), so layout and safe zone are identical.
    overlay._draw_text(card, spec, pal)
    return card
