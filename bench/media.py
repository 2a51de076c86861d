"""Media benchmark (issue 3), side by side in one run.

1. Composition of a 30 s short (6 scenes, Ken Burns, 8 caption lines, voiceover) against the
   limit: one plain ffmpeg encode of the same 6 stills + audio, no effects, same encoder settings.
   Rounds are interleaved so machine load hits both alike; wall and CPU time, peak RSS.
2. The whole offline job for a 30 s short, trigger to awaiting_review, with each stage's share.

Run:  .venv/bin/python bench/media.py [--rounds 3]
Targets (2 cores): composition <= 1.5x the limit's wall time, peak RSS <= 600 MB; job <= 45 s.
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


def eight_captions(captions: list[dict]) -> list[dict]:
    """Merge the voiceover's caption lines into exactly 8 (the issue's case), keeping the timing."""
    step = len(captions) / 8
    out = []
    for i in range(8):
        part = captions[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)]
        out.append(
            {
                "text": " ".join(c["text"] for c in part)[:32].rsplit(" ", 1)[0],
                "start": part[0]["start"],
                "end": part[-1]["end"],
            }
        )
    return out


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
        assert result.output["qc"]["passed"]
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


def whole_job() -> tuple[float, list[tuple[str, float]], float]:
    from jobs import orchestrator
    from jobs.models import Job
    from stages.demo import ensure_demo_theme

    theme = ensure_demo_theme()
    t0 = time.perf_counter()
    job = orchestrator.run_inline(orchestrator.start_job(theme).pk)
    wall = time.perf_counter() - t0
    assert job.status == Job.Status.AWAITING_REVIEW, job.error_message
    shares = [(r.stage, r.duration or 0.0) for r in job.runs.exclude(stage="review").order_by("id")]
    video = job.runs.get(stage="voiceover").output["duration"]
    return wall, shares, video


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3)
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
    vo = data["upstream"]["voiceover"]
    data["upstream"]["voiceover"] = {**vo, "captions": eight_captions(vo["captions"])}
    inputs = Path(var) / "inputs.json"
    inputs.write_text(json.dumps(data))
    scenes = len(data["upstream"]["scene_generation"]["scenes"])
    print(
        f"inputs: {scenes} scenes, {len(data['upstream']['voiceover']['captions'])} caption lines, voiceover {vo['duration']:.1f} s ({vo['engine']})"
    )
    runs: dict[str, list[dict]] = {"plain": [], "stage": [], "clips": []}
    for r in range(args.rounds):
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
    print(f"{'composition stage (KB + captions)':<34} {med['stage']['wall']:7.2f} {med['stage']['cpu']:7.2f}")
    print(
        f"ratio wall {ratio:.2f}x (target <= 1.5x) {'PASS' if ratio <= 1.5 else 'FAIL'}; cpu {med['stage']['cpu'] / med['plain']['cpu']:.2f}x"
    )
    print(f"peak RSS {peak:.0f} MB (target <= 600 MB) {'PASS' if peak <= 600 else 'FAIL'}")
    clip_peak = max(max(x["ffmpeg_rss_mb"], x["python_rss_mb"]) for x in runs["clips"])
    print(
        f"{'stock clips instead of stills':<34} {med['clips']['wall']:7.2f} {med['clips']['cpu']:7.2f}"
        f"   ({med['clips']['wall'] / med['stage']['wall']:.2f}x the stills stage, peak RSS {clip_peak:.0f} MB; not a target)"
    )

    wall, shares, video = whole_job()
    total = sum(d for _, d in shares) or 1
    print(
        f"\nwhole offline job, trigger to awaiting_review: {wall:.1f} s for a {video:.1f} s video (target <= 45 s) {'PASS' if wall <= 45 else 'FAIL'}"
    )
    for stage, d in shares:
        print(f"  {stage:<18} {d:6.2f} s  {d / total:5.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
