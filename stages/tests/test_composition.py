from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from stages import composition, media, voiceover
from stages.base import PermanentStageError, StageAborted, TransientStageError
from stages.providers.cards import CardRenderer
from stages.tests.helpers import make_context

SCRIPT = {
    "title": "Raspberry Pi 6 gets an AI chip",
    "hook": "Chips just got cheaper.",
    "segments": [
        {"id": "hook", "narration": "Chips just got cheaper.", "headline": "Chips just got cheaper"},
        {"id": "beat1", "narration": "The new board runs small models offline.", "headline": "Runs models offline"},
        {"id": "beat2", "narration": "It costs eighty dollars and ships in March.", "headline": "$80, ships in March"},
        {"id": "cta", "narration": "Follow for more!", "headline": "Follow for more"},
    ],
}
# One dark, distinct background per segment: no near-white pixel anywhere, so any white in the
# caption band of a frame comes from a burned-in caption.
COLORS = {"hook": (20, 40, 120), "beat1": (20, 110, 50), "beat2": (120, 30, 40), "cta": (90, 60, 10)}
CAPTION_BAND = (1150, 1450)


def render_scenes(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    scenes = []
    for i, segment in enumerate(SCRIPT["segments"]):
        color = COLORS[segment["id"]]
        image = Image.new("RGB", (1080, 1920), color)
        draw = ImageDraw.Draw(image)
        for k in range(8):  # shapes so a pan is visible
            x, y, r = 120 + k * 110, 300 + (k * 211) % 1300, 40 + k * 9
            draw.ellipse((x - r, y - r, x + r, y + r), outline=tuple(min(c + 70, 200) for c in color), width=8)
        draw.rectangle((100, 500, 980, 800), fill=tuple(c // 2 for c in color))
        name = f"scene-{i + 1:02d}.png"
        image.save(folder / name)
        scenes.append({"segment": segment["id"], "image": name, "width": 1080, "height": 1920})
    return {"scenes": scenes, "style": {}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Real espeak voiceover (through the stage) + Pillow scenes, shared by the encode tests."""
    root = tmp_path_factory.mktemp("compose-inputs")
    scene_output = render_scenes(root / "scenes")
    vo_ctx = make_context(
        root,
        "voiceover",
        theme={"settings": {"voiceover": {"engine": "espeak-ng"}}},
        upstream={"script_generation": SCRIPT},
    )
    vo_output = voiceover.run(vo_ctx).output
    return {
        "upstream": {"script_generation": SCRIPT, "scene_generation": scene_output, "voiceover": vo_output},
        "upstream_dirs": {"scene_generation": root / "scenes", "voiceover": vo_ctx.work_dir},
    }


def compose_context(tmp_path: Path, inputs: dict, settings: dict | None = None, voice: dict | None = None, log=None):
    upstream = dict(inputs["upstream"])
    if voice is not None:
        upstream["voiceover"] = voice
    return make_context(
        tmp_path,
        "composition",
        theme={"settings": {"composition": settings or {}}},
        upstream=upstream,
        upstream_dirs=inputs["upstream_dirs"],
        progress_log=log,
    )


@pytest.fixture(scope="module")
def composed(inputs, tmp_path_factory) -> dict:
    log: list[tuple[float, str]] = []
    ctx = compose_context(tmp_path_factory.mktemp("composed"), inputs, log=log)
    result = composition.run(ctx)
    return {"ctx": ctx, "result": result, "log": log}


def frame_at(video: Path, seconds: float) -> np.ndarray:
    raw = subprocess.run(
        [media.ffmpeg_exe(), "-v", "error", "-ss", f"{seconds:.3f}", "-i", str(video)]
        + ["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(1920, 1080, 3)


def white_in_band(frame: np.ndarray) -> int:
    """Caption pixels in the band: white words, or the yellow of the word being spoken."""
    band = frame[CAPTION_BAND[0] : CAPTION_BAND[1]].astype(int)
    white = band.min(axis=2) > 225
    yellow = (band[..., 0] > 200) & (band[..., 1] > 170) & (band[..., 2] < 120)
    return int((white | yellow).sum())


@pytest.mark.slow
def test_it_composes_a_vertical_short_that_passes_qc(composed, inputs):
    ctx, result = composed["ctx"], composed["result"]
    out = result.output
    voice = inputs["upstream"]["voiceover"]

    assert (out["video"], out["thumbnail"]) == ("video.mp4", "thumbnail.jpg")
    assert [(a.path, a.kind) for a in result.artifacts] == [
        ("video.mp4", "video"),
        ("thumbnail.jpg", "thumbnail"),
        ("contact.jpg", "image"),
    ]
    # Probe the file ourselves rather than trusting the stage's own QC numbers.
    info = media.probe(ctx.work_dir / "video.mp4")
    assert info.streams == ["video", "audio"]
    assert (info.width, info.height, info.fps) == (1080, 1920, 30.0)
    assert (info.video_codec, info.profile, info.pix_fmt) == ("h264", "High", "yuv420p")
    assert (info.audio_codec, info.audio_rate) == ("aac", 48000)
    assert abs(info.duration - voice["duration"]) <= 0.1
    levels = media.measure_audio(ctx.work_dir / "video.mp4")
    assert levels.mean_volume_db > -50
    assert -16 <= levels.lufs <= -12

    qc = out["qc"]
    assert qc["passed"] is True and all(c["ok"] for c in qc["checks"])
    assert {"width", "height", "fps", "duration", "voice_duration", "video_codec", "profile", "pix_fmt"} <= set(qc)
    assert {"audio_codec", "audio_rate", "mean_volume_db", "lufs"} <= set(qc)
    assert out["duration"] == qc["duration"]

    with Image.open(ctx.work_dir / "contact.jpg") as sheet:  # one frame of each shot, in order
        tiles = [np.asarray(sheet.convert("RGB").crop((i * 184, 0, i * 184 + 180, 320))) for i in range(4)]
    for tile, segment in zip(tiles, SCRIPT["segments"], strict=True):
        corner = tile[10:40, 5:35].reshape(-1, 3).mean(axis=0)
        assert np.abs(corner - np.array(COLORS[segment["id"]])).max() < 30, segment["id"]
    assert [s["segment"] for s in out["contact_sheet"]["shots"]] == [s["id"] for s in SCRIPT["segments"]]
    with Image.open(ctx.work_dir / "thumbnail.jpg") as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (720, 1280))
    assert not (ctx.work_dir / "captions").exists()  # scratch PNGs do not stay in the checkpoint
    fractions = [f for f, _ in composed["log"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum(m.startswith("rendered ") for _, m in composed["log"]) >= 2  # progress per piece


@pytest.mark.slow
def test_it_burns_captions_and_cuts_scenes_in_sync_with_the_voice(composed, inputs):
    video = composed["ctx"].work_dir / "video.mp4"
    voice = inputs["upstream"]["voiceover"]
    captions = voice["captions"]

    before_speech = frame_at(video, 0.0)  # the first caption starts after the 0.1 s lead-in
    assert captions[0]["start"] > 0.05
    assert white_in_band(before_speech) == 0
    for caption in (captions[0], captions[len(captions) // 2], captions[-1]):
        frame = frame_at(video, (caption["start"] + caption["end"]) / 2)
        assert white_in_band(frame) > 3000, caption
        assert int((frame[:1100].min(axis=2) > 225).sum()) == 0  # white only where captions go
    Image.fromarray(frame_at(video, (captions[1]["start"] + captions[1]["end"]) / 2)).save(
        composed["ctx"].work_dir.parent / "caption-frame.png"
    )

    for window in voice["segments"]:
        frame = frame_at(video, (window["start"] + window["end"]) / 2)
        corner = frame[60:260, 20:220].reshape(-1, 3).mean(axis=0)
        expected = np.array(COLORS[window["segment"]])
        assert np.abs(corner - expected).max() < 25, (window, corner)  # the segment's own scene
        assert frame[:, :4].mean() > 5 and frame[:, -4:].mean() > 5  # no black borders
        assert frame[:4].mean() > 5 and frame[-4:].mean() > 5

    # Ken Burns: the picture moves within a shot.
    first = voice["segments"][1]
    start, end = frame_at(video, first["start"] + 0.05), frame_at(video, first["end"] - 0.1)
    top = slice(0, 1100)
    assert np.abs(start[top].astype(int) - end[top].astype(int)).mean() > 1.0


@pytest.mark.slow
def test_it_refuses_a_video_that_fails_qc(tmp_path, inputs):
    # ultrafast makes x264 drop to Constrained Baseline, which platforms take but our QC does not.
    ctx = compose_context(tmp_path, inputs, settings={"preset": "ultrafast"})
    with pytest.raises(PermanentStageError) as exc:
        composition.run(ctx)
    assert "QC failed" in exc.value.message
    assert "profile: Constrained Baseline, want High" in exc.value.message


def test_it_rejects_a_voiceover_whose_audio_does_not_match(tmp_path, inputs):
    voice = dict(inputs["upstream"]["voiceover"], duration=inputs["upstream"]["voiceover"]["duration"] + 1.0)
    ctx = compose_context(tmp_path, inputs, voice=voice)
    with pytest.raises(PermanentStageError) as exc:
        composition.run(ctx)
    assert "voice.wav" in exc.value.message
    assert not (ctx.work_dir / "video.mp4").exists()


def test_it_rejects_a_missing_music_file(tmp_path, inputs):
    ctx = compose_context(tmp_path, inputs, settings={"music": str(tmp_path / "nope.mp3")})
    with pytest.raises(PermanentStageError) as exc:
        composition.run(ctx)
    assert '["composition"]["music"]' in exc.value.message and "does not exist" in exc.value.message


@pytest.mark.slow
def test_it_lays_a_music_bed_under_the_voice(tmp_path, inputs):
    music = tmp_path / "bed.wav"
    subprocess.run(
        [media.ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=330:duration=3", str(music)],
        check=True,
    )
    ctx = compose_context(tmp_path, inputs, settings={"music": str(music), "music_volume": 0.3})
    out = composition.run(ctx).output
    assert out["qc"]["passed"] is True
    assert out["mix"]["bed"] == "bed.wav" and out["mix"]["loudnorm"] == "linear"
    # Between two segments the voice pauses: the (looped) bed is what plays there.
    windows = inputs["upstream"]["voiceover"]["segments"]
    words = inputs["upstream"]["voiceover"]["words"]
    gap_start = max(w["end"] for w in words if w["segment"] == windows[0]["segment"])
    gap_end = min(w["start"] for w in words if w["segment"] == windows[1]["segment"])
    assert gap_end - gap_start > 0.2
    pause = subprocess.run(
        [media.ffmpeg_exe(), "-hide_banner", "-ss", f"{gap_start + 0.05:.3f}", "-t", f"{gap_end - gap_start - 0.1:.3f}"]
        + ["-i", str(ctx.work_dir / "video.mp4"), "-vn", "-af", "volumedetect", "-f", "null", "-"],
        capture_output=True,
        text=True,
    ).stderr
    assert media.parse_levels(pause.splitlines()).mean_volume_db > -45


def _encoder_pid(work_dir: Path) -> int | None:
    target = str(work_dir / "pieces").encode()  # the picture is encoded in pieces before the join
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"libx264" in cmdline and target in cmdline:
            return int(proc.name)
    return None


@pytest.mark.slow
def test_it_kills_ffmpeg_when_cancelled(tmp_path, inputs):
    ctx = compose_context(tmp_path, inputs)
    outcome: dict[str, BaseException] = {}

    def compose() -> None:
        try:
            composition.run(ctx)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=compose)
    worker.start()
    deadline = time.monotonic() + 30
    pid = None
    while pid is None and time.monotonic() < deadline and worker.is_alive():
        pid = _encoder_pid(ctx.work_dir)
        time.sleep(0.01)
    assert pid is not None, "the encoder never started"

    cancelled = time.monotonic()
    ctx.abort.abort("cancelled")
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert time.monotonic() - cancelled < 3
    assert isinstance(outcome.get("error"), StageAborted)
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped


def test_it_keeps_card_text_inside_the_safe_zone_while_panning():
    style = CardRenderer().style("seed")
    box, safe = style["text_box"], style["safe_box"]
    motion = composition.motion_for(style)
    assert motion.zoom == 1.08
    zx, zy = motion.big[0] / 1080, motion.big[1] / 1920
    for ox in motion.x_range:
        assert box[0] * zx - ox >= safe[0] - 0.5 and box[2] * zx - ox <= safe[2] + 0.5
    for oy in motion.y_range:
        assert box[1] * zy - oy >= safe[1] - 0.5 and box[3] * zy - oy <= safe[3] + 0.5
    assert motion.x_range[1] - motion.x_range[0] > 25  # still a visible drift, both ways
    assert motion.y_range[1] - motion.y_range[0] > 40

    free = composition.motion_for({})
    assert free.x_range == (0.0, 86.0) and free.y_range == (0.0, 154.0)


def two_colour_clip(path: Path, size: str = "540x960") -> Path:
    """1 s red then 1 s blue, 25 fps, with an audio track the short must not use."""
    subprocess.run(
        [
            media.ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"color=c=0xdc1e1e:s={size}:r=25:d=1",
            "-f",
            "lavfi",
            "-i",
            f"color=c=0x1e3cdc:s={size}:r=25:d=1",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:duration=2",
            "-filter_complex",
            "[0:v][1:v]concat=n=2:v=1:a=0[v]",
            "-map",
            "[v]",
            "-map",
            "2:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.mark.slow
def test_it_plays_a_stock_clip_under_the_card_text_looping_a_short_one(tmp_path, inputs):
    folder = tmp_path / "scenes"
    scene_output = render_scenes(folder)
    two_colour_clip(folder / "clip-02.mp4")
    layer = Image.new("RGBA", (1080, 1920), (0, 0, 0, 128))  # the scrim: black at 50 %
    ImageDraw.Draw(layer).rectangle((100, 400, 980, 700), fill=(255, 255, 255, 255))  # "the headline"
    layer.save(folder / "text-02.png")
    beat1 = scene_output["scenes"][1]
    beat1.update(clip="clip-02.mp4", clip_seconds=2.0, overlay="text-02.png")
    window = next(w for w in inputs["upstream"]["voiceover"]["segments"] if w["segment"] == "beat1")
    assert window["end"] - window["start"] > 2.2, "the window must be longer than the clip to show the loop"
    upstream = dict(inputs["upstream"], scene_generation=scene_output)
    ctx = make_context(
        tmp_path, "composition", upstream=upstream, upstream_dirs=dict(inputs["upstream_dirs"], scene_generation=folder)
    )
    out = composition.run(ctx).output
    assert out["qc"]["passed"] is True
    video = ctx.work_dir / "video.mp4"
    assert abs(media.probe(video).duration - inputs["upstream"]["voiceover"]["duration"]) <= 0.1

    def corner(seconds: float) -> np.ndarray:  # a patch clear of the text layer and the captions
        return frame_at(video, window["start"] + seconds)[80:260, 60:240].reshape(-1, 3).mean(axis=0)

    red, blue, red_again = corner(0.4), corner(1.5), corner(2.1)
    # the clip plays (red, then blue, then red when it loops), darkened by the 50 % scrim
    assert red[0] > 90 and red[2] < 40 and red[0] < 140, red
    assert blue[2] > 90 and blue[0] < 40, blue
    assert red_again[0] > 90 and red_again[2] < 40, red_again
    frame = frame_at(video, window["start"] + 0.4)
    assert frame[450:650, 200:880].min() > 230  # the text layer is drawn over the clip, not darkened
    # the shots around it are still the still scenes, in their own colours
    hook = next(w for w in inputs["upstream"]["voiceover"]["segments"] if w["segment"] == "hook")
    patch = frame_at(video, (hook["start"] + hook["end"]) / 2)[60:260, 20:220].reshape(-1, 3).mean(axis=0)
    assert np.abs(patch - np.array(COLORS["hook"])).max() < 25
    # the clip's own audio never reaches the short: the voice is the only sound (no 1 kHz tone)
    levels = media.measure_audio(video)
    assert -16 <= levels.lufs <= -12


@pytest.mark.slow
def test_a_full_disk_while_encoding_is_transient_with_a_hint(tmp_path, inputs):
    ctx = compose_context(tmp_path, inputs)
    (ctx.work_dir / "video.mp4").symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    with pytest.raises(TransientStageError) as exc:
        composition.run(ctx)
    assert "no space left" in exc.value.message.lower()
    assert "free space" in exc.value.hint
