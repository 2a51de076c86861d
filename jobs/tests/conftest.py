from __future__ import annotations

import contextlib
import json
import os
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
    """A real worker process (``manage.py worker`` = django-q2 cluster + sweeper, or ``qcluster``)."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), command],
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

    def start(command: str = "worker", policy: dict | None = None, extra_env: dict | None = None) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TRENDREEL_STAGE"))}
        env.update(
            DATABASE_URL=database_url(),
            MEDIA_ROOT=str(engine.MEDIA_ROOT),
            TRENDREEL_STAGE_FUNCTIONS=json.dumps(TEST_FUNCTIONS),
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
        worker = Worker(command, env, tmp_path / f"worker-{len(workers)}.log")
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
