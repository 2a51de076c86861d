from __future__ import annotations

import subprocess

import numpy as np
import pytest

from stages import media

# What ffmpeg 9 prints for a finished short (``ffmpeg -hide_banner -i video.mp4``).
PROBE_LINES = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'video.mp4':
  Metadata:
    major_brand     : isom
    minor_version   : 512
    compatible_brands: isomiso2avc1mp41
    encoder         : Lavf63.1.102
  Duration: 00:00:29.31, start: 0.000000, bitrate: 587 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1080x1920 [SAR 1:1 DAR 9:16], 434 kb/s, 30 fps, 30 tbr, 15360 tbn (default)
    Metadata:
      handler_name    : VideoHandler
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 143 kb/s (default)
At least one output file must be specified""".splitlines()

LEVEL_LINES = """\
[Parsed_ebur128_0 @ 0x7f2604001c40] Summary:
Integrated loudness:
I:         -14.2 LUFS
Threshold: -24.6 LUFS
Loudness range:
LRA:         3.4 LU
Threshold: -34.0 LUFS
LRA low:   -17.1 LUFS
LRA high:  -13.7 LUFS
True peak:
Peak:       -1.8 dBFS
[Parsed_volumedetect_1 @ 0x7f2604002140] n_samples: 1406786
[Parsed_volumedetect_1 @ 0x7f2604002140] mean_volume: -17.3 dB
[Parsed_volumedetect_1 @ 0x7f2604002140] max_volume: -0.7 dB""".splitlines()


def test_it_parses_ffmpeg_stream_lines():
    info = media.parse_probe(PROBE_LINES)

    assert info.duration == pytest.approx(29.31)
    assert (info.video_codec, info.profile, info.pix_fmt) == ("h264", "High", "yuv420p")
    assert (info.width, info.height, info.fps) == (1080, 1920, 30.0)
    assert (info.audio_codec, info.audio_rate, info.audio_channels) == ("aac", 48000, "stereo")
    assert info.streams == ["video", "audio"]


def test_it_parses_loudness_and_volume():
    levels = media.parse_levels(LEVEL_LINES)

    assert (levels.lufs, levels.lra, levels.true_peak) == (-14.2, 3.4, -1.8)
    assert (levels.mean_volume_db, levels.max_volume_db) == (-17.3, -0.7)


def test_it_passes_a_good_video_and_names_every_failed_check():
    info = media.parse_probe(PROBE_LINES)
    good = media.check_video(info, media.parse_levels(LEVEL_LINES), expected_duration=29.3)
    assert good["passed"] is True
    assert all(c["ok"] for c in good["checks"])

    info.profile, info.audio_rate = "Constrained Baseline", 44100
    silent = media.AudioLevels(mean_volume_db=-91.0, max_volume_db=-91.0, lufs=-70.0, true_peak=-60.0)
    bad = media.check_video(info, silent, expected_duration=31.0)
    assert bad["passed"] is False
    failed = {c["name"] for c in bad["checks"] if not c["ok"]}
    assert failed == {"profile", "audio rate", "duration", "audio not silent", "loudness"}
    assert next(c for c in bad["checks"] if c["name"] == "duration")["detail"].startswith("29.31 s, voiceover 31.000 s")


def test_it_holds_loudness_to_one_lu_and_the_true_peak_to_minus_one():
    info = media.parse_probe(PROBE_LINES)

    def failed(lufs: float, peak: float) -> set[str]:
        levels = media.AudioLevels(mean_volume_db=-17.0, max_volume_db=-1.0, lufs=lufs, true_peak=peak)
        return {c["name"] for c in media.check_video(info, levels, expected_duration=29.3)["checks"] if not c["ok"]}

    assert failed(-14.9, -1.0) == set()
    assert failed(-13.1, -1.5) == set()
    assert failed(-15.2, -1.5) == {"loudness"}  # 1.2 LU off: out
    assert failed(-12.8, -1.5) == {"loudness"}
    assert failed(-14.0, -0.6) == {"true peak"}  # the demo's old mix: -0.6 dBTP
    assert failed(-14.0, -0.9) == {"true peak"}


@pytest.mark.slow
def test_it_probes_and_measures_a_real_file(tmp_path):
    out = tmp_path / "clip.mp4"
    subprocess.run(
        [
            media.ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=1080x1920:r=30:d=1.5",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=1.5",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
            str(out),
        ],
        check=True,
    )

    info = media.probe(out)
    levels = media.measure_audio(out)
    qc = media.check_video(info, levels, expected_duration=1.5)

    assert (info.width, info.height, info.fps, info.profile) == (1080, 1920, 30.0, "High")
    assert (info.audio_codec, info.audio_rate) == ("aac", 48000)
    assert info.duration == pytest.approx(1.5, abs=0.05)
    assert levels.mean_volume_db is not None and -30 < levels.mean_volume_db < -10  # ffmpeg's sine is -18 dBFS
    assert levels.lufs is not None
    failed = {c["name"] for c in qc["checks"] if not c["ok"]}
    assert failed <= {"loudness"}  # a test tone is not mastered to -14 LUFS
    assert levels.true_peak is not None and levels.true_peak < 0


def test_it_measures_a_missing_file_as_nothing(tmp_path):
    info = media.probe(tmp_path / "nope.mp4")
    assert info.video_codec is None and info.duration is None
    assert media.measure_audio(tmp_path / "nope.mp4").mean_volume_db is None


def test_it_renders_caption_blocks_that_fit_the_frame():
    short = media.text_block("Chips just got cheaper")
    assert short.mode == "RGBA"
    assert short.width <= 960
    alpha = short.getchannel("A")
    assert alpha.getpixel((0, 0)) == 0  # rounded corner
    assert alpha.getpixel((short.width // 2, short.height // 2)) > 0
    pixels = np.asarray(short)
    white = int(((pixels[..., 3] == 255) & (pixels[..., :3].min(axis=2) > 240)).sum())
    assert white > 2000  # the letters themselves

    long = media.text_block("Early benchmarks show the NPU running")
    assert long.width <= 960
    assert long.height > short.height * 1.5  # wrapped onto two rows

    one_word = media.text_block("Supercalifragilisticexpialidocious-level")
    assert one_word.width <= 960  # shrunk rather than cut off
