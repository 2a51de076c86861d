"""Stage: composition. Scenes + voice + captions + music -> one H.264 short, checked before review.

Why it is built this way (measured, see /work/shared/NOTES-media.md and bench/RESULTS.md): zoompan
and ``-loop 1`` make a 30 s short cost 2.5-3x a plain encode, so every still is decoded and scaled
ONCE (to the scenes' ``max_zoom``, 108 %), repeated with the ``loop`` filter and panned by moving
a crop window (a pointer offset, no per-frame resampling), only as far as the card's text stays
inside the platforms' safe zone. Shots overlap by the transition's length and are joined with
``xfade`` (fade, slide, zoom; per theme). Captions are PNGs played by the concat demuxer and laid
on by a single ``overlay`` per piece (``stages.captions``). The soundtrack is mixed and normalised before the encode in
audio-only passes (``stages.mix``), in a thread while the captions are drawn. Steps:

1. Read the theme's look (``stages.look``), the voiceover (windows, words, WAV) and the scenes;
   match scenes to windows by segment.
2. Mix the soundtrack in a thread (ffmpeg does the work) while the captions (karaoke by default)
   are planned, the thumbnail is drawn and the picture is rendered.
3. Render the picture in pieces (each shot's body, and each cross of two shots' ends), every
   piece with its captions burned in and the delivery encoder settings, two at a time; each piece
   opens at most two shots' inputs (memory stays bounded with stock clips). Pieces are named by
   a hash of their inputs and kept in the checkpoint (``pieces/``): a re-run after an edit
   (``ctx.base_output``/``ctx.base_dir``) links every piece whose inputs did not change and the
   mix when the voice did not change, and renders only the rest (a swapped scene: its body and
   the two crosses). A key frame on the middle of each shot lets the contact sheet be cut fast.
4. Join the pieces with the soundtrack (concat demuxer, no re-encode), then QC the file
   (``stages.qc``): format, loudness and true peak, the bed under the voice, no digital silence,
   word sync (against the voice's timings and against speech onsets in the audio), every drawn
   box inside the safe zone, no duplicated on-screen text, motion on every shot. A failed check raises PermanentStageError, so a broken video never
   reaches review.

Caption edits (``ctx.overrides["segments"][n]["caption"]``) replace the words shown for segment n,
spread over the time it is spoken (``captions.apply_overrides``); QC does not hold those words to
the voice's timings. The output records every piece (``pieces``: name, key, file, reused), what
this run rendered and reused (``render``) and the mix's key and levels (``mix_state``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import wave
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages import captions as captions_mod
from stages import media, music, qc
from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult, TransientStageError
from stages.look import Frame, Look, look_for
from stages.mix import BED_STEM, MIX_NAME, VOICE_STEM, Mix, mix
from stages.providers.cards import Layout

VIDEO_NAME = "video.mp4"
THUMB_NAME = "thumbnail.jpg"
CONTACT_NAME = "contact.jpg"
CAPTION_DIR = "captions"
PIECE_DIR = "pieces"  # the rendered pieces, the mix and its stems: kept for a re-run after an edit
PIECE_VERSION = 1  # bump when a piece's rendering changes, so old checkpoints' pieces are not reused
PIECE_WORKERS = 2  # pieces rendered at once
MAX_PIECE_FRAMES = 150  # a longer body is cut in parts (each starts with a key frame, as a 5 s GOP)
FPS = media.VIDEO_FPS
DEFAULT_ZOOM = 1.08  # overscan when the scenes do not say (scene style "max_zoom")
MAX_PAN_SPEED = 10.0  # px/s: a slow drift; each 2 px step is a frame x264 must code
KARAOKE_SIZE, PHRASE_SIZE = 96, 68  # default caption sizes (px at 1080 wide)
CONTACT_SCALE = 6  # contact sheet tiles are 1/6 of the frame (180x320 for 9:16)
XFADE = {
    "fade": ["fade"],
    "slide": ["slideleft"],
    "zoom": ["zoomin"],
    "mixed": ["fade", "slideleft", "zoomin", "slideup"],
}


@dataclass
class Shot:
    image: Path
    segment: str
    start: int  # first global frame the shot is on screen (transition included)
    end: int  # one past its last frame
    path: tuple[tuple[float, float], tuple[float, float]]  # fractions of the allowed pan range
    clip: Path | None = None  # stock footage played instead of panning the still
    overlay: Path | None = None  # RGBA layer drawn over the clip: the darkening scrim and the card's text
    scene: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass
class Motion:
    """How far the crop window may travel: ``zoom`` is the overscan, the ranges are window offsets (px)."""

    zoom: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width: int = media.VIDEO_WIDTH
    height: int = media.VIDEO_HEIGHT

    @property
    def big(self) -> tuple[int, int]:
        return _even(self.width * self.zoom), _even(self.height * self.zoom)


# Pan paths as (start, end) fractions of the allowed offset ranges, cycled over the shots: the
# window travels one way in a shot and back in the next, so the drift never builds up one way.
PAN_PATHS = (
    ((0.0, 0.0), (1.0, 1.0)),
    ((1.0, 1.0), (0.0, 0.0)),
    ((1.0, 0.0), (0.0, 1.0)),
    ((0.0, 1.0), (1.0, 0.0)),
)


def run(ctx: StageContext) -> StageResult:
    ctx.progress(0.0, "reading voiceover and scenes")
    look = look_for(ctx.theme.get("settings"))
    frame = look.frame
    voice = ctx.output_of("voiceover")
    audio = ctx.input_path("voiceover", _field(voice, "audio", str, "voiceover"))
    duration = _voice_duration(voice, audio)
    scenes_out = ctx.output_of("scene_generation")
    style = scenes_out.get("style") or {}
    _check_frame(scenes_out, frame)
    transition = _transition_frames(look)
    shots = plan_shots(ctx, voice, duration, transition)
    transition = shots[0].end - shots[1].start if len(shots) > 1 else 0  # 0 if the shots were too short
    motion = motion_for(style, frame)
    script = ctx.upstream.get("script_generation") or {}
    pieces_dir = ctx.work_dir / PIECE_DIR
    pieces_dir.mkdir(parents=True, exist_ok=True)

    ctx.progress(0.02, "mixing the soundtrack, drawing captions and thumbnail")
    tone = ((ctx.theme.get("settings") or {}).get("script_generation") or {}).get("tone")
    bed = music.bed_for(look.music, tone)
    mix_key = _key(
        {
            "v": 1,
            "voice": media.file_digest(audio),
            "duration": round(duration, 4),
            "bed": media.file_digest(bed) if bed is not None else None,
            "volume_db": look.music.volume_db,
            "target": media.TARGET_LUFS,
        }
    )
    mixed: dict[str, Any] = {}
    reused_mix = _reused_mix(ctx, mix_key, bed)
    mixer = None
    if reused_mix is not None:
        mixed["mix"] = reused_mix
    else:
        mixer = threading.Thread(target=_mix_into, args=(mixed, ctx, audio, duration, bed, look), daemon=True)
        mixer.start()
    layout = Layout(frame.width, frame.height, frame.safe_zone, look.captions.position)
    words = captions_mod.apply_overrides(captions_mod.words_from(voice), script, ctx.overrides)
    default = KARAOKE_SIZE if look.captions.style == "karaoke" else PHRASE_SIZE
    default = round(default * min(frame.width, frame.height) / 1080)
    track = captions_mod.plan(words, look.captions, layout.caption_zone, duration, default)
    captions_mod.layout(track, look.captions, layout.caption_zone)
    title = str(script.get("title") or "").strip()
    _render_thumbnail(shots[0].image, title, ctx.work_dir / THUMB_NAME, frame, layout)

    # The picture is rendered without sound while the mix finishes; the two meet in the join.
    renderer = PieceRenderer(ctx, shots, track, look, motion, transition)
    renderer.reuse(ctx.base_output, ctx.base_dir)
    todo = [p for p in renderer.pieces if not p.reused]
    ctx.progress(
        0.08,
        f"rendering {sum(p.frames for p in todo)} of {round(duration * FPS)} frames ({len(todo)} of "
        f"{len(renderer.pieces)} pieces; {len(shots)} shots, {len(track.pictures)} caption pictures)",
    )
    try:
        renderer.render()
    finally:
        if mixer is not None:
            mixer.join()
    if "error" in mixed:
        raise mixed["error"]
    soundtrack: Mix = mixed["mix"]
    renderer.join(soundtrack.audio, ctx.work_dir / VIDEO_NAME)
    _cut_contact_sheet(
        ctx, ctx.work_dir / VIDEO_NAME, _contact_frames(shots, transition), frame, ctx.work_dir / CONTACT_NAME
    )

    ctx.progress(0.96, "checking the video")
    report = qc.check(
        ctx.work_dir / VIDEO_NAME,
        ctx=ctx,
        duration=duration,
        look=look,
        voice_wav=audio,
        words=words,
        track=track,
        shots=shots,
        motion=motion,
        script=script,
        soundtrack=soundtrack,
        transition=transition,
    )
    if not report["passed"]:
        failed = "; ".join(f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"])
        raise PermanentStageError(
            f"composition QC failed: {failed}", hint="check the composition settings and re-run composition"
        )
    _clean(ctx.work_dir)
    ctx.progress(1.0, f"video {report['duration']:.2f}s, {report['lufs']} LUFS")
    contact = _contact_sheet(shots, transition, frame)
    return StageResult(
        output={
            "video": VIDEO_NAME,
            "thumbnail": THUMB_NAME,
            "contact_sheet": contact,
            "duration": report["duration"],
            "aspect": frame.aspect,
            "captions": {
                "style": track.style,
                "size": track.size,
                "pictures": len(track.pictures),
                "overridden": sorted({w.segment for w in words if w.override}),
            },
            "transition": look.transition if transition else "cut",
            "mix": soundtrack.report(),
            "qc": report,
            # what a re-run after an edit may reuse (keyed by content), and what this run reused
            "pieces": [p.record(shots) for p in renderer.pieces],
            "mix_state": {"key": mix_key, "reused": reused_mix is not None, **soundtrack.state()},
            "render": {
                "rendered": [p.name for p in renderer.pieces if not p.reused],
                "reused": [p.name for p in renderer.pieces if p.reused],
                "mix_reused": reused_mix is not None,
            },
        },
        artifacts=[
            ArtifactSpec(path=VIDEO_NAME, kind="video", label=f"Short ({frame.width}x{frame.height})"),
            ArtifactSpec(path=THUMB_NAME, kind="thumbnail", label="Thumbnail"),
            ArtifactSpec(path=CONTACT_NAME, kind="image", label="Contact sheet (one frame per shot)"),
        ],
    )


def _mix_into(
    out: dict[str, Any], ctx: StageContext, audio: Path, duration: float, bed: Path | None, look: Look
) -> None:
    """The soundtrack, in a thread while the captions are drawn (ffmpeg does the work)."""
    try:
        out["mix"] = mix(ctx, audio, duration, bed, look.music.volume_db, ctx.work_dir / PIECE_DIR)
    except BaseException as exc:  # noqa: BLE001 - handed to the stage's thread, raised there
        out["error"] = exc


def _reused_mix(ctx: StageContext, key: str, bed: Path | None) -> Mix | None:
    """The previous checkpoint's soundtrack when its inputs (voice audio, duration, bed, levels)
    are the same: linked, not mixed again."""
    state = (ctx.base_output or {}).get("mix_state")
    if ctx.base_dir is None or not isinstance(state, dict) or state.get("key") != key:
        return None
    names = [MIX_NAME, VOICE_STEM] + ([BED_STEM] if bed is not None else [])
    sources = [ctx.base_dir / PIECE_DIR / name for name in names]
    if not all(path.is_file() for path in sources):
        return None
    folder = ctx.work_dir / PIECE_DIR
    for source in sources:
        media.link_or_copy(source, folder / source.name)
    return Mix.from_state(state, folder, bed)


def _clean(work: Path) -> None:
    """Scratch files do not stay in the checkpoint; the pieces, the mix and its stems do (a re-run
    after an edit reuses them)."""
    shutil.rmtree(work / CAPTION_DIR, ignore_errors=True)
    for name in ("premix.wav", "pieces/premix.wav", "pieces/pieces.ffconcat"):
        (work / name).unlink(missing_ok=True)


# -- inputs --------------------------------------------------------------------------------------
def _field(data: dict[str, Any], key: str, kind: type, stage: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or value in ("", None):
        raise PermanentStageError(f"{stage} output has no valid {key!r}", hint=f"re-run {stage}")
    return value


def _voice_duration(voice: dict[str, Any], audio: Path) -> float:
    """The WAV's real length; the voiceover's declared one must agree or timings would be wrong."""
    try:
        actual = media.wav_duration(audio)
    except (wave.Error, EOFError, OSError) as exc:  # a truncated or foreign file
        raise PermanentStageError(f"voiceover audio {audio.name} is not a readable WAV: {exc}") from exc
    declared = float(voice.get("duration") or 0)
    if abs(actual - declared) > media.DURATION_TOLERANCE:
        raise PermanentStageError(
            f"voiceover says duration {declared:.2f}s but {audio.name} is {actual:.2f}s",
            hint="re-run voiceover",
        )
    if actual < 1.0:
        raise PermanentStageError(f"voiceover is only {actual:.2f}s long", hint="check the script narration")
    return actual


def _check_frame(scenes_out: dict[str, Any], frame: Frame) -> None:
    """The scenes must be drawn for the frame the theme asks for now (an aspect changed since?)."""
    for scene in scenes_out.get("scenes") or []:
        size = (scene.get("width"), scene.get("height"))
        if isinstance(scene, dict) and all(size) and tuple(size) != frame.size:
            raise PermanentStageError(
                f"scene {scene.get('image')} is {size[0]}x{size[1]} but the theme's aspect {frame.aspect} "
                f"needs {frame.width}x{frame.height}",
                hint="re-run from scene_generation",
            )


def _transition_frames(look: Look) -> int:
    """Frames two shots overlap for (even, so each side gives half); 0 for hard cuts."""
    if look.transition == "cut":
        return 0
    return max(2, round(look.transition_seconds * FPS / 2) * 2)


def plan_shots(ctx: StageContext, voice: dict[str, Any], duration: float, transition: int) -> list[Shot]:
    """One shot per voiceover window, showing the scene made for that segment.

    Window boundaries become whole frames, so the shots tile exactly round(duration * 30) frames.
    With a transition of T frames each cut becomes a cross of T frames centred on the boundary:
    the outgoing shot runs T/2 longer, the incoming one starts T/2 earlier. A window without a
    matching scene extends the previous shot; a window too short for the transition keeps a cut.
    """
    scenes = (ctx.output_of("scene_generation").get("scenes")) or []
    if not scenes:
        raise PermanentStageError("scene_generation output has no scenes", hint="re-run scene_generation")
    by_segment = {str(s.get("segment")): s for s in scenes if isinstance(s, dict)}
    windows = voice.get("segments") or []
    if not windows:
        windows = [{"segment": str(scenes[0].get("segment")), "start": 0.0, "end": duration}]
    total = round(duration * FPS)
    cuts: list[tuple[int, int, dict[str, Any], str]] = []  # (start, end, scene, segment) before overlaps
    cursor = 0
    for i, window in enumerate(windows):
        segment = str(window.get("segment"))
        scene = by_segment.get(segment) or (scenes[i] if i < len(scenes) else None)
        last = total if i == len(windows) - 1 else min(round(float(window.get("end", 0)) * FPS), total)
        if last <= cursor:
            continue
        if scene is None and cuts:
            cuts[-1] = (cuts[-1][0], last, cuts[-1][2], cuts[-1][3])
        else:
            cuts.append((cursor, last, scene or scenes[0], segment))
        cursor = last
    if not cuts:
        raise PermanentStageError("no scene matches the voiceover segments", hint="re-run scene_generation")
    half = transition // 2
    if any(end - start < transition + 2 for start, end, _, _ in cuts):
        half = 0  # a very short window: hard cuts throughout rather than a transition longer than a shot
    shots: list[Shot] = []
    for k, (start, end, scene, segment) in enumerate(cuts):
        image = ctx.input_path("scene_generation", _field(scene, "image", str, "scene_generation"))
        shot = Shot(
            image=image,
            segment=segment,
            start=start - (half if k > 0 else 0),
            end=end + (half if k < len(cuts) - 1 else 0),
            path=PAN_PATHS[k % len(PAN_PATHS)],
            scene=scene,
        )
        if scene.get("clip"):
            shot.clip = ctx.input_path("scene_generation", _field(scene, "clip", str, "scene_generation"))
            if scene.get("overlay"):  # an uploaded clip has no card text over it
                shot.overlay = ctx.input_path("scene_generation", _field(scene, "overlay", str, "scene_generation"))
        shots.append(shot)
    return shots


# -- pictures ------------------------------------------------------------------------------------
def _render_thumbnail(scene: Path, title: str, out: Path, frame: Frame, layout: Layout) -> None:
    """The hook scene with the title in caption style over the caption band, 720 px on its short side."""
    from PIL import Image, ImageOps

    with Image.open(scene) as source:
        picture = ImageOps.fit(source.convert("RGB"), frame.size, method=Image.Resampling.LANCZOS)
    if title:
        x0, y0, x1, y1 = layout.caption_zone
        band = max(y1 - y0, frame.height // 5)
        for size in range(100, 40, -6):  # the largest type whose block fits the band
            block = media.text_block(title.upper(), font_size=size, max_width=x1 - x0, max_rows=3, box=(0, 0, 0, 175))
            if block.height <= band:
                break
        top = min(y0, frame.height - block.height)
        picture.paste(block, ((x0 + x1 - block.width) // 2, top), block)
    scale = 720 / min(frame.size)
    size = (round(frame.width * scale), round(frame.height * scale))
    picture.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=88, optimize=True, progressive=True)


def _contact_frames(shots: list[Shot], transition: int) -> list[int]:
    """The frame shown for each shot on the contact sheet: the middle of its own (uncrossed) part."""
    half = transition // 2
    out = []
    for k, shot in enumerate(shots):
        start = shot.start + (half if k > 0 else 0)
        end = shot.end - (half if k < len(shots) - 1 else 0)
        out.append((start + end) // 2)
    return out


def _contact_sheet(shots: list[Shot], transition: int, frame: Frame) -> dict[str, Any]:
    frames = _contact_frames(shots, transition)
    return {
        "image": CONTACT_NAME,
        "tile": [frame.width // CONTACT_SCALE, frame.height // CONTACT_SCALE],
        "shots": [
            {"segment": shot.segment, "time": round(f / FPS, 2), "text": shot.scene.get("text", "")}
            for shot, f in zip(shots, frames, strict=True)
        ],
    }


# -- motion ------------------------------------------------------------------------------------
def motion_for(style: dict[str, Any], frame: Frame | None = None) -> Motion:
    """Overscan and allowed window offsets from the scene style (scene_generation ``style``).

    Scaling by ``zoom`` and showing the window at offset (ox, oy) puts a scene point p at p*zoom - o
    on screen. The card text (``text_box``) must stay inside the safe box there, which bounds the
    offsets; with the offline cards (text inset for 1.12x, overscan 1.08x) that leaves ~30 px of
    sideways and ~50 px of vertical travel. Without a style the whole overscan is used.
    """
    width, height = frame.size if frame is not None else (media.VIDEO_WIDTH, media.VIDEO_HEIGHT)
    try:
        zoom = float(style.get("max_zoom") or DEFAULT_ZOOM)
    except (TypeError, ValueError):
        zoom = DEFAULT_ZOOM
    zoom = min(max(zoom, 1.02), 1.2)
    big_w, big_h = _even(width * zoom), _even(height * zoom)
    spare_x, spare_y = big_w - width, big_h - height
    x_range, y_range = (0.0, float(spare_x)), (0.0, float(spare_y))
    box, safe = style.get("text_box"), _safe_box(style, width, height)
    try:
        if box and safe:
            left, top, right, bottom = (float(v) for v in box)
            zx, zy = big_w / width, big_h / height
            x_range = _allowed(left, right, safe[0], safe[2], zx, spare_x)
            y_range = _allowed(top, bottom, safe[1], safe[3], zy, spare_y)
    except (TypeError, ValueError, IndexError):
        pass  # a malformed style: fall back to the whole overscan rather than fail the video
    return Motion(zoom=zoom, x_range=x_range, y_range=y_range, width=width, height=height)


def _safe_box(style: dict[str, Any], width: int, height: int) -> tuple[float, float, float, float] | None:
    """The style's safe box (``safe_box``, or the older ``safe_zone`` margins)."""
    box = style.get("safe_box")
    if isinstance(box, list) and len(box) == 4:
        return tuple(float(v) for v in box)  # type: ignore[return-value]
    margins = style.get("safe_zone")
    if isinstance(margins, dict):
        return (
            float(margins.get("left", 0)),
            float(margins.get("top", 0)),
            width - float(margins.get("right", 0)),
            height - float(margins.get("bottom", 0)),
        )
    return None


