"""The one interface every stage implements.

A stage is a callable ``run(ctx: StageContext) -> StageResult | dict``. It reads its inputs from
the context (theme, params, earlier stages' outputs and folders), writes files only under
``ctx.work_dir``, reports progress through ``ctx.progress`` and raises ``TransientStageError`` or
``PermanentStageError`` for failures it understands. It never touches Job or StageRun rows: the
orchestrator records the result.

Long work must stay stoppable: call ``ctx.check_cancelled()`` (``ctx.progress`` does it too) and
run child processes through ``ctx.run_process`` so cancel and time limits can kill their process
group.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class StageError(Exception):
    """A failure the stage understands. ``permanent`` failures are not retried."""

    permanent = False
    kind = "transient"

    def __init__(self, message: str, *, hint: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # A provider may say when to come back (HTTP Retry-After); the orchestrator waits at least this.
        self.retry_after = retry_after


class TransientStageError(StageError):
    """Network hiccups, 5xx, 429, timeouts: worth another attempt after a backoff."""


class PermanentStageError(StageError):
    """Bad config, bad input, 4xx, missing credentials: fail the job at once with a hint."""

    permanent = True
    kind = "permanent"


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_TEXT = "No space left on device"  # what ffmpeg and other tools print for ENOSPC


def disk_full(detail: str) -> TransientStageError:
    """The disk (or a quota) is full: transient, since space can come back, with what to do."""
    return TransientStageError(
        f"no space left on the disk: {detail}",
        hint="free space on the volume that holds MEDIA_ROOT (old jobs' media, the caches); "
        "the attempt is retried, and a failed job resumes here with retry",
    )


class StageAborted(Exception):
    """Raised inside a stage when its run was cancelled, timed out or taken away (crash sweep).

    Not an error of the stage: the orchestrator has already recorded why the run stopped.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ArtifactSpec:
    """A file the stage produced, relative to its ``work_dir`` (or absolute inside it)."""

    path: str
    kind: str  # video, audio, image, thumbnail, json, text, other
    label: str = ""


@dataclass
class StageResult:
    output: dict[str, Any]
    artifacts: list[ArtifactSpec] = field(default_factory=list)


class AbortSignal:
    """Shared between a running stage and the watchdog that heartbeats for it.

    The watchdog sets ``reason`` (cancelled / timeout / lost) and kills every registered process
    group; the stage notices at its next ``check_cancelled``.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._groups: set[int] = set()

    def register(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            aborted = self.reason is not None
        if aborted:
            kill_group(pgid)

    def unregister(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)

    def groups(self) -> frozenset[int]:
        """The process groups running now (the watchdog records them for the sweeper)."""
        with self._lock:
            return frozenset(self._groups)

    def abort(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            groups = list(self._groups)
        for pgid in groups:
            kill_group(pgid)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --- children die with their worker ---------------------------------------------------------
# A child runs in a process group of its own (cancel and time limits kill the group), so it is
# also outside its worker's: when the worker is SIGKILLed or OOM-killed, nothing would stop it, and
# the retry would compete with the orphan for the same cores. The kernel's parent-death signal
# (prctl PR_SET_PDEATHSIG) kills it with its parent; the sweeper, which marks the attempt crashed,
# kills any recorded group that survived (a grandchild in the group, a non-Linux host).

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
    _prctl = None


def _die_with(parent: int) -> Callable[[], None]:
    """``preexec_fn`` for a child: SIGKILL when ``parent`` dies (async-signal-safe calls only)."""

    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return setup


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> dict[str, Any] | None:
    """What tells process ``pid`` apart from a later process given the same pid: its start time
    (clock ticks since boot) and the boot. None when it is gone or /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return {"pid": pid, "start": int(fields[19]), "boot": _boot_id()}
    except (OSError, IndexError, ValueError):
        return None


def kill_recorded(processes: list[dict[str, Any]]) -> list[int]:
    """Kill the process groups of ``processes`` (``process_identity`` records) that are still the
    same processes on this host; returns the groups killed. A recycled pid is left alone."""
    killed = []
    for record in processes or []:
        try:
            pid = int(record["pid"])
        except (KeyError, TypeError, ValueError):
            continue
        now = process_identity(pid)
        if now is not None and now["start"] == record.get("start") and now["boot"] == record.get("boot"):
            kill_group(pid)
            killed.append(pid)
    return killed


def _no_progress(fraction: float, message: str) -> None:
    return None


