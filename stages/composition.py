"""Stage: composition. Scenes + voice + captions -> one vertical H.264 short, checked before review.

Why it is built this way (measured, see /work/shared/NOTES-media.md): zoompan and ``-loop 1`` make a
30 s short cost 2.5-3x a plain encode, and a per-frame zoom with ``scale`` still costs ~1.8x, so every
still is decoded and scaled ONCE (to the scenes' ``max_zoom``, 108 %), repeated with the ``loop``
filter and panned by moving a 1080x1920 crop window (a pointer offset, no per-frame resampling). The
window only travels where the scene's text stays inside the platform safe zone (scene style
``text_box``/``safe_zone``/``caption_zone``). Captions are Pillow-rendered PNGs overlaid only inside
their half-open time windows. Loudness is measured first on the audio alone (a 0.1 s pass) and set
with a static gain + limiter, which is ~5x cheaper than single-pass ``loudnorm`` and does not pump.
``-shortest`` is avoided: its sync queue buffers ~10 s of decoded frames (1.3 GB RSS measured);
the video gets its exact frame count from the voiceover windows instead. Steps:

1. Read the voiceover (windows, captions, WAV) and the scenes; match scenes to windows by segment.
   A scene with stock footage (``clip`` + ``overlay``) plays its clip under the overlay instead
   of panning its still.
2. Render caption PNGs and a thumbnail (hook scene + title) with Pillow.
3. Measure the audio mix (voice + optional music bed ducked under it) and work out the gain to
   -14 LUFS; one ffmpeg pass through ``ctx.run_process`` renders pans, concat, caption overlays and
   the audio: libx264 High yuv420p 30 fps + AAC 48 kHz stereo, ``+faststart``.
4. QC the file (stages.media.qc_video); a failed check raises PermanentStageError, so a broken video
   never reaches review.
"""

from __future__ import annotations

import shutil
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from stages import media
from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult, TransientStageError

VIDEO_NAME = "video.mp4"
THUMB_NAME = "thumbnail.jpg"
CAPTION_DIR = "captions"
FPS = media.VIDEO_FPS
W, H = media.VIDEO_WIDTH, media.VIDEO_HEIGHT
DEFAULT_ZOOM = 1.08  # overscan when the scenes do not say (scene style "max_zoom")
MAX_PAN_SPEED = 10.0  # px/s: a slow drift; each 2 px step is a frame x264 must code (10 px/s: 1 in 6 frames; measured 7.2 s vs 7.7 s at 15+ px/s for a 30 s short)
CAPTION_CENTER_Y = 1300  # middle of the lower safe zone (y 1150-1450)
CAPTION_SINGLE_ROW_MIN = 68  # px: a caption line shrinks to this before it wraps onto two rows
THUMB_BAND = (1170, 1520)  # title block on the thumbnail: under the card text, no platform UI on stills
LIMIT = 0.891  # -1 dBFS sample peak after the static loudness gain
MAX_GAIN_DB = 30.0
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Pan paths as (start, end) fractions of the allowed offset ranges, cycled over the scenes: the
# window travels one way in a shot and back in the next, so the drift never builds up one way.
PAN_PATHS = (
    ((0.0, 0.0), (1.0, 1.0)),
    ((1.0, 1.0), (0.0, 0.0)),
    ((1.0, 0.0), (0.0, 1.0)),
    ((0.0, 1.0), (1.0, 0.0)),
)


@dataclass
class Shot:
    image: Path
    segment: str
    frames: int
    path: tuple[tuple[float, float], tuple[float, float]]  # fractions of the allowed pan range
    clip: Path | None = None  # stock footage played instead of panning the still
    overlay: Path | None = None  # RGBA layer drawn over the clip: the darkening scrim and the card's text


@dataclass
class Motion:
    """How far the crop window may travel: ``zoom`` is the overscan, the ranges are window offsets (px)."""

    zoom: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]


