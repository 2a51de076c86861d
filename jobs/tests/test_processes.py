"""Child processes never outlive the attempt that started them, and waits on processes never race."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from jobs import orchestrator
from jobs.models import Job, StageRun
from jobs.tests.conftest import ROOT, exited, gone, job_status, pidfd, wait_for
from stages import media
from stages.base import process_identity
from stages.demo import ensure_demo_theme

pytestmark = pytest.mark.django_db(transaction=True)
RS = StageRun.Status


def test_a_child_dies_with_the_process_that_started_it(tmp_path):
    """``run_process`` puts the child in its own process group (so cancel can kill the group) and
    asks the kernel to kill it when its parent dies: a SIGKILLed or OOM-killed worker leaves no
    orphan to compete with the retry."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from stages.base import StageContext
        ctx = StageContext(job_id=1, stage="composition", attempt=1, theme={{}}, params={{}}, upstream={{}},
                           upstream_dirs={{}}, work_dir=Path({str(tmp_path)!r}))
        ctx.run_process(["sh", "-c", 'echo $$ > {pid_file}; exec sleep 60'])
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=20, what="the child")
        child = pidfd(int(pid_file.read_text()))
        assert not exited(child)
        os.kill(parent.pid, signal.SIGKILL)
        assert exited(child, timeout=2), "the child outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()


@pytest.fixture
def orphan():
    """A process in a session of its own, as an attempt's ffmpeg is."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def crashed_run_with(job: Job, worker: str, processes: list[dict]) -> StageRun:
    old = timezone.now() - timedelta(seconds=60)
    run = job.runs.get()
    StageRun.objects.filter(pk=run.pk).update(
        status=RS.RUNNING, started_at=old, heartbeat_at=old, worker=worker, processes=processes
    )
    return run


def test_the_sweeper_kills_a_crashed_attempt_s_processes_on_its_own_host(engine, theme, orphan):
    """A second line behind the parent-death signal: the sweeper that marks an attempt crashed
    kills the process groups the attempt recorded, when they run on the sweeper's own host and are
    still the same processes (a recycled pid with another start time is left alone)."""
    fd = pidfd(orphan.pid)
    ident = process_identity(orphan.pid)
    assert ident is not None
    here = socket.gethostname()

    elsewhere = crashed_run_with(orchestrator.start_job(theme), "another-host:1", [ident])
    recycled = crashed_run_with(orchestrator.start_job(theme), f"{here}:1", [{**ident, "start": ident["start"] + 1}])
    report = orchestrator.sweep()
    assert {elsewhere.pk, recycled.pk} <= set(report.crashed)
    assert not exited(fd, timeout=0.2)  # neither run may touch it

    ours = crashed_run_with(orchestrator.start_job(theme), f"{here}:1", [ident])
    assert ours.pk in orchestrator.sweep().crashed
    assert exited(fd, timeout=2)


def test_process_checks_survive_a_process_exiting_mid_check(monkeypatch):
    """The old ``pid_alive`` checked that /proc/PID/stat exists, then read it: a process that
    exits in between made it raise (a flaky CI run). A pidfd answers in one call."""
    proc = subprocess.Popen(["sleep", "60"])
    assert not gone(proc.pid)
    real_read = Path.read_text

    def exits_first(self, *args, **kwargs):  # the process exits between any two /proc reads
        if str(self).startswith("/proc/"):
            raise FileNotFoundError(str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", exits_first)
    proc.kill()
    proc.wait()
    assert gone(proc.pid)
    zombie = subprocess.Popen(["true"])
    wait_for(lambda: gone(zombie.pid), timeout=5, what="a zombie counted as gone")
    zombie.wait()


@pytest.mark.cluster
@pytest.mark.slow
def test_a_worker_killed_mid_render_leaves_no_ffmpeg_and_the_retry_makes_the_video(start_worker, engine):
    theme = ensure_demo_theme()
    theme.settings = {**theme.settings, "voiceover": {"engine": "espeak-ng"}}
    theme.save()
    policy = {"composition": {"time_limit": 300, "max_attempts": 3, "backoff_base": 0.05, "backoff_cap": 0.2}}
    worker = start_worker("worker", policy=policy, functions={})
    job = orchestrator.start_job(theme)

    def encoding():
        run = job.runs.filter(stage="composition", status=RS.RUNNING).first()
        for proc in run.processes if run else []:
            try:
                cmdline = Path(f"/proc/{proc['pid']}/cmdline").read_bytes()
            except OSError:
                continue
            if b"libx264" in cmdline:
                return run, proc["pid"]
        return None

    run, ffmpeg = wait_for(encoding, timeout=180, interval=0.02, what="composition encoding", log=worker.log)
    fd = pidfd(ffmpeg)
    assert not exited(fd)
    os.kill(int(run.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    assert exited(fd, timeout=2), "ffmpeg outlived its SIGKILLed worker"

    wait_for(
        lambda: job_status(job.pk) == Job.Status.AWAITING_REVIEW, timeout=180, what="awaiting_review", log=worker.log
    )
    runs = list(job.runs.filter(stage="composition").order_by("attempt"))
    assert [r.status for r in runs] == [RS.CRASHED, RS.SUCCEEDED]
    comp = runs[-1]
    assert comp.output["qc"]["passed"] is True
    info = media.probe(Path(engine.MEDIA_ROOT) / comp.output_dir / comp.output["video"])
    voice = job.runs.get(stage="voiceover", status=RS.SUCCEEDED).output
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (1080, 1920, "h264", "aac")
    assert abs(info.duration - voice["duration"]) <= 0.1