def _allowed(lo: float, hi: float, safe_lo: float, safe_hi: float, zoom: float, spare: int) -> tuple[float, float]:
    """Offsets o with lo*zoom - o >= safe_lo and hi*zoom - o <= safe_hi, within [0, spare]."""
    first, last = max(0.0, hi * zoom - safe_hi), min(float(spare), lo * zoom - safe_lo)
    if first > last:  # no offset keeps the text inside: hold the centred one
        return (spare / 2, spare / 2)
    return (first, last)


def pan_path(shot: Shot, motion: Motion) -> tuple[tuple[float, float], tuple[float, float]]:
    """The crop window's offsets at the shot's first and last frame (px), speed-capped."""
    (fx0, fy0), (fx1, fy1) = shot.path
    (ax, bx), (ay, by) = motion.x_range, motion.y_range
    x0, x1 = ax + (bx - ax) * fx0, ax + (bx - ax) * fx1
    y0, y1 = ay + (by - ay) * fy0, ay + (by - ay) * fy1
    seconds = shot.frames / FPS
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    if length > MAX_PAN_SPEED * seconds:  # a short shot travels a shorter stretch around the middle
        keep = MAX_PAN_SPEED * seconds / length
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        x0, x1 = mx + (x0 - mx) * keep, mx + (x1 - mx) * keep
        y0, y1 = my + (y0 - my) * keep, my + (y1 - my) * keep
    return (x0, y0), (x1, y1)


