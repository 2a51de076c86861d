from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from jobs.models import Job, Theme
from stages import pipeline

ROOT = Path(__file__).resolve().parents[2]
FAST_POLICY = {
    key: {"time_limit": 20, "max_attempts": 3, "backoff_base": 0.05, "backoff_cap": 0.2}
    for key in pipeline.STAGE_KEYS
    if not pipeline.spec(key).gate
}
TEST_FUNCTIONS = {key: "jobs.tests.stagefns.run" for key in pipeline.STAGE_KEYS if not pipeline.spec(key).gate}


@pytest.fixture
def engine(settings, tmp_path):
    """Test stage functions and a fast policy, in this process."""
    settings.TRENDREEL_STAGE_FUNCTIONS = TEST_FUNCTIONS
    settings.TRENDREEL_STAGE_POLICY = json.loads(json.dumps(FAST_POLICY))
    settings.TRENDREEL_HEARTBEAT_SECONDS = 0.1
    settings.TRENDREEL_STALE_SECONDS = 1.5
    settings.TRENDREEL_REQUEUE_SECONDS = 60
    return settings


@pytest.fixture
def theme(transactional_db):
    return Theme.objects.create(name="Test", slug="test", keywords=["ai"], sources=[{"name": "x", "path": "x"}])


@pytest.fixture
def call_log(tmp_path) -> Path:
    return tmp_path / "calls.log"


def params(call_log: Path, tmp_path: Path, **behave) -> dict:
    return {
        "call_log": str(call_log),
        "pid_file": str(tmp_path / "child.pid"),
        "behave": {k: v for k, v in behave.items()},
    }


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Worker:
    """A real worker process (``manage.py worker`` = django-q2 cluster + sweeper, or ``qcluster``).

    With ``skew`` the process's clock (``django.utils.timezone.now``) runs that many seconds off,
    as on a host whose clock drifted (``jobs/tests/skewclock.py``).
    """

    def __init__(self, command: str, env: dict[str, str], log: Path, skew: float | None = None) -> None:
        self.log = log
        prefix = ["-m", "jobs.tests.skewclock", str(skew)] if skew is not None else [str(ROOT / "manage.py")]
        self.proc = subprocess.Popen(
            [sys.executable, *prefix, *command.split()],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # make sure no orphaned worker processes stay behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def start_worker(engine, transactional_db, tmp_path):
    workers: list[Worker] = []

    def start(
        command: str = "worker",
        policy: dict | None = None,
        extra_env: dict | None = None,
        functions: dict | None = None,
        skew: float | None = None,
    ) -> Worker:
        """``functions``: stage function overrides (default: the test stages; ``{}``: the real ones)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TRENDREEL_STAGE"))}
        env.update(
            DATABASE_URL=database_url(),
            MEDIA_ROOT=str(engine.MEDIA_ROOT),
            TRENDREEL_STAGE_FUNCTIONS=json.dumps(TEST_FUNCTIONS if functions is None else functions),
            TRENDREEL_STAGE_POLICY=json.dumps(policy or engine.TRENDREEL_STAGE_POLICY),
            TRENDREEL_HEARTBEAT_SECONDS="0.1",
            TRENDREEL_STALE_SECONDS="1.5",
            TRENDREEL_SWEEP_SECONDS="0.2",
            TRENDREEL_WORKERS="2",
            PYTHONUNBUFFERED="1",
        )
        if django_settings.REDIS_URL:
            env["REDIS_URL"] = django_settings.REDIS_URL
        env.update(extra_env or {})
        worker = Worker(command, env, tmp_path / f"worker-{len(workers)}.log", skew=skew)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, timeout: float = 30, interval: float = 0.05, what: str = "condition", log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{detail}")


def job_status(job_id: int) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job_id)


def pidfd(pid: int) -> int | None:
    """A handle on process ``pid`` that stays valid if the pid is reused; None if it is gone.

    Waiting on it is race-free: no /proc file can vanish between a check and a read.
    """
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def exited(fd: int | None, timeout: float = 0.0) -> bool:
    """The process behind ``fd`` has exited (a zombie counts), waiting up to ``timeout`` seconds."""
    if fd is None:
        return True
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


def gone(pid: int) -> bool:
    """Process ``pid`` no longer runs (exited, or an unreaped zombie): one syscall, no race."""
    fd = pidfd(pid)
    try:
        return exited(fd)
    finally:
        if fd is not None:
            os.close(fd)


@pytest.fixture
def reviewer(transactional_db):
    """A user who may review (approve, reject, request changes)."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("reviewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="review_job"))
    return User.objects.get(pk=user.pk)
