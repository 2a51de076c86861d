"""Targeted edits (issue 14) at the stage level: scene_generation and composition re-run with the
job's overrides and their own last checkpoint (``base_output``/``base_dir``), reusing what did
not change. The engine that fills those in is tested with the orchestrator."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import captions, composition, media, qc, scene_generation
from stages.base import PermanentStageError
from stages.tests import test_craft
from stages.tests.helpers import make_context
from stages.tests.test_composition import COLORS, SCRIPT, frame_at, white_in_band
from stages.tests.test_scene_generation import SCRIPT as SCENE_SCRIPT
from stages.tests.test_scene_generation import TOPIC


def scenes(tmp_path: Path, name: str, overrides=None, base=None) -> tuple[dict, Path]:
    """One scene_generation run (offline cards) in its own folder; ``base`` is an earlier (output, dir)."""
    ctx = make_context(
        tmp_path / name,
        "scene_generation",
        upstream={"script_generation": SCENE_SCRIPT, "trend_analysis": {"topic": TOPIC, "candidates": []}},
        overrides=overrides,
        base_output=base[0] if base else None,
        base_dir=base[1] if base else None,
    )
    return scene_generation.run(ctx).output, ctx.work_dir


def scene_edit(n: int, **edit) -> dict:
    return {"segments": {str(n): {"scene": {"take": 1, **edit}}}}


def test_a_text_edit_re_renders_that_scene_only_and_links_the_others(tmp_path):
    first = scenes(tmp_path, "first")
    out, folder = scenes(tmp_path, "second", scene_edit(3, text="Now with 16 GB"), base=first)

    assert [s["reused"] for s in out["scenes"]] == [True, True, False, True, True, True]
    assert out["scenes"][2]["text"] == "Now with 16 GB"
    assert out["scenes"][2]["override"] == {"take": 1, "text": "Now with 16 GB"}
    assert out["scenes"][2]["key"] != first[0]["scenes"][2]["key"]
    for i, (old, new) in enumerate(zip(first[0]["scenes"], out["scenes"], strict=True)):
        before, after = first[1] / old["image"], folder / new["image"]
        assert new["image"] == f"scene-{i + 1:02d}.png"
        if i == 2:
            assert before.read_bytes() != after.read_bytes()
        else:  # the same file, hard-linked (not pointed at: the new checkpoint holds it)
            assert new["key"] == old["key"]
            assert os.stat(before).st_ino == os.stat(after).st_ino
    # the overrides apply on every run: a later re-run keeps the edit and reuses the edited scene
    again, again_dir = scenes(tmp_path, "third", scene_edit(3, text="Now with 16 GB"), base=(out, folder))
    assert all(s["reused"] for s in again["scenes"])
    assert again["scenes"][2]["text"] == "Now with 16 GB"


def test_another_pick_is_a_different_card_and_the_same_one_every_time(tmp_path):
    original = scenes(tmp_path, "original")
    pick1, dir1 = scenes(tmp_path, "pick1", scene_edit(2, pick=1), base=original)
    pick1_again, dir1_again = scenes(tmp_path, "pick1-again", scene_edit(2, pick=1))
    pick2, dir2 = scenes(tmp_path, "pick2", scene_edit(2, pick=2), base=(pick1, dir1))

    def pixels(folder: Path) -> np.ndarray:
        return np.asarray(Image.open(folder / "scene-02.png"), dtype=np.int16)

    base = pixels(original[1])
    assert np.abs(pixels(dir1) - base).mean() > 5  # another background
    assert (dir1 / "scene-02.png").read_bytes() == (dir1_again / "scene-02.png").read_bytes()  # deterministic
    assert np.abs(pixels(dir2) - pixels(dir1)).mean() > 5
    assert pick1["scenes"][1]["text"] == original[0]["scenes"][1]["text"]  # same key phrase, same look
    assert [s["reused"] for s in pick2["scenes"]] == [True, False, True, True, True, True]


@pytest.fixture
def uploads(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    folder = tmp_path / "media" / "jobs" / "1" / "uploads"
    folder.mkdir(parents=True)
    return folder


def test_an_uploaded_image_becomes_the_scene_cover_fitted(tmp_path, uploads):
    picture = Image.new("RGB", (1600, 900), (200, 30, 30))  # landscape: red, a blue middle band
    picture.paste((30, 30, 200), (600, 0, 1000, 900))
    picture.save(uploads / "ab12.jpg", quality=95)
    out, folder = scenes(tmp_path, "up", scene_edit(4, upload="jobs/1/uploads/ab12.jpg", media="image"))

    scene = out["scenes"][3]
    assert scene["source"] == "upload" and scene["upload"] == "jobs/1/uploads/ab12.jpg"
    assert scene["text"] == "" and scene["boxes"] == {}
    with Image.open(folder / scene["image"]) as image:
        assert image.size == (1080, 1920)
        rgb = np.asarray(image.convert("RGB"), dtype=int)
    # cover: the 900 px high picture scaled to 1920 high and its middle kept: blue in the centre,
    # red at both sides, no letterbox bars
    assert rgb[960, 540, 2] > 150 and rgb[960, 540, 0] < 80
    assert rgb[960, 20, 0] > 150 and rgb[960, 1060, 0] > 150
    assert rgb[5, 20].sum() > 150


@pytest.mark.slow
def test_an_uploaded_clip_becomes_the_scene_normalised_to_the_frame(tmp_path, uploads):
    subprocess.run(
        [media.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=2"]
        + ["-f", "lavfi", "-i", "sine=duration=2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p"]
        + ["-c:a", "aac", str(uploads / "cd34.mp4")],
        check=True,
    )
    out, folder = scenes(tmp_path, "clip", scene_edit(2, upload="jobs/1/uploads/cd34.mp4", media="video"))

    scene = out["scenes"][1]
    assert scene["clip"] == "clip-02.mp4" and "overlay" not in scene
    info = media.probe(folder / "clip-02.mp4")
    assert (info.width, info.height, info.fps, info.video_codec, info.pix_fmt) == (1080, 1920, 30, "h264", "yuv420p")
    assert info.audio_codec is None  # the upload's sound never reaches the short
    assert abs(info.duration - 2.0) < 0.1
    with Image.open(folder / scene["image"]) as still:
        assert still.size == (1080, 1920)


@pytest.mark.parametrize("path", ["../outside.png", "jobs/1/uploads/../../../../outside.png", "/etc/passwd", "link"])
def test_an_upload_outside_media_root_is_refused(tmp_path, uploads, path):
    Image.new("RGB", (64, 64)).save(tmp_path / "outside.png")
    (uploads.parents[2] / "link").symlink_to(tmp_path / "outside.png")
    with pytest.raises(PermanentStageError, match="outside MEDIA_ROOT"):
        scenes(tmp_path, "evil", scene_edit(2, upload=path, media="image"))


@pytest.mark.parametrize("edit", [{"pick": "next"}, {"pick": -1}, {"text": 5}, {"upload": "a.png", "media": "gif"}])
def test_a_malformed_scene_edit_fails_the_stage_with_a_hint(tmp_path, edit):
    with pytest.raises(PermanentStageError, match="scene edit 2 is malformed") as exc:
        scenes(tmp_path, "bad", scene_edit(2, **edit))
    assert exc.value.hint


def test_a_caption_edit_replaces_the_words_shown_over_the_segments_spoken_time():
    words = [
        captions.Word("Chips", 0.0, 0.4, "hook", 0),
        captions.Word("got", 0.4, 0.7, "hook", 0),
        captions.Word("cheaper.", 0.7, 1.2, "hook", 0),
        captions.Word("Board", 1.5, 1.9, "beat1", 1),
    ]
    edited = captions.apply_overrides(words, SCRIPT, {"segments": {"1": {"caption": "Prices fall"}}})

    assert [w.text for w in edited] == ["Prices", "fall", "Board"]
    assert edited[0].start == 0.0 and abs(edited[1].end - 1.2) < 1e-9 and edited[0].end == edited[1].start
    assert [w.override for w in edited] == [True, True, False]
    # QC holds only the spoken words to the voice's timings
    track = captions.Track(
        "karaoke", 80, [captions.Picture(0, [0], 0), captions.Picture(20, [1], 1), captions.Picture(45, [2], 2)], edited
    )
    assert qc.sync_errors(track, edited) == [pytest.approx(0.0)]
    assert qc.overridden_spans(edited) == [(pytest.approx(-0.1), pytest.approx(1.3))]


def test_qc_leaves_an_operators_card_or_caption_text_to_the_operator():
    def shot(segment: str, text: str, **scene) -> composition.Shot:
        return composition.Shot(Path("x.png"), segment, 0, 30, ((0, 0), (1, 1)), scene={"text": text, **scene})

    script = {"segments": [{"id": "beat1", "narration": "The new board runs small models offline."}]}
    spoken = [captions.Word("The", 0.0, 0.2, "beat1", 0)]
    assert qc.duplicated_text([shot("beat1", "The new board runs small models offline")], script, spoken)[0]
    # the operator wrote the card text: reported, not failed
    edited = shot("beat1", "The new board runs small models offline", override={"take": 1, "text": "..."})
    repeats, chosen = qc.duplicated_text([edited], script, spoken)
    assert repeats == [] and "repeats the captions" in chosen[0]
    # a caption edit: the card is held to the words the captions now show, not the narration
    shown = captions.apply_overrides(
        spoken, {"segments": [{"id": "beat1"}]}, {"segments": {"1": {"caption": "Cheap AI"}}}
    )
    assert qc.duplicated_text([shot("beat1", "The new board runs small models offline")], script, shown) == ([], [])
    assert qc.duplicated_text([shot("beat1", "Cheap AI")], script, shown)[0] == []


def test_pieces_tile_the_video_and_a_long_shot_is_cut_in_parts():
    def shot(start: int, end: int) -> composition.Shot:
        return composition.Shot(Path("x.png"), "s", start, end, ((0, 0), (1, 1)))

    shots = [shot(0, 105), shot(95, 505), shot(495, 600)]  # 10-frame crosses; the middle shot is long
    pieces = composition.plan_pieces(shots, 10)
    assert [p.name for p in pieces] == [
        "body-01",
        "cross-02",
        "body-02.1",
        "body-02.2",
        "body-02.3",
        "cross-03",
        "body-03",
    ]
    assert [p.start for p in pieces] == [0, 95, 105, 235, 365, 495, 505]
    assert sum(p.frames for p in pieces) == 600 and max(p.frames for p in pieces) <= composition.MAX_PIECE_FRAMES


# -- re-composition ------------------------------------------------------------------------------
voiced = test_craft.voiced  # the fixture: the test script spoken by eSpeak NG over still scenes


def compose(tmp_path: Path, voiced: dict, scene_dir: Path, overrides=None, base=None) -> tuple[dict, Path]:
    ctx = make_context(
        tmp_path,
        "composition",
        upstream=voiced["upstream"],
        upstream_dirs={**voiced["dirs"], "scene_generation": scene_dir},
        overrides=overrides,
        base_output=base[0] if base else None,
        base_dir=base[1] if base else None,
    )
    return composition.run(ctx).output, ctx.work_dir


@pytest.mark.slow
def test_a_re_composition_after_one_scene_change_renders_only_that_shots_pieces(tmp_path, voiced):
    first = compose(tmp_path / "first", voiced, voiced["dirs"]["scene_generation"])
    assert first[0]["render"]["reused"] == [] and first[0]["render"]["mix_reused"] is False

    swapped = tmp_path / "swapped-scenes"  # scene_generation's new checkpoint: beat1 is another picture
    shutil.copytree(voiced["dirs"]["scene_generation"], swapped)
    Image.new("RGB", (1080, 1920), (200, 200, 40)).save(swapped / "scene-02.png")
    out, folder = compose(tmp_path / "second", voiced, swapped, base=first)

    assert out["render"]["rendered"] == ["cross-02", "body-02", "cross-03"]
    assert out["render"]["mix_reused"] is True
    assert len(out["render"]["reused"]) == len(out["pieces"]) - 3
    for piece in out["pieces"]:
        if piece["reused"]:
            assert (
                os.stat(folder / "pieces" / piece["file"]).st_ino == os.stat(first[1] / "pieces" / piece["file"]).st_ino
            )
    video = folder / "video.mp4"
    info = media.probe(video)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (1080, 1920, "h264", "aac")
    assert abs(info.duration - voiced["upstream"]["voiceover"]["duration"]) <= 0.1
    assert out["qc"]["passed"] is True
    windows = {w["segment"]: w for w in voiced["upstream"]["voiceover"]["segments"]}

    def mid(segment: str) -> float:
        return (windows[segment]["start"] + windows[segment]["end"]) / 2

    after = frame_at(video, mid("beat1"))
    assert np.abs(after[60:260, 20:220].reshape(-1, 3).mean(axis=0) - (200, 200, 40)).max() < 25  # the new scene
    assert np.abs(after[60:260, 20:220].reshape(-1, 3).mean(axis=0) - COLORS["beat1"]).max() > 60
    for segment in ("hook", "beat2", "cta"):  # elsewhere the very same frames
        assert np.array_equal(frame_at(video, mid(segment)), frame_at(first[1] / "video.mp4", mid(segment)))

    # a caption edit of segment 3 (beat2): only the pieces under its captions, the words replaced
    edit = {"segments": {"3": {"caption": "Eighty bucks in March"}}}
    third, third_dir = compose(tmp_path / "third", voiced, swapped, overrides=edit, base=(out, folder))
    assert third["qc"]["passed"] is True
    assert third["captions"]["overridden"] == ["beat2"]
    assert "body-03" in third["render"]["rendered"] and "body-01" in third["render"]["reused"]
    assert "body-02" in third["render"]["reused"] and third["render"]["mix_reused"] is True
    before, now = frame_at(video, mid("beat2")), frame_at(third_dir / "video.mp4", mid("beat2"))
    assert white_in_band(now) > 500 and not np.array_equal(before, now)  # other words in the band
    # the picture above the captions is the same (encoded again: equal up to the encoder's rounding)
    assert np.abs(now[:1100].astype(int) - before[:1100]).mean() < 1.5