def _still_source(shot: Shot, motion: Motion) -> str:
    """A still scaled ONCE to the overscan size (Lanczos), as one yuv420p frame."""
    big_w, big_h = motion.big
    return (
        f"scale={big_w}:{big_h}:force_original_aspect_ratio=increase:flags=lanczos,crop={big_w}:{big_h},format=yuv420p"
    )


def _pan_piece(shot: Shot, motion: Motion, first: int, count: int) -> str:
    """Frames ``first`` .. ``first + count`` of a still shot: the scaled frame repeated by ``loop``
    and a crop window moving in a straight line over the whole shot (the piece picks up the path
    where it is at ``first``). The window moves in whole 2 px steps (yuv420p chroma alignment):
    frames in between are identical, which x264 codes almost for free."""
    (x0, y0), (x1, y1) = pan_path(shot, motion)
    steps = max(shot.frames - 1, 1)
    x = f"{x0:.2f}+({x1 - x0:.2f})*(n+{first})/{steps}"
    y = f"{y0:.2f}+({y1 - y0:.2f})*(n+{first})/{steps}"
    return (
        f"loop=loop={count - 1}:size=1:start=0,settb=1/{FPS},setpts=N,"
        f"crop={motion.width}:{motion.height}:x='{x}':y='{y}'"
    )