class Usage:
    """What one stage attempt consumed, for the cost ledger: counts per provider and metric.

    Metrics: ``llm_tokens_in``, ``llm_tokens_out``, ``tts_characters``, ``api_calls``,
    ``upload_bytes``, ``render_cpu_seconds``. The orchestrator records ``as_dict()`` on the attempt.
    """

    METRICS = (
        "llm_tokens_in",
        "llm_tokens_out",
        "tts_characters",
        "api_calls",
        "upload_bytes",
        "render_cpu_seconds",
    )

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def add(self, provider: str, **counts: float) -> None:
        unknown = set(counts) - set(self.METRICS)
        if unknown:
            raise ValueError(f"unknown usage metrics: {sorted(unknown)}")
        with self._lock:
            row = self._counts.setdefault(provider or "unknown", {})
            for metric, value in counts.items():
                row[metric] = row.get(metric, 0) + value

    def as_dict(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {provider: dict(row) for provider, row in self._counts.items()}


@dataclass
class StageContext:
    job_id: int
    stage: str
    attempt: int
    theme: dict[str, Any]  # name, slug, keywords, sources, target_seconds, voice, settings
    params: dict[str, Any]  # the job's params (operator/API supplied)
    upstream: dict[str, dict[str, Any]]  # earlier stages' outputs by stage key
    upstream_dirs: dict[str, Path]  # earlier stages' checkpoint folders by stage key
    work_dir: Path
    review_notes: list[str] = field(default_factory=list)  # operator notes, oldest first
    run_id: int | None = None
    abort: AbortSignal = field(default_factory=AbortSignal)
    report: Callable[[float, str], None] = _no_progress
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("trendreel.stage"))
    # Targeted edits (issue 14). ``overrides`` is the job's cumulative, validated edit state (every
    # edit so far, merged; see ``stages/edits.py``), applied on every run of a stage. ``base_output``
    # and ``base_dir`` are this stage's latest succeeded checkpoint (None on a first run): a stage
    # re-run after an edit reuses each item of it whose inputs did not change.
    overrides: dict[str, Any] = field(default_factory=dict)
    base_output: dict[str, Any] | None = None
    base_dir: Path | None = None
    usage: Usage = field(default_factory=Usage)  # what this attempt consumed (the cost ledger)

    # -- inputs -----------------------------------------------------------------------------
    @property
    def stage_settings(self) -> dict[str, Any]:
        """The theme's settings for this stage (``theme.settings[stage]``), never None."""
        return dict((self.theme.get("settings") or {}).get(self.stage) or {})

    def output_of(self, stage: str) -> dict[str, Any]:
        try:
            return self.upstream[stage]
        except KeyError:
            raise PermanentStageError(
                f"{self.stage} needs the output of {stage}, which has no checkpoint",
                hint="re-run the job from the earlier stage",
            ) from None

    def input_path(self, stage: str, relative: str) -> Path:
        """A file written by an earlier stage, by the relative path it put in its output."""
        base = self.upstream_dirs.get(stage)
        if base is None:
            raise PermanentStageError(f"{self.stage} needs files of {stage}, which has no checkpoint")
        path = (base / relative).resolve()
        if base.resolve() not in path.parents and path != base.resolve():
            raise PermanentStageError(f"{stage} output names a file outside its folder: {relative}")
        if not path.exists():
            raise PermanentStageError(f"{stage} checkpoint is missing {relative}", hint="re-run from " + stage)
        return path

    # -- control ----------------------------------------------------------------------------
    def check_cancelled(self) -> None:
        if self.abort.reason is not None:
            raise StageAborted(self.abort.reason)

    def progress(self, fraction: float, message: str = "") -> None:
        self.check_cancelled()
        self.report(max(0.0, min(1.0, float(fraction))), message[:500])

    def run_process(
        self,
        args: Sequence[str],
        *,
        on_line: Callable[[str], None] | None = None,
        input_bytes: bytes | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a child in its own process group that cancel/time limits can kill.

        stderr lines go to ``on_line`` as they arrive (ffmpeg's progress). Returns the completed
        process (stdout bytes, stderr text tail); raises ``StageAborted`` when stopped.
        """
        self.check_cancelled()
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )
        self.abort.register(proc.pid)
        tail: list[str] = []
        stdout_chunks: list[bytes] = []

        def pump_stdout() -> None:
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read(65536), b""):
                stdout_chunks.append(chunk)

        reader = threading.Thread(target=pump_stdout, daemon=True)
        reader.start()
        try:
            if input_bytes is not None:
                assert proc.stdin is not None
                try:
                    proc.stdin.write(input_bytes)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            assert proc.stderr is not None
            deadline = time.monotonic() + timeout if timeout else None
            buf = b""
            while True:
                chunk = proc.stderr.read1(65536) if hasattr(proc.stderr, "read1") else proc.stderr.read(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.replace(b"\r", b"\n").split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line:
                        continue
                    tail.append(line)
                    del tail[:-40]
                    if on_line is not None:
                        on_line(line)
                if deadline is not None and time.monotonic() > deadline:
                    kill_group(proc.pid)
                    raise TransientStageError(f"{Path(args[0]).name} took longer than {timeout:.0f}s")
            proc.wait()
            reader.join(timeout=5)
        finally:
            if proc.poll() is None:
                kill_group(proc.pid)
                proc.wait()
            self.abort.unregister(proc.pid)
        self.check_cancelled()
        return subprocess.CompletedProcess(list(args), proc.returncode, b"".join(stdout_chunks), "\n".join(tail))


StageFunction = Callable[[StageContext], "StageResult | dict[str, Any]"]


def normalise_result(value: StageResult | dict[str, Any] | None) -> StageResult:
    if value is None:
        return StageResult(output={})
    if isinstance(value, StageResult):
        return value
    if isinstance(value, dict):
        return StageResult(output=value)
    raise PermanentStageError(f"stage returned {type(value).__name__}, expected StageResult or dict")
