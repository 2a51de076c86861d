"""The watchdog: heartbeats for a running attempt until its record commits.

One thread per worker process (``Ticker``) ticks every attempt it watches: it writes the heartbeat
(on the database's clock), the latest progress and the attempt's child process groups (so the
sweeper can kill them if the worker dies), notices that the run was taken away (cancel, sweep) and
enforces the stage's time limit on the monotonic clock.

While the attempt records its result (``recording``), the heartbeat goes on, since a slow record
(checksums of a large render, a busy database) must not look like a dead worker, and neither the
time limit nor a vanished run stops it: the record itself decides, under the job's lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from jobs.models import StageRun
from jobs.orchestrator import clock, lifecycle
from stages.base import AbortSignal, process_identity

log = logging.getLogger("trendreel.orchestrator")
EK = StageRun.ErrorKind


@dataclass(eq=False)
class Watchdog:
    """Ticked every ``interval`` by the process's ``Ticker`` between ``start`` and ``finish``;
    ``finish`` waits for a tick in flight, so none lands after it returns."""

    run_id: int
    time_limit: float
    abort: AbortSignal
    interval: float
    progress: tuple[float, str] = (0.0, "")
    dirty: bool = False
    active: bool = False
    recording: bool = False
    due: float = 0.0
    started: float = 0.0  # monotonic
    groups: frozenset[int] = frozenset()  # the process groups last written
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, fraction: float, message: str) -> None:
        self.progress = (fraction, message)
        self.dirty = True

    def start(self) -> None:
        self.started = time.monotonic()
        self.due = self.started + self.interval
        self.active = True
        Ticker.get().add(self)

    def record_started(self) -> None:
        """From now on the attempt is recording its result (see the module's docstring)."""
        self.recording = True

    def tick(self) -> None:
        if not self.recording and self.time_limit > 0 and time.monotonic() - self.started > self.time_limit:
            self.abort.abort("timeout")
            lifecycle.end_attempt(
                self.run_id,
                event="fail",
                kind=EK.TIMEOUT,
                message=f"stopped after its time limit of {self.time_limit:g}s",
                hint="raise the stage's time_limit or make its input smaller",
            )
            return
        fields: dict[str, Any] = {"heartbeat_at": clock.now()}
        if self.dirty:
            self.dirty = False
            fields["progress"], fields["message"] = self.progress
        groups = self.abort.groups()
        if groups != self.groups:
            fields["processes"] = [p for p in map(process_identity, sorted(groups)) if p is not None]
            self.groups = groups
        alive = StageRun.objects.filter(pk=self.run_id, status=StageRun.Status.RUNNING).update(**fields)
        if not alive and not self.recording:
            self.abort.abort("cancelled")

    def finish(self) -> None:
        with self.lock:
            self.active = False
        Ticker.get().remove(self)


class Ticker:
    """The watchdog thread of this process, for every attempt it runs (a thread started and joined
    per attempt cost more than a no-op stage). Its database connection is closed whenever no
    attempt is watched, so an idle worker holds none."""

    _instance: Ticker | None = None
    _create = threading.Lock()

    @classmethod
    def get(cls) -> Ticker:
        ticker = cls._instance
        if ticker is None or ticker.pid != os.getpid():  # none yet, or inherited through fork
            with cls._create:
                ticker = cls._instance
                if ticker is None or ticker.pid != os.getpid():
                    ticker = cls._instance = cls()
        return ticker

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.dogs: dict[int, Watchdog] = {}
        threading.Thread(target=self._loop, name="trendreel-watchdog", daemon=True).start()

    def add(self, dog: Watchdog) -> None:
        with self.cond:
            self.dogs[id(dog)] = dog
            self.cond.notify()

    def remove(self, dog: Watchdog) -> None:
        with self.cond:
            self.dogs.pop(id(dog), None)

    def _loop(self) -> None:
        while True:
            with self.cond:
                if not self.dogs:
                    connection.close()
                    self.cond.wait()
                    continue
                now = time.monotonic()
                due = [d for d in self.dogs.values() if d.due <= now]
                if not due:
                    self.cond.wait(min(d.due for d in self.dogs.values()) - now)
                    continue
            for dog in due:
                self._tick(dog)

    def _tick(self, dog: Watchdog) -> None:
        with dog.lock:
            if not dog.active:
                return
            dog.due = time.monotonic() + dog.interval
            try:
                dog.tick()
            except Exception:  # a locked/busy/restarted database must not kill the watchdog
                log.warning("watchdog of run %s: tick failed", dog.run_id, exc_info=True)
                connection.close()  # reconnect on the next tick
            if dog.abort.reason is not None:
                dog.active = False
                self.remove(dog)