@dataclass
class Caption:
    text: str
    start: float
    end: float
    image: Path
    height: int


def run(ctx: StageContext) -> StageResult:
    ctx.progress(0.0, "reading voiceover and scenes")
    voice = ctx.output_of("voiceover")
    audio = ctx.input_path("voiceover", _field(voice, "audio", str, "voiceover"))
    duration = _voice_duration(voice, audio)
    shots = _shots(ctx, voice, duration)
    motion = motion_for((ctx.output_of("scene_generation").get("style")) or {})
    options = _options(ctx)

    ctx.progress(0.02, "rendering captions and thumbnail")
    captions = _render_captions(ctx, voice.get("captions") or [], duration)
    title = str((ctx.upstream.get("script_generation") or {}).get("title") or "").strip()
    _render_thumbnail(shots[0].image, title, ctx.work_dir / THUMB_NAME)

    ctx.progress(0.04, "measuring loudness")
    gain = _loudness_gain(ctx, audio, duration, options)

    ctx.progress(0.06, f"encoding {duration:.1f}s, {len(shots)} scenes, {len(captions)} captions")
    _encode(ctx, build_command(shots, captions, audio, duration, options, ctx.work_dir / VIDEO_NAME, motion, gain))

    ctx.progress(0.96, "checking the video")
    qc = media.qc_video(ctx.work_dir / VIDEO_NAME, duration, ctx)
    if not qc["passed"]:
        failed = "; ".join(f"{c['name']}: {c['detail']}" for c in qc["checks"] if not c["ok"])
        raise PermanentStageError(
            f"composition QC failed: {failed}", hint="check the composition settings and re-run composition"
        )
    shutil.rmtree(ctx.work_dir / CAPTION_DIR, ignore_errors=True)
    ctx.progress(1.0, f"video {qc['duration']:.2f}s, {qc['lufs']} LUFS")
    return StageResult(
        output={"video": VIDEO_NAME, "thumbnail": THUMB_NAME, "duration": qc["duration"], "qc": qc},
        artifacts=[
            ArtifactSpec(path=VIDEO_NAME, kind="video", label="Short (1080x1920)"),
            ArtifactSpec(path=THUMB_NAME, kind="thumbnail", label="Thumbnail"),
        ],
    )


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


def _shots(ctx: StageContext, voice: dict[str, Any], duration: float) -> list[Shot]:
    """One shot per voiceover window, showing the scene made for that segment.

    Windows are turned into whole frames from their rounded boundaries, so the shots add up to exactly
    round(duration * 30) frames with no drift. A window without a matching scene reuses the previous one.
    """
    scenes = (ctx.output_of("scene_generation").get("scenes")) or []
    if not scenes:
        raise PermanentStageError("scene_generation output has no scenes", hint="re-run scene_generation")
    by_segment = {str(s.get("segment")): s for s in scenes if isinstance(s, dict)}
    windows = voice.get("segments") or []
    if not windows:
        windows = [{"segment": str(scenes[0].get("segment")), "start": 0.0, "end": duration}]
    total = round(duration * FPS)
    shots: list[Shot] = []
    cursor = 0  # frames handed out so far: each shot starts where the previous one ended
    for i, window in enumerate(windows):
        segment = str(window.get("segment"))
        scene = by_segment.get(segment) or (scenes[i] if i < len(scenes) else None)
        last = total if i == len(windows) - 1 else min(round(float(window.get("end", 0)) * FPS), total)
        frames = last - cursor
        if frames <= 0:
            continue
        cursor = last
        if scene is None and shots:
            shots[-1].frames += frames
            continue
        scene = scene or scenes[0]
        image = ctx.input_path("scene_generation", _field(scene, "image", str, "scene_generation"))
        shot = Shot(image=image, segment=segment, frames=frames, path=PAN_PATHS[len(shots) % len(PAN_PATHS)])
        if scene.get("clip"):
            shot.clip = ctx.input_path("scene_generation", _field(scene, "clip", str, "scene_generation"))
            shot.overlay = ctx.input_path("scene_generation", _field(scene, "overlay", str, "scene_generation"))
        shots.append(shot)
    if not shots:
        raise PermanentStageError("no scene matches the voiceover segments", hint="re-run scene_generation")
    return shots