def _clip_source(motion: Motion) -> str:
    """A stock clip as a shot: constant 30 fps, cover-fitted to the frame (the input loops when the
    clip is shorter; its audio is never used). The scene's overlay (scrim + text) goes on next.
    (``drawbox`` with an alpha colour would be the obvious scrim, but on yuv420p it blends luma
    only and turns red footage grey-brown.)"""
    w, h = motion.width, motion.height
    return f"fps={FPS},scale={w}:{h}:force_original_aspect_ratio=increase:flags=bicubic,crop={w}:{h},setsar=1"


def _clip_piece(first: int, count: int) -> str:
    return f"trim=start_frame={first}:end_frame={first + count},settb=1/{FPS},setpts=N,format=yuv420p"


def _even(value: float) -> int:
    return round(value / 2) * 2


# -- ffmpeg --------------------------------------------------------------------------------------
# xfade costs ~2 ms on EVERY frame that passes through it (measured, ffmpeg 9: 2.0 s for 874
# frames with one 10-frame transition, against 0.2 s for concat), not only on the blended ones.
# So each shot is cut into a head (its first T frames), a body and a tail (its last T frames);
# xfade only ever sees the T-frame tail and head of two shots. Each body and each cross is
# encoded as a piece of its own, with the captions over it and the delivery encoder settings;
# the pieces are joined by the concat demuxer without re-encoding (each starts with a key frame,
# all share one SPS). A piece is named by a hash of everything that makes its pixels (the scene
# file's checksum, its frames and pan, the caption pictures over it, the transition, the encoder
# settings): a re-run after an edit links every piece whose inputs did not change from the
# previous checkpoint and renders only the others (a scene swap: its body and the two crosses).


