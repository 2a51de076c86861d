from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections

from jobs import orchestrator

log = logging.getLogger("trendreel.worker")


def ensure_sweep_schedule() -> None:
    """A django-q2 schedule as the backstop for clusters started with plain ``qcluster``."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="trendreel-sweep",
        defaults={"func": "jobs.tasks.sweep", "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )


class Command(BaseCommand):
    help = "Run a django-q2 cluster (the stage workers) plus the sweeper loop in this process."

    def handle(self, *args, **options) -> None:
        from django_q.cluster import Cluster

        ensure_sweep_schedule()
        connections.close_all()  # never fork with an open database connection
        cluster = Cluster()
        cluster.start()
        self.stdout.write(f"worker {cluster.pid}: {settings.TRENDREEL_WORKERS} stage workers, sweeping every {settings.TRENDREEL_SWEEP_SECONDS:g}s", ending="\n")
        self.stdout.flush()
        while cluster.sentinel is not None and cluster.sentinel.is_alive():
            try:
                orchestrator.sweep()
            except Exception:  # a busy database must not stop the loop
                log.exception("sweep failed")
            close_old_connections()
            cluster.sentinel.join(timeout=settings.TRENDREEL_SWEEP_SECONDS)