def _options(ctx: StageContext) -> dict[str, Any]:
    """Theme settings for composition: ``preset``, ``crf``, ``music`` (+ ``music_volume``)."""
    opts = ctx.stage_settings
    music = opts.get("music")
    music_path: Path | None = None
    if music:
        music_path = Path(str(music))
        if not music_path.is_absolute():
            music_path = Path(settings.BASE_DIR) / music_path
        if not music_path.is_file():
            raise PermanentStageError(
                f"composition.music file not found: {music_path}",
                hint="fix theme.settings['composition']['music'] or remove it",
            )
    preset = str(opts.get("preset", "veryfast"))
    if preset not in X264_PRESETS:
        raise PermanentStageError(
            f"composition.preset {preset!r} is not an x264 preset", hint=f"use one of: {', '.join(X264_PRESETS)}"
        )
    try:
        crf = int(opts.get("crf", 23))
        music_volume = float(opts.get("music_volume", 0.18))
    except (TypeError, ValueError) as exc:
        raise PermanentStageError(f"composition.crf / music_volume must be numbers: {exc}") from exc
    if not 0 <= crf <= 51:
        raise PermanentStageError(f"composition.crf {crf} is outside 0-51", hint="23 is the default")
    return {"preset": preset, "crf": crf, "music": music_path, "music_volume": music_volume}


# -- pictures ------------------------------------------------------------------------------------
def _render_captions(ctx: StageContext, raw: list[dict[str, Any]], duration: float) -> list[Caption]:
    folder = ctx.work_dir / CAPTION_DIR
    folder.mkdir(exist_ok=True)
    captions: list[Caption] = []
    for i, item in enumerate(raw):
        text = str(item.get("text") or "").strip()
        start, end = float(item.get("start", 0)), min(float(item.get("end", 0)), duration)
        if not text or end <= start:
            continue
        image = media.text_block(text, single_row_min=CAPTION_SINGLE_ROW_MIN)
        path = folder / f"caption-{i + 1:03d}.png"
        image.save(path)
        captions.append(Caption(text=text, start=start, end=end, image=path, height=image.height))
    return captions