@dataclass
class Piece:
    kind: str  # "body" | "cross" (a cross leads into shot ``shot``)
    shot: int
    start: int  # its first frame in the video
    frames: int
    key: str = ""
    reused: bool = False
    part: int = 0  # a long body is cut in parts (1, 2, ...; 0: whole)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.shot + 1:02d}" + (f".{self.part}" if self.part else "")

    @property
    def file(self) -> str:
        return f"{self.name}-{self.key[:16]}.mp4"

    def record(self, shots: list[Shot]) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "segment": shots[self.shot].segment,
            "start": self.start,
            "frames": self.frames,
            "key": self.key,
            "file": self.file,
            "reused": self.reused,
        }


def plan_pieces(shots: list[Shot], transition: int) -> list[Piece]:
    """In playing order: body 0, cross 1, body 1, ..., body n-1 (no crosses with hard cuts)."""
    out: list[Piece] = []
    for k, shot in enumerate(shots):
        head = transition if k > 0 else 0
        tail = transition if k < len(shots) - 1 else 0
        if head:
            out.append(Piece("cross", k, shot.start, transition))
        frames = shot.frames - head - tail
        parts = max(1, -(-frames // MAX_PIECE_FRAMES))
        first = shot.start + head
        for part in range(parts):  # even parts, so two cores can share a long shot
            count = frames // parts + (1 if part < frames % parts else 0)
            out.append(Piece("body", k, first, count, part=part + 1 if parts > 1 else 0))
            first += count
    return [p for p in out if p.frames > 0]


def _key(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _shot_key(shot: Shot) -> dict[str, Any]:
    if shot.clip is None:
        source: dict[str, Any] = {"image": media.file_digest(shot.image)}
    else:
        source = {
            "clip": media.file_digest(shot.clip),
            "overlay": media.file_digest(shot.overlay) if shot.overlay else None,
        }
    return {**source, "frames": shot.frames, "path": shot.path}


def _input_count(shot: Shot) -> int:
    return 1 if shot.clip is None else (2 if shot.overlay is not None else 1)


def _shot_inputs(shot: Shot, frames: int) -> list[str]:
    """The inputs for the first ``frames`` frames of a shot (two inputs for a clip + its overlay)."""
    if shot.clip is not None:
        seconds = frames / FPS + 1.0  # -t bounds the decode; a short clip repeats
        args = ["-threads", "1", "-stream_loop", "-1", "-t", f"{seconds:.3f}", "-i", str(shot.clip)]
        return args + (["-i", str(shot.overlay)] if shot.overlay is not None else [])
    return ["-framerate", str(FPS), "-i", str(shot.image)]


def _shot_graph(shot: Shot, n: int, k: int, motion: Motion, wanted: list[tuple[str, int, int]]) -> list[str]:
    """Chains from input ``n`` to one labelled stream per wanted piece: ``[k<name>]``."""
    labels = "".join(f"[src{k}{name}]" for name, _, _ in wanted)
    if shot.clip is not None:
        if shot.overlay is not None:
            chains = [
                f"[{n}:v]{_clip_source(motion)}[clip{k}]",
                f"[clip{k}][{n + 1}:v]overlay=x=0:y=0:eof_action=repeat,split={len(wanted)}{labels}",
            ]
        else:  # an operator's own clip: no card text over it
            chains = [f"[{n}:v]{_clip_source(motion)},split={len(wanted)}{labels}"]
        return chains + [f"[src{k}{name}]{_clip_piece(first, count)}[{k}{name}]" for name, first, count in wanted]
    chains = [f"[{n}:v]{_still_source(shot, motion)},split={len(wanted)}{labels}"]
    return chains + [
        f"[src{k}{name}]{_pan_piece(shot, motion, first, count)}[{k}{name}]" for name, first, count in wanted
    ]


def _cross(k: int, look: Look, transition: int) -> str:
    kinds = XFADE.get(look.transition, ["fade"])
    kind = kinds[(k - 1) % len(kinds)]
    return f"[{k - 1}tail][{k}head]xfade=transition={kind}:duration={transition / FPS:.6f}:offset=0[{k}cross]"


class PieceRenderer:
    """Keys, reuses and renders the pieces of one composition (see the comment above)."""

    def __init__(
        self,
        ctx: StageContext,
        shots: list[Shot],
        track: captions_mod.Track,
        look: Look,
        motion: Motion,
        transition: int,
    ) -> None:
        self.ctx, self.shots, self.track, self.look = ctx, shots, track, look
        self.motion, self.transition = motion, transition
        self.folder = ctx.work_dir / PIECE_DIR
        self.caption_dir = ctx.work_dir / CAPTION_DIR
        self.pictures: dict[int, Path] = {}
        self.contact = _contact_frames(shots, transition)
        self.pieces = plan_pieces(shots, transition)
        common = {
            "v": PIECE_VERSION,
            "fps": FPS,
            "motion": [motion.zoom, motion.x_range, motion.y_range, motion.width, motion.height],
            "encoder": [look.preset, look.crf],
        }
        for piece in self.pieces:
            desc: dict[str, Any] = {**common, "kind": piece.kind, "frames": piece.frames}
            desc["captions"] = [
                [a, b, captions_mod.picture_key(track, n, look.captions)]
                for n, a, b in captions_mod.spans(track, piece.start, piece.frames)
            ]
            if piece.kind == "cross":
                desc["from"] = _shot_key(shots[piece.shot - 1])
                desc["to"] = _shot_key(shots[piece.shot])
                desc["cross"] = _cross(piece.shot, look, transition)
            else:
                desc["shot"] = _shot_key(shots[piece.shot])
                desc["first"] = piece.start - shots[piece.shot].start
                desc["keyframes"] = self._keyframes(piece)
            piece.key = _key(desc)

    def _keyframes(self, piece: Piece) -> list[int]:
        """The piece's own frames that the contact sheet shows (forced key frames)."""
        return [f - piece.start for f in self.contact if piece.start <= f < piece.start + piece.frames]

    def reuse(self, base_output: dict[str, Any] | None, base_dir: Path | None) -> None:
        """Link every piece the previous checkpoint rendered with the same key."""
        if not base_output or base_dir is None:
            return
        known = {str(r.get("file")) for r in base_output.get("pieces") or [] if isinstance(r, dict)}
        for piece in self.pieces:
            source = base_dir / PIECE_DIR / piece.file
            if piece.file in known and source.is_file():
                media.link_or_copy(source, self.folder / piece.file)
                piece.reused = True

    def args(self, piece: Piece, threads: int = 1) -> list[str]:
        """The ffmpeg arguments (without the binary) that render one piece (``threads`` 0: x264's choice)."""
        shots, k, transition = self.shots, piece.shot, self.transition
        shot = shots[k]
        args = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
        graph: list[str] = []
        n = 0
        if piece.kind == "cross":
            prev = shots[k - 1]
            args += _shot_inputs(prev, prev.frames)
            graph += _shot_graph(prev, 0, k - 1, self.motion, [("tail", prev.frames - transition, transition)])
            n = _input_count(prev)
            wanted, label = [("head", 0, transition)], f"{k}cross"
        else:
            wanted, label = [("body", piece.start - shot.start, piece.frames)], f"{k}body"
        args += _shot_inputs(shot, wanted[0][1] + wanted[0][2])
        graph += _shot_graph(shot, n, k, self.motion, wanted)
        n += _input_count(shot)
        if piece.kind == "cross":
            graph.append(_cross(k, self.look, transition))
        spans = captions_mod.spans(self.track, piece.start, piece.frames)
        if any(self.track.pictures[i].words for i, _, _ in spans):
            entries = [(self._picture(i), b - a) for i, a, b in spans]
            listing = captions_mod.write_track(entries, self.caption_dir / f"{piece.name}.ffconcat")
            args += ["-f", "concat", "-safe", "0", "-i", str(listing)]
            x0, y0, _, _ = self.track.canvas
            graph.append(f"[{label}][{n}:v]overlay=x={x0}:y={y0}:eof_action=repeat[captioned]")
            label = "captioned"
        args += ["-filter_complex", ";".join(graph), "-map", f"[{label}]", "-frames:v", str(piece.frames)]
        args += ["-c:v", "libx264", "-preset", self.look.preset, "-crf", str(self.look.crf)]
        keyframes = [f for f in self._keyframes(piece) if f > 0]
        if keyframes:  # the contact sheet is cut from key frames only (a hair early: the frame is >= it)
            args += ["-force_key_frames", ",".join(f"{(f - 0.25) / FPS:.4f}" for f in keyframes)]
        args += ["-profile:v", "high", "-pix_fmt", "yuv420p", "-r", str(FPS), "-an"]
        args += ["-threads", str(threads)] if threads else []
        return args + [str(self.folder / piece.file)]

    def _picture(self, n: int) -> Path:
        if n not in self.pictures:
            self.pictures[n] = captions_mod.draw_picture(self.track, n, self.look.captions, self.caption_dir)
        return self.pictures[n]

    def render(self) -> None:
        """Render the pieces not reused, two at a time (short pieces leave x264's threads idle)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # Longest first. One x264 thread a piece while other pieces keep the second core busy
        # (frame threads cost more CPU than they save: a 10-frame cross 0.30 -> 0.15 s, a
        # 331-frame body 4.5 -> 3.9 s); x264's own threads for a body with little else to do
        # (a swapped scene: its body and two crosses).
        pending = sorted((p for p in self.pieces if not p.reused), key=lambda p: -p.frames)
        todo = []
        for n, piece in enumerate(pending):
            alone = piece.kind == "body" and sum(p.frames for p in pending[n + 1 :]) < piece.frames / 2
            todo.append((piece, self.args(piece, threads=0 if alone else 1)))
        total = sum(p.frames for p, _ in todo) or 1
        done = 0
        with ThreadPoolExecutor(max_workers=PIECE_WORKERS) as pool:
            futures = {pool.submit(media.run_ffmpeg, args, self.ctx): piece for piece, args in todo}
            try:
                for future in as_completed(futures):
                    piece = futures[future]
                    code, lines = future.result()
                    if code != 0:
                        detail = " | ".join(lines[-5:]) or f"exit status {code}"
                        if code < 0:  # killed by a signal we did not send (OOM killer...): worth another attempt
                            raise TransientStageError(
                                f"ffmpeg was killed (signal {-code}) rendering {piece.name}: {detail}"
                            )
                        raise PermanentStageError(
                            f"ffmpeg could not render {piece.name}: {detail}", hint="check the scene images"
                        )
                    done += piece.frames
                    self.ctx.progress(0.08 + 0.8 * done / total, f"rendered {piece.name} ({done}/{total} frames)")
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def join(self, audio: Path, out: Path) -> None:
        """The pieces, in order, without re-encoding, with the soundtrack: the delivered MP4."""
        listing = self.folder / "pieces.ffconcat"
        listing.write_text("ffconcat version 1.0\n" + "".join(f"file '{p.file}'\n" for p in self.pieces))
        args = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-f", "concat", "-safe", "0"]
        args += ["-i", str(listing), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c", "copy"]
        args += ["-shortest", "-movflags", "+faststart", str(out)]
        code, lines = media.run_ffmpeg(args, self.ctx)
        if code != 0:
            raise PermanentStageError(f"ffmpeg could not join the pieces and the sound: {' | '.join(lines[-3:])}")


def _cut_contact_sheet(ctx: StageContext, video: Path, frames: list[int], frame: Frame, out: Path) -> None:
    """One frame per shot from the finished file, side by side. Each is a key frame (the encode
    forces them), so the decoder is told to decode key frames only (~10 pictures, not ~900)."""
    w, h = frame.width // CONTACT_SCALE, frame.height // CONTACT_SCALE
    near = "+".join(f"lt(abs(t-{f / FPS:.4f}),0.017)" for f in frames)  # quoted below: no escaping
    args = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-skip_frame", "nokey", "-i", str(video)]
    args += ["-vf", f"select='{near}',scale={w}:{h},pad={w + 4}:{h}:0:0:white,tile={len(frames)}x1"]
    args += ["-fps_mode", "passthrough", "-frames:v", "1", "-q:v", "4", "-update", "1", str(out)]
    code, lines = media.run_ffmpeg(args, ctx)
    from PIL import Image

    sheet = Image.open(out).convert("L") if code == 0 and out.is_file() else None
    # one tile per shot, none left black by the tile filter for want of a frame
    if (
        sheet is None
        or sheet.size != ((w + 4) * len(frames), h)
        or any(sheet.crop((i * (w + 4), 0, i * (w + 4) + w, h)).getextrema()[1] < 16 for i in range(len(frames)))
    ):
        raise PermanentStageError(f"could not cut the contact sheet: {' | '.join(lines[-3:]) or 'a frame is missing'}")
