"""The engine's clock: the database's, for every time another host will compare.

Heartbeats, due times (``not_before``), pushes and claims are written by one host and judged by
another (a sweeper, a claiming worker). Each host's own clock can be off: 30 s behind, and every
heartbeat it wrote looked stale to the sweeper of another host, which swept its live runs as
crashed. So those times are on the database's clock: this process measures its offset to it once
(one query), refreshes it every ``REFRESH`` seconds, and ``now()`` is the local time plus that
offset, which costs the hot path nothing. Limits local to one process (a stage's time limit, a
subprocess timeout) use ``time.monotonic`` instead, which no clock change moves.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils import timezone

REFRESH = 300.0  # seconds between measurements; drift in between is far below the thresholds

_lock = threading.Lock()
_offset: timedelta | None = None
_measured_at = 0.0


def _database_now() -> tuple[datetime, datetime]:
    """(database time, local time at the middle of the round trip)."""
    before = timezone.now()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT clock_timestamp()")
            db_now = cur.fetchone()[0]
        else:  # SQLite runs in this process, on this host's clock; millisecond resolution
            cur.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            db_now = datetime.fromisoformat(cur.fetchone()[0]).replace(tzinfo=UTC)
    after = timezone.now()
    return db_now, before + (after - before) / 2


def measure() -> timedelta:
    """Measure this process's offset to the database's clock now."""
    global _offset, _measured_at
    db_now, local = _database_now()
    with _lock:
        _offset = db_now - local
        _measured_at = time.monotonic()
    return _offset


def offset() -> timedelta:
    if _offset is None or time.monotonic() - _measured_at > REFRESH:
        return measure()
    return _offset


def now() -> datetime:
    """The database's current time, as this process best knows it."""
    return timezone.now() + offset()


def reset() -> None:
    """Forget the offset (tests that move this process's clock)."""
    global _offset
    with _lock:
        _offset = None