def _render_thumbnail(scene: Path, title: str, out: Path) -> None:
    """The hook scene with the title in caption style in the band the cards keep free, 720x1280 JPEG."""
    from PIL import Image, ImageOps

    with Image.open(scene) as source:
        frame = ImageOps.fit(source.convert("RGB"), (W, H), method=Image.Resampling.LANCZOS)
    if title:
        for size in range(100, 55, -6):  # the largest type whose block fits the band
            block = media.text_block(title.upper(), font_size=size, max_width=960, max_rows=3, box=(0, 0, 0, 175))
            if block.height <= THUMB_BAND[1] - THUMB_BAND[0]:
                break
        frame.paste(block, ((W - block.width) // 2, THUMB_BAND[0]), block)
    frame.resize((720, 1280), Image.Resampling.LANCZOS).save(out, "JPEG", quality=88, optimize=True, progressive=True)


# -- motion ------------------------------------------------------------------------------------
def motion_for(style: dict[str, Any]) -> Motion:
    """Overscan and allowed window offsets from the scene style (scene_generation ``style``).

    Scaling by ``zoom`` and showing the window at offset (ox, oy) puts a scene point p at p*zoom - o
    on screen. The card text (``text_box``, minus the empty ``caption_zone`` at its bottom) must stay
    inside ``safe_zone`` there, which bounds the offsets; with the offline cards (zoom 1.08) that
    leaves a ~77 px vertical drift and no sideways one. Without a style the whole overscan is used.
    """
    try:
        zoom = float(style.get("max_zoom") or DEFAULT_ZOOM)
    except (TypeError, ValueError):
        zoom = DEFAULT_ZOOM
    zoom = min(max(zoom, 1.02), 1.2)
    spare_x, spare_y = _even(W * zoom) - W, _even(H * zoom) - H
    x_range, y_range = (0.0, float(spare_x)), (0.0, float(spare_y))
    box, safe = style.get("text_box"), style.get("safe_zone")
    try:
        if box and isinstance(safe, dict):
            left, top, right, bottom = (float(v) for v in box)
            caption_zone = style.get("caption_zone")
            if caption_zone:
                bottom = min(bottom, float(caption_zone[1]))  # nothing is drawn below the caption line
            x_range = _allowed(left, right, float(safe.get("left", 0)), W - float(safe.get("right", 0)), zoom, spare_x)
            y_range = _allowed(top, bottom, float(safe.get("top", 0)), H - float(safe.get("bottom", 0)), zoom, spare_y)
    except (TypeError, ValueError, IndexError):
        pass  # a malformed style: fall back to the whole overscan rather than fail the video
    return Motion(zoom=zoom, x_range=x_range, y_range=y_range)


def _allowed(lo: float, hi: float, safe_lo: float, safe_hi: float, zoom: float, spare: int) -> tuple[float, float]:
    """Offsets o with lo*zoom - o >= safe_lo and hi*zoom - o <= safe_hi, within [0, spare]."""
    first, last = max(0.0, hi * zoom - safe_hi), min(float(spare), lo * zoom - safe_lo)
    if first > last:  # no offset keeps the text inside: hold the centred one
        return (spare / 2, spare / 2)
    return (first, last)


def _pan_filter(shot: Shot, motion: Motion) -> str:
    """Scale once, repeat, and move a 1080x1920 crop window in a straight line over the shot.

    The window moves in whole 2 px steps (yuv420p chroma alignment), at ~0.5 px/frame about one
    step every 4 frames: frames in between are identical, which x264 codes almost for free.
    ``crop=...:exact=1`` would step 1 px at a time but costs ~10 % more CPU (chroma half a pixel off
    on odd rows means a residual on every other frame), which the drift speed here does not need.
    """
    big_w, big_h = _even(W * motion.zoom), _even(H * motion.zoom)
    (fx0, fy0), (fx1, fy1) = shot.path
    (ax, bx), (ay, by) = motion.x_range, motion.y_range
    x0, x1 = ax + (bx - ax) * fx0, ax + (bx - ax) * fx1
    y0, y1 = ay + (by - ay) * fy0, ay + (by - ay) * fy1
    # Cap the speed: a short shot travels a shorter stretch around the middle of its path.
    seconds = shot.frames / FPS
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    if length > MAX_PAN_SPEED * seconds:
        keep = MAX_PAN_SPEED * seconds / length
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        x0, x1 = mx + (x0 - mx) * keep, mx + (x1 - mx) * keep
        y0, y1 = my + (y0 - my) * keep, my + (y1 - my) * keep
    steps = max(shot.frames - 1, 1)
    x = f"{x0:.2f}+({x1 - x0:.2f})*n/{steps}"
    y = f"{y0:.2f}+({y1 - y0:.2f})*n/{steps}"
    return (
        f"scale={big_w}:{big_h}:force_original_aspect_ratio=increase:flags=lanczos,crop={big_w}:{big_h},"
        f"format=yuv420p,loop=loop={shot.frames - 1}:size=1:start=0,settb=1/{FPS},setpts=N,"
        f"crop={W}:{H}:x='{x}':y='{y}'"
    )


def _clip_filter(shot: Shot) -> str:
    """A stock clip as a shot: constant 30 fps, cover-fitted to 1080x1920, exactly ``frames``
    long (the input loops when the clip is shorter). The scene's overlay (scrim + text) is drawn
    on it afterwards; the clip's audio is never used. (``drawbox`` with an alpha colour would be
    the obvious scrim, but on yuv420p it blends luma only and turns red footage grey-brown.)"""
    return (
        f"fps={FPS},scale={W}:{H}:force_original_aspect_ratio=increase:flags=bicubic,crop={W}:{H},setsar=1,"
        f"trim=end_frame={shot.frames},settb=1/{FPS},setpts=N,format=yuv420p"
    )


def _even(value: float) -> int:
    return round(value / 2) * 2


# -- audio ---------------------------------------------------------------------------------------
def _audio_inputs(audio: Path, options: dict[str, Any]) -> list[str]:
    args = ["-i", str(audio)]
    if options.get("music"):
        args += ["-stream_loop", "-1", "-i", str(options["music"])]
    return args


def _audio_graph(first_input: int, duration: float, options: dict[str, Any], gain_db: float | None) -> list[str]:
    """Filter chains from the voice (and music) inputs to ``[aout]``: 48 kHz stereo, exact length.

    With ``gain_db`` None the chain stops before the gain, for measuring; otherwise a static gain and
    a lookahead limiter (-1 dBFS, latency compensated so captions stay in sync) finish it.
    """
    voice = f"[{first_input}:a]aresample={media.AUDIO_RATE},aformat=channel_layouts=stereo"
    graph: list[str] = []
    if options.get("music"):
        graph.append(f"{voice},asplit=2[vo][key]")
        graph.append(
            f"[{first_input + 1}:a]aresample={media.AUDIO_RATE},aformat=channel_layouts=stereo,"
            f"volume={options['music_volume']:.3f}[bed]"
        )
        # Duck the bed whenever the voice speaks, then mix; the voice's length decides the end.
        graph.append("[bed][key]sidechaincompress=threshold=0.02:ratio=8:attack=15:release=350[ducked]")
        graph.append("[vo][ducked]amix=inputs=2:duration=first:normalize=0[mix]")
    else:
        graph.append(f"{voice}[mix]")
    tail = f"[mix]atrim=end={duration:.4f},apad=whole_dur={duration:.4f}"
    if gain_db is not None:
        tail += f",volume={gain_db:.2f}dB,alimiter=limit={LIMIT:.3f}:level=0:latency=1"
    graph.append(f"{tail}[aout]")
    return graph


def _measure_mix(ctx: StageContext, audio: Path, duration: float, options: dict[str, Any], gain: float | None) -> float:
    args = ["-hide_banner", "-nostdin", "-nostats", *_audio_inputs(audio, options)]
    graph = _audio_graph(0, duration, options, gain)
    graph[-1] = graph[-1].replace("[aout]", ",ebur128=framelog=quiet[aout]")
    args += ["-filter_complex", ";".join(graph), "-map", "[aout]", "-f", "null", "-"]
    code, lines = media.run_ffmpeg(args, ctx)
    lufs = media.parse_levels(lines).lufs
    if code != 0 or lufs is None:
        raise PermanentStageError(f"could not measure the voiceover loudness: {' | '.join(lines[-3:])}")
    return lufs


def _loudness_gain(ctx: StageContext, audio: Path, duration: float, options: dict[str, Any]) -> float:
    """Gain (dB) that brings the mix to -14 LUFS through the limiter: measure, apply, correct once."""
    measured = _measure_mix(ctx, audio, duration, options, None)
    if measured == float("-inf") or measured < -70:
        raise PermanentStageError("the voiceover is silent", hint="re-run voiceover")
    gain = min(media.TARGET_LUFS - measured, MAX_GAIN_DB)
    # The limiter shaves peaks and with them some loudness; one corrective pass closes the gap.
    limited = _measure_mix(ctx, audio, duration, options, gain)
    return min(gain + (media.TARGET_LUFS - limited), MAX_GAIN_DB)


# -- ffmpeg --------------------------------------------------------------------------------------
def build_command(
    shots: list[Shot],
    captions: list[Caption],
    audio: Path,
    duration: float,
    options: dict[str, Any],
    out: Path,
    motion: Motion,
    gain_db: float,
) -> list[str]:
    """The ffmpeg arguments (without the binary) for the whole short. Public for benchmarks."""
    args = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-progress", "pipe:2", "-nostats"]
    graph: list[str] = []
    n = 0  # next input index
    for i, shot in enumerate(shots):
        if shot.clip is not None and shot.overlay is not None:
            # -t bounds the decode (with -stream_loop -1 a short clip repeats to fill the shot);
            # one decoder thread per clip: every input is open at once (bench/RESULTS.md, -70 MB)
            seconds = shot.frames / FPS + 1.0
            args += [
                "-threads",
                "1",
                "-stream_loop",
                "-1",
                "-t",
                f"{seconds:.3f}",
                "-i",
                str(shot.clip),
                "-i",
                str(shot.overlay),
            ]
            graph.append(f"[{n}:v]{_clip_filter(shot)}[v{i}]")
            graph.append(f"[v{i}][{n + 1}:v]overlay=x=0:y=0:eof_action=repeat,format=yuv420p[s{i}]")
            n += 2
        else:
            args += ["-framerate", str(FPS), "-i", str(shot.image)]
            graph.append(f"[{n}:v]{_pan_filter(shot, motion)}[s{i}]")
            n += 1
    audio_index = n
    args += _audio_inputs(audio, options)
    first_caption = audio_index + (2 if options.get("music") else 1)
    for caption in captions:
        args += ["-i", str(caption.image)]

    frames = sum(s.frames for s in shots)
    graph.append("".join(f"[s{i}]" for i in range(len(shots))) + f"concat=n={len(shots)}:v=1:a=0[base]")
    label = "base"
    for k, caption in enumerate(captions):
        y = CAPTION_CENTER_Y - caption.height // 2
        graph.append(
            f"[{label}][{first_caption + k}:v]overlay=x=(W-w)/2:y={y}:eof_action=repeat:"
            f"enable='gte(t,{caption.start:.3f})*lt(t,{caption.end:.3f})'[c{k}]"
        )
        label = f"c{k}"
    graph += _audio_graph(audio_index, duration, options, gain_db)
    args += [
        "-filter_complex",
        ";".join(graph),
        "-map",
        f"[{label}]",
        "-map",
        "[aout]",
        "-frames:v",
        str(frames),
        "-c:v",
        "libx264",
        "-preset",
        options["preset"],
        "-crf",
        str(options["crf"]),
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-r",
        str(FPS),
        "-c:a",
        "aac",
        "-b:a",
        "160k",
        "-ar",
        str(media.AUDIO_RATE),
        "-ac",
        "2",
        "-movflags",
        "+faststart",
        str(out),
    ]
    return args


def _encode(ctx: StageContext, args: list[str]) -> None:
    """Run the encode, turning ``-progress`` frame counts into stage progress (at most 2 a second)."""
    frames = int(args[args.index("-frames:v") + 1])
    errors: list[str] = []
    last = 0.0

    def on_line(line: str) -> None:
        nonlocal last
        key, _, value = line.partition("=")
        if key == "frame" and value.isdigit():
            now = time.monotonic()
            if now - last >= 0.5 or int(value) >= frames:
                last = now
                ctx.progress(0.06 + 0.88 * min(int(value) / frames, 1.0), f"encoding frame {value}/{frames}")
        elif "=" not in line or " " in key:
            errors.append(line)

    code, _ = media.run_ffmpeg(args, ctx, on_line)
    if code != 0:
        detail = " | ".join(errors[-5:]) or f"exit status {code}"
        if code < 0:  # killed by a signal we did not send (OOM killer...): worth another attempt
            raise TransientStageError(f"ffmpeg was killed (signal {-code}) while encoding: {detail}")
        raise PermanentStageError(f"ffmpeg could not encode the short: {detail}", hint="check the scene images")
