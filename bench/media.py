"""Media benchmark (issues 3 and 13), side by side in one run.

1. Composition of a 30 s short (6 scenes; everything issue 13 added: karaoke captions from word
   timings, xfade transitions, pans, a ducked music bed, two-pass loudnorm, the contact sheet and
   the full QC) against the limit: one plain ffmpeg encode of the same 6 stills + the voice, no
   effects (x264 veryfast crf 23, AAC). Rounds are interleaved so machine load hits both alike;
   wall and CPU time, peak RSS. The same short with 6 stock clips (memory, not a time target).
2. The whole offline job for a 30 s short, trigger to awaiting_review, with each stage's share.
3. ``--quality``: size against quality of the stage's encode at several x264 settings, against a
   lossless render of the same frames: SSIM, and a banding figure (the share of smooth-gradient
   16x16 blocks the encode flattens into one level).
4. ``--sync``: word-sync errors per voice (own timings, and words found in audio without them).

Run:  .venv/bin/python bench/media.py [--rounds 3] [--quality] [--sync]
Targets (2 cores): composition <= 1.5x the limit's wall time, peak RSS <= 600 MB (stock clips
too); the whole job <= 15 s for a 30 s video.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_django(var_dir: str) -> None:
    os.environ["TRENDREEL_VAR_DIR"] = var_dir
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("SECRET_KEY", "bench-insecure-trendreel-not-for-production")  # settings refuse none
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()


def prepare(work: Path) -> dict:
    """Real inputs from the real stages: demo topic -> script (6 segments) -> cards -> Piper voice."""
    from stages import scene_generation, script_generation, voiceover
    from stages.tests.helpers import make_context

    topic = {
        "trend_id": 1,
        "title": "Open-source AI model runs entirely on a Raspberry Pi 5",
        "source": "technews",
        "summary": (
            "The Oslo-based lab's Fjord-2B model answers questions, summarises documents and transcribes speech "
            "without a network connection. It runs at about nine tokens per second on an 8 GB board. "
            "Weights and training code are published under the Apache 2.0 licence. Hobbyists already "
            "run it in home assistants and offline translators."
        ),
        "url": "https://example.org/fjord",
        "keywords": ["ai", "raspberry pi", "open source"],
        "hashtags": ["#AI", "#RaspberryPi"],
        "angle": "breaking",
        "related": [],
    }
    theme = {"target_seconds": 30, "settings": {"script_generation": {"beats": 4}}}  # hook + 4 beats + cta = 6 scenes
    up: dict = {"trend_analysis": {"topic": topic}}
    dirs: dict = {}
    for stage, module in [
        ("script_generation", script_generation),
        ("scene_generation", scene_generation),
        ("voiceover", voiceover),
    ]:
        ctx = make_context(work, stage, theme=theme, upstream=up, upstream_dirs=dirs)
        up[stage] = module.run(ctx).output
        dirs[stage] = ctx.work_dir
    # For the stock-footage mode: a portrait HD clip with motion (as Pexels serves them: 1080x1920,
    # 25 fps, H.264), 6 s so longer shots loop, and a scrim + text layer like scene_generation's.
    from PIL import Image

    from stages import media
    from stages.providers.cards import CardRenderer, CardSpec

    scene_dir = dirs["scene_generation"]
    subprocess.run(
        [
            media.ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1080x1920:rate=25:duration=6",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            str(scene_dir / "stock-clip.mp4"),
        ],
        check=True,
    )
    text = CardRenderer().text_layer(
        CardSpec(headline="Runs entirely on a Raspberry Pi 5", index=1, total=6, seed=topic["title"])
    )
    Image.alpha_composite(Image.new("RGBA", text.size, (12, 14, 30, 107)), text).save(scene_dir / "stock-overlay.png")
    return {"upstream": up, "dirs": {k: str(v) for k, v in dirs.items()}}


def child(mode: str, inputs: Path, out: Path) -> None:
    """One measured run in a fresh process, so RUSAGE_CHILDREN is ffmpeg's peak alone."""
    data = json.loads(inputs.read_text())
    from stages import composition, media
    from stages.tests.helpers import make_context

    up, dirs = data["upstream"], {k: Path(v) for k, v in data["dirs"].items()}
    t0 = time.perf_counter()
    if mode in ("stage", "clips"):
        if mode == "clips":  # every scene as stock footage: the prepared clip under its text layer
            up = {
                **up,
                "scene_generation": {
                    **up["scene_generation"],
                    "scenes": [
                        {**scene, "clip": "stock-clip.mp4", "overlay": "stock-overlay.png"}
                        for scene in up["scene_generation"]["scenes"]
                    ],
                },
            }
        ctx = make_context(out, "composition", upstream=up, upstream_dirs=dirs)
        result = composition.run(ctx)
        assert result.output["qc"]["passed"], [c for c in result.output["qc"]["checks"] if not c["ok"]]
        if mode == "stage":
            (out / "qc.json").write_text(json.dumps(result.output["qc"]))
    else:
        vo = up["voiceover"]
        scenes = up["scene_generation"]["scenes"]
        args = [media.ffmpeg_exe(), "-hide_banner", "-y", "-loglevel", "error"]
        graph = []
        for i, (scene, seg) in enumerate(zip(scenes, vo["segments"], strict=False)):
            frames = max(1, round((seg["end"] - seg["start"]) * 30))
            args += ["-framerate", "30", "-i", str(dirs["scene_generation"] / scene["image"])]
            graph.append(f"[{i}:v]format=yuv420p,loop=loop={frames - 1}:size=1:start=0,settb=1/30,setpts=N[s{i}]")
        n = len(scenes)
        args += ["-i", str(dirs["voiceover"] / vo["audio"])]
        graph.append("".join(f"[s{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]")
        out.mkdir(parents=True, exist_ok=True)
        args += [
            "-filter_complex",
            ";".join(graph),
            "-map",
            "[v]",
            "-map",
            f"{n}:a",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            "-r",
            "30",
            "-c:a",
            "aac",
            "-ar",
            "48000",
            "-movflags",
            "+faststart",
            str(out / "plain.mp4"),
        ]
        subprocess.run(args, check=True)
    wall = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": kids.ru_utime + kids.ru_stime,
                "ffmpeg_rss_mb": kids.ru_maxrss / 1024,
                "python_rss_mb": me.ru_maxrss / 1024,
            }
        )
    )


