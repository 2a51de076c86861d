"""What-if settings for ``bench/engine.py --whatif``: the shipped settings plus persistent DB
connections. An experiment to measure a suggested change, not a deployment setting.

With ``CONN_MAX_AGE = 0`` (the shipped value) django-q2's per-task ``close_old_connections``
closes the worker's connection before every stage, and the ORM broker's pusher and monitor do
the same on every poll and acknowledgement, so each of them opens a new PostgreSQL connection.
"""

import os

from console.settings import *  # noqa: F403
from console.settings import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = float(os.environ.get("BENCH_CONN_MAX_AGE", "300"))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
