"""Stage functions the engine tests register in place of the real stages.

What each call does comes from the job's params, so a worker in another process follows the
same script: ``params["behave"][stage]`` is a list of actions, one per attempt (the last one
repeats). Every call appends ``stage attempt pid`` to ``params["call_log"]``.

Actions: ``ok``, ``transient``, ``permanent``, ``unexpected``, ``sleep:S`` (sleeps S seconds in
steps, reporting progress), ``child:S`` (runs ``sleep S`` as a child process, writing its pid to
``params["pid_file"]``), ``spin:S`` (busy Python loop that never checks cancel), ``kill`` (SIGKILLs
its own worker process), ``retry_after:S`` (transient with a Retry-After), ``enospc`` (the disk is full),
``badoutput`` (returns an output that is not JSON), ``dupartifact`` (names one file twice as an artifact).
Outputs carry ``cluster``: the ``TRENDREEL_CLUSTER`` of the process that ran the stage; script_generation's
carries ``params["segments"]`` (3) script segments, and every output the ``overrides`` and base checkpoint
(``base_attempt``) the attempt was given (targeted edits).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult, TransientStageError


def action_for(ctx: StageContext) -> str:
    # a job started from the console has no params: its theme's settings can carry the script
    behave = ctx.params.get("behave") or (ctx.theme.get("settings") or {}).get("test_behave") or {}
    script = behave.get(ctx.stage) or ["ok"]
    return script[min(ctx.attempt, len(script)) - 1]


def run(ctx: StageContext) -> StageResult:
    log = ctx.params.get("call_log")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{ctx.stage} {ctx.attempt} {os.getpid()}\n")
    action = action_for(ctx)
    name, _, arg = action.partition(":")
    if name == "transient":
        raise TransientStageError(f"{ctx.stage} hit a flaky upstream")
    if name == "retry_after":
        raise TransientStageError("rate limited", retry_after=float(arg))
    if name == "permanent":
        raise PermanentStageError(f"{ctx.stage} got bad input", hint="fix the theme's sources")
    if name == "unexpected":
        raise KeyError("surprise")
    if name == "enospc":
        (ctx.work_dir / "big.bin").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.work_dir / "big.bin"))
    if name == "sleep":
        end = time.monotonic() + float(arg)
        while time.monotonic() < end:
            ctx.progress(1 - (end - time.monotonic()) / float(arg), "sleeping")
            time.sleep(0.05)
    if name == "child":
        pid_file = ctx.params["pid_file"]
        ctx.run_process(["sh", "-c", f'echo $$ > "{pid_file}"; exec sleep {arg}'])
    if name == "spin":
        end = time.monotonic() + float(arg)
        while time.monotonic() < end:
            pass
    if name == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    (ctx.work_dir / "out.json").write_text(f'{{"stage": "{ctx.stage}", "attempt": {ctx.attempt}}}')
    output = {
        "stage": ctx.stage,
        "attempt": ctx.attempt,
        "notes": ctx.review_notes,
        "seen": sorted(ctx.upstream),
        "cluster": os.environ.get("TRENDREEL_CLUSTER", ""),
    }
    if ctx.stage == "script_generation":  # a script the targeted edits can address (segments 1..N)
        count = int(ctx.params.get("segments", 3))
        output["segments"] = [{"id": f"s{i}", "narration": f"Line {i}.", "headline": f"Card {i}"} for i in range(count)]
    # what the targeted edits handed this attempt, and what it could reuse
    output["overrides"] = ctx.overrides
    output["base_attempt"] = (ctx.base_output or {}).get("attempt")
    output["base_dir_exists"] = bool(ctx.base_dir and ctx.base_dir.is_dir())
    artifacts = [ArtifactSpec("out.json", "json")]
    if name == "badoutput":
        output["tags"] = {"a", "b"}  # a set: not JSON
    if name == "dupartifact":
        artifacts.append(ArtifactSpec("out.json", "json", label="again"))
    return StageResult(output=output, artifacts=artifacts)


def calls(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(s, int(a)) for s, a, _ in (line.split() for line in log.read_text().splitlines())]