def measure(mode: str, inputs: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(inputs), str(out)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    if proc.returncode:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quality(inputs: Path, var: Path) -> None:
    """Size against quality of the stage's own encode: the same filter graph at several x264
    settings, each compared with a lossless render of the same frames (SSIM over all frames;
    banding: smooth-gradient blocks of the lossless frame that the encode flattens to one level)."""
    import numpy as np

    from stages import composition, media
    from stages.tests.helpers import make_context

    data = json.loads(inputs.read_text())
    up, dirs = data["upstream"], {k: Path(v) for k, v in data["dirs"].items()}
    captured: dict = {}
    real_render = composition.PieceRenderer.render

    def capture(renderer) -> None:  # the stage's pieces, rendered here at each setting
        captured["renderer"] = renderer
        raise SystemExit

    composition.PieceRenderer.render = capture
    try:
        composition.run(make_context(var / "quality", "composition", upstream=up, upstream_dirs=dirs))
    except SystemExit:
        pass
    finally:
        composition.PieceRenderer.render = real_render
    renderer = captured["renderer"]
    renderer.folder.mkdir(parents=True, exist_ok=True)
    frame_count = sum(p.frames for p in renderer.pieces)

    def encode(name: str, settings: list[str]) -> tuple[Path, float]:
        """Every piece at ``settings`` (the stage's graph, its encoder settings swapped), joined."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        listing = var / f"q-{name}.ffconcat"
        lines = ["ffconcat version 1.0"]
        for piece in renderer.pieces:
            args = renderer.args(piece)
            cut, end = args.index("-c:v"), args.index("-pix_fmt")
            args = args[:cut] + ["-c:v", "libx264", *settings] + args[end:]
            args[-1] = str(var / f"q-{name}-{piece.name}.mp4")
            subprocess.run([media.ffmpeg_exe(), *args], check=True, capture_output=True)
            lines.append(f"file '{args[-1]}'")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        listing.write_text("\n".join(lines) + "\n")
        path = var / f"q-{name}.mp4"
        subprocess.run(
            [media.ffmpeg_exe(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
            + ["-c", "copy", str(path)],
            check=True,
        )
        return path, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    reference, _ = encode("lossless", ["-preset", "ultrafast", "-qp", "0"])
    frames = [120, 330, 560, 800]

    def grab(path: Path) -> list:
        raw = subprocess.run(
            [
                media.ffmpeg_exe(),
                "-v",
                "error",
                "-i",
                str(path),
                "-vf",
                "select='" + "+".join(f"eq(n\\,{f})" for f in frames) + "'",
            ]
            + ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
            capture_output=True,
            check=True,
        ).stdout
        return list(np.frombuffer(raw, np.uint8).reshape(len(frames), 1920, 1080).astype(np.float32))

    def blocks(frame) -> np.ndarray:  # 16x16 luma blocks, each as 256 values
        return frame[:1920, :1072].reshape(120, 16, 67, 16).transpose(0, 2, 1, 3).reshape(120, 67, 256)

    def flattened(ref: list, enc: list) -> float:
        flat = total = 0
        for r, e in zip(ref, enc, strict=True):
            rb, eb = blocks(r), blocks(e)
            gradient = (rb.std(axis=2) > 0.4) & (rb.max(axis=2) - rb.min(axis=2) <= 6)  # a smooth ramp
            total += int(gradient.sum())
            flat += int((gradient & (eb.max(axis=2) - eb.min(axis=2) <= 1)).sum())
        return 100.0 * flat / max(total, 1)

    ref_frames = grab(reference)
    print(f"\n{'x264 setting':<26} {'kb/s':>6} {'SSIM':>8} {'banding %':>10} {'CPU s':>9}")
    for name, settings in [
        ("veryfast crf23 (before)", ["-preset", "veryfast", "-crf", "23"]),
        ("veryfast crf20", ["-preset", "veryfast", "-crf", "20"]),
        ("veryfast crf23 no-mbtree", ["-preset", "veryfast", "-crf", "23", "-x264-params", "mbtree=0"]),
        ("veryfast crf21 no-mbtree", ["-preset", "veryfast", "-crf", "21", "-x264-params", "mbtree=0"]),
        ("superfast crf23", ["-preset", "superfast", "-crf", "23"]),
        ("superfast crf21", ["-preset", "superfast", "-crf", "21"]),
        ("superfast crf20", ["-preset", "superfast", "-crf", "20"]),
    ]:
        path, seconds = encode("-".join(name.split()[:3]), [*settings, "-profile:v", "high"])
        lines = subprocess.run(
            [
                media.ffmpeg_exe(),
                "-hide_banner",
                "-i",
                str(path),
                "-i",
                str(reference),
                "-lavfi",
                "ssim",
                "-f",
                "null",
                "-",
            ],
            capture_output=True,
            text=True,
        ).stderr
        ssim = float(lines.rsplit("All:", 1)[1].split()[0]) if "All:" in lines else float("nan")
        kbps = path.stat().st_size * 8 / (frame_count / 30) / 1000
        print(f"{name:<26} {kbps:6.0f} {ssim:8.5f} {flattened(ref_frames, grab(path)):10.1f} {seconds:9.2f}")


def sync_errors() -> None:
    """Word-start errors per voice. Own timings are checked against energy onsets (the audio);
    words found without timings (the OpenAI path) against a voice whose timings are known."""
    import numpy as np

    from stages import voiceover
    from stages.providers.espeak import EspeakProvider
    from stages.providers.tts import PiperProvider
    from stages.speech_timing import complete_starts, derive_starts, snap_to_sound, speech_onsets

    sentences = [
        "Raspberry Pi 5 just got more interesting.",
        "The news: Nordlys Labs releases open-source AI model that runs entirely on a Raspberry Pi 5.",
        "The Oslo-based lab's Fjord-2B model answers questions, summarises documents and transcribes speech "
        "without a network connection, at about 9 tokens per second on an 8 GB Raspberry Pi 5.",
        "Weights and training code are published under the Apache 2.0 licence.",
        "Why this is a big deal: If you use Raspberry Pi 5, this one affects you.",
        "Would you try Raspberry Pi 5? Tell us in the comments.",
    ]
    print("\nword sync (ms): mean / p95 / max |error|")
    for name, voice in [("espeak-ng en-us", EspeakProvider("en-us")), ("piper joe-medium", PiperProvider())]:
        own, found = [], []
        for sentence in sentences:
            speech = voice.synthesize(sentence)
            lead, tail = voiceover.trim_silence(speech.samples, speech.sample_rate)
            samples = speech.samples[lead:tail]
            truth = [t - lead / speech.sample_rate for t in complete_starts(sentence, speech.words, speech.duration)]
            starts = snap_to_sound(truth, samples, speech.sample_rate)
            for onset in speech_onsets(samples, speech.sample_rate):
                own.append(min(starts, key=lambda t, o=onset: abs(t - o)) - onset)
            derived = snap_to_sound(derive_starts(samples, speech.sample_rate, sentence), samples, speech.sample_rate)
            found += [d - t for d, t in zip(derived, starts, strict=True)]
        for label, errors in (
            (f"{name}: own timings vs audio onsets", own),
            (f"{name} audio, no timings (openai path)", found),
        ):
            a = np.abs(np.array(errors)) * 1000
            print(
                f"  {label:<52} n={len(a):3d} {a.mean():5.0f} / {np.percentile(a, 95):4.0f} / {a.max():4.0f}   within 80 ms: {np.mean(a <= 80):.0%}"
            )


def compare(rounds: int, data: dict, inputs: Path, var: str) -> None:
    """The composition of the prepared short against the plain encode, and with 6 stock clips."""
    vo = data["upstream"]["voiceover"]
    scenes = len(data["upstream"]["scene_generation"]["scenes"])
    print(f"inputs: {scenes} scenes, {len(vo['words'])} timed words, voiceover {vo['duration']:.1f} s ({vo['engine']})")
    runs: dict[str, list[dict]] = {"plain": [], "stage": [], "clips": []}
    for r in range(rounds):
        for mode in ("plain", "stage", "clips"):
            runs[mode].append(measure(mode, inputs, Path(var) / f"{mode}-{r}"))
        print(
            f"round {r + 1}: plain {runs['plain'][-1]['wall']:.2f}s  stage {runs['stage'][-1]['wall']:.2f}s  "
            f"clips {runs['clips'][-1]['wall']:.2f}s  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("wall", "cpu")} for m, v in runs.items()}
    peak = max(max(x["ffmpeg_rss_mb"], x["python_rss_mb"]) for x in runs["stage"])
    ratio = med["stage"]["wall"] / med["plain"]["wall"]
    print(f"\n{'composition of a 30 s short':<34} {'wall s':>7} {'cpu s':>7}")
    print(f"{'limit: plain encode, same stills':<34} {med['plain']['wall']:7.2f} {med['plain']['cpu']:7.2f}")
    print(f"{'composition stage (all of issue 13)':<34} {med['stage']['wall']:7.2f} {med['stage']['cpu']:7.2f}")
    print(
        f"ratio wall {ratio:.2f}x (target <= 1.5x) {'PASS' if ratio <= 1.5 else 'FAIL'}; cpu {med['stage']['cpu'] / med['plain']['cpu']:.2f}x"
    )
    print(f"peak RSS {peak:.0f} MB (target <= 600 MB) {'PASS' if peak <= 600 else 'FAIL'}")
    clip_peak = max(max(x["ffmpeg_rss_mb"], x["python_rss_mb"]) for x in runs["clips"])
    print(
        f"{'6 stock clips instead of stills':<34} {med['clips']['wall']:7.2f} {med['clips']['cpu']:7.2f}"
        f"   ({med['clips']['wall'] / med['stage']['wall']:.2f}x the stills stage; time not a target)"
    )
    print(f"peak RSS with 6 stock clips {clip_peak:.0f} MB (target <= 600 MB) {'PASS' if clip_peak <= 600 else 'FAIL'}")
    report = json.loads((Path(var) / f"stage-{rounds - 1}" / "qc.json").read_text())
    print(
        f"QC of the stage's short: {report['lufs']} LUFS, {report['true_peak']} dBTP, word sync max "
        f"{report['sync_voice_ms']['max']} ms (voice) / {report['sync_audio_ms']['max']} ms (audio onsets), "
        f"bed {report['bed_under_voice_db']} dB under the voice, video {report['video_kbps']} kb/s"
    )


def _cpu() -> float:
    """CPU seconds of this process (all threads) and its finished children (ffmpeg, Piper)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def whole_job() -> tuple[float, list[tuple[str, float]], float, float, int]:
    from jobs import orchestrator
    from jobs.models import Job
    from stages.demo import ensure_demo_theme

    theme = ensure_demo_theme()
    t0, c0 = time.perf_counter(), _cpu()
    job = orchestrator.run_inline(orchestrator.start_job(theme).pk)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    assert job.status == Job.Status.AWAITING_REVIEW, job.error_message
    shares = [(r.stage, r.duration or 0.0) for r in job.runs.exclude(stage="review").order_by("id")]
    video = job.runs.get(stage="voiceover").output["duration"]
    return wall, shares, video, cpu, job.pk


SWAP_SCENE = 3  # the scene edited (1-based, as the console counts): a middle beat
SWAP_TEXT = "Nine tokens a second, offline"


def scene_swap(job_id: int) -> dict:
    """One scene edit on the finished job, through the engine as an operator makes it
    (``orchestrator.edit_job``, then the job run in this process until it waits for review again):
    scene ``SWAP_SCENE`` re-rendered with new text; the plan re-runs scene_generation and
    composition on their base checkpoints and skips voiceover."""
    from django.contrib.auth import get_user_model

    from jobs import orchestrator
    from jobs.models import Job
    from jobs.orchestrator.runner import media_root

    user, _ = get_user_model().objects.get_or_create(username="bench-editor", defaults={"is_superuser": True})
    before = set(Job.objects.get(pk=job_id).runs.values_list("pk", flat=True))
    edit = [{"kind": "scene", "index": SWAP_SCENE, "text": SWAP_TEXT}]
    t0, c0 = time.perf_counter(), _cpu()
    record = orchestrator.edit_job(job_id, edit, notes="bench: swap one scene", user=user)
    job = orchestrator.run_inline(job_id)
    figures: dict = {"wall": time.perf_counter() - t0, "cpu": _cpu() - c0}
    assert job.status == Job.Status.AWAITING_REVIEW, job.error_message
    assert record.stages == ["scene_generation", "composition"], record.stages
    new = {r.stage: r for r in job.runs.exclude(pk__in=before).exclude(stage="review")}
    assert set(new) == {"scene_generation", "composition"}, sorted(new)  # voiceover skipped, its checkpoint reused
    for stage, run in new.items():
        figures[stage] = (run.duration or 0.0, sum((run.usage or {}).get("local", {}).values()) or 0.0)
    out = new["composition"].output
    assert out["qc"]["passed"], [c for c in out["qc"]["checks"] if not c["ok"]]
    scene = new["scene_generation"].output["scenes"][SWAP_SCENE - 1]
    assert scene["text"] == SWAP_TEXT and not scene["reused"]
    pieces = {p["name"]: p for p in out["pieces"]}
    figures["rendered"] = out["render"]["rendered"]
    figures["frames"] = sum(pieces[name]["frames"] for name in figures["rendered"])
    figures["total_frames"] = sum(p["frames"] for p in out["pieces"])
    figures["mix_reused"] = out["render"]["mix_reused"]
    figures["video"] = media_root() / new["composition"].output_dir / out["video"]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3)
    parser.add_argument("--quality", action="store_true", help="size against quality (SSIM, banding) per x264 setting")
    parser.add_argument("--sync", action="store_true", help="word-sync errors per voice")
    parser.add_argument("--keep", action="store_true", help="print where the edited video is (left in the temp dir)")
    args = parser.parse_args()
    if args.child:
        setup_django(os.environ.get("TRENDREEL_VAR_DIR") or tempfile.mkdtemp())
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    var = tempfile.mkdtemp(prefix="trendreel-media-bench-")
    setup_django(var)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    work = Path(var) / "inputs"
    data = prepare(work)
    inputs = Path(var) / "inputs.json"
    inputs.write_text(json.dumps(data))
    if args.rounds > 0:
        compare(args.rounds, data, inputs, var)
    if args.quality:
        quality(inputs, Path(var))
    if args.sync:
        sync_errors()
    wall, shares, video, cpu, job_id = whole_job()
    total = sum(d for _, d in shares) or 1
    print(
        f"\nwhole offline job, trigger to awaiting_review: {wall:.1f} s (cpu {cpu:.1f} s) for a {video:.1f} s video "
        f"(target <= 15 s) {'PASS' if wall <= 15 else 'FAIL'}  load {os.getloadavg()[0]:.1f}"
    )
    for stage, d in shares:
        print(f"  {stage:<18} {d:6.2f} s  {d / total:5.1%}")
    swap = scene_swap(job_id)
    ratio, cpu_ratio = swap["wall"] / wall, swap["cpu"] / cpu
    print(
        f"\nscene swap on the finished job (orchestrator.edit_job: scene {SWAP_SCENE} re-rendered with new text; "
        f"scene_generation + composition re-run on their base checkpoints, voiceover skipped), edit to "
        f"awaiting_review: {swap['wall']:.2f} s (cpu {swap['cpu']:.2f} s)  "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for stage in ("scene_generation", "composition"):
        print(f"  {stage:<18} {swap[stage][0]:6.2f} s  (render cpu {swap[stage][1]:6.2f} s, the ledger's figure)")
    print(
        f"  rendered {', '.join(swap['rendered'])}: {swap['frames']} of {swap['total_frames']} frames; "
        f"mix {'reused' if swap['mix_reused'] else 'mixed again'}"
    )
    print(
        f"ratio to the whole job: wall {ratio:.0%} (target <= 40 %) {'PASS' if ratio <= 0.4 else 'FAIL'}; "
        f"cpu {cpu_ratio:.0%}"
    )
    if args.keep:
        print(f"edited video: {swap['video']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
