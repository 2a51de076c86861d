from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connections

from jobs import analytics, orchestrator, retention
from jobs.orchestrator.sweeper import ensure_schedule
from jobs.queues import CLUSTER_NAME
from stages import pipeline

log = logging.getLogger("trendreel.worker")
HOUSEKEEPING_SECONDS = 3600.0


class Command(BaseCommand):
    help = (
        "Run a django-q2 cluster (the stage workers) plus the sweeper loop in this process. "
        "With --cluster NAME (or TRENDREEL_CLUSTER) it runs only the stages routed to that cluster."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--cluster",
            default=None,
            help="serve this cluster's queue (stages whose policy names it, e.g. render); default: the rest",
        )

    def handle(self, *args, cluster: str | None = None, **options) -> None:
        if cluster is not None and cluster != settings.TRENDREEL_CLUSTER:
            self.reexec(cluster)
        ensure_schedule()
        analytics.ensure_schedule()  # the pull runs in the cluster's scheduler, like the sweep schedule
        served = ", ".join(pipeline.stages_of_cluster(settings.TRENDREEL_CLUSTER or None)) or "no stage"
        name = settings.TRENDREEL_CLUSTER or "default"
        q = self.start_cluster()
        self.stdout.write(
            f"worker {q.pid}: cluster {name} ({served}), {settings.TRENDREEL_WORKERS} stage workers, "
            f"sweeping every {settings.TRENDREEL_SWEEP_SECONDS:g}s",
            ending="\n",
        )
        self.stdout.flush()
        self.serve(q)

    @staticmethod
    def reexec(cluster: str) -> None:
        """django-q2 reads its queue name when it is imported: start over with TRENDREEL_CLUSTER set."""
        if not CLUSTER_NAME.fullmatch(cluster):
            raise CommandError(f"--cluster must be lowercase letters, digits, - or _: {cluster!r}", returncode=2)
        argv, skip = [], False
        for arg in sys.argv:
            if skip or arg.startswith("--cluster="):
                skip = False
                continue
            skip = arg == "--cluster"
            if not skip:
                argv.append(arg)
        if Path(argv[0]).name != "manage.py" or "worker" not in argv:
            raise CommandError("--cluster works from the command line; else set TRENDREEL_CLUSTER", returncode=2)
        os.execve(sys.executable, [sys.executable, *argv], {**os.environ, "TRENDREEL_CLUSTER": cluster})

    def serve(self, cluster) -> None:
        next_housekeeping = 0.0
        while cluster.sentinel is not None and cluster.sentinel.is_alive():
            try:
                orchestrator.sweep()
                waiting = orchestrator.stalled(
                    workers=lambda cluster=cluster: self.worker_names(cluster),
                    cluster=settings.TRENDREEL_CLUSTER or None,
                )
                if waiting:
                    cluster = self.restart(cluster, waiting)
            except Exception:  # a busy database must not stop the loop
                log.exception("sweep failed")
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
                self.housekeeping()
            close_old_connections()
            cluster.sentinel.join(timeout=settings.TRENDREEL_SWEEP_SECONDS)

    def housekeeping(self) -> None:
        """Media retention (``TRENDREEL_MEDIA_RETENTION_DAYS``), once an hour."""
        days = settings.TRENDREEL_MEDIA_RETENTION_DAYS
        if not days:
            return
        try:
            report = retention.prune_media(days)
        except Exception:  # noqa: BLE001 - retention must never stop the stage workers
            log.exception("media retention failed")
            return
        if report.jobs:
            n = len(report.jobs)
            self.stdout.write(
                f"retention: removed the media of {n} job{'s' * (n != 1)} ({report.bytes / 1e6:.1f} MB)", ending="\n"
            )
            self.stdout.flush()

    def start_cluster(self):
        from django_q.cluster import Cluster

        connections.close_all()  # never fork with an open database connection
        cluster = Cluster()
        cluster.start()
        return cluster

    def restart(self, cluster, waiting: tuple[str, ...] = ()):
        """Due runs are not being claimed: replace the cluster and push every queued run again
        (tasks held by the old cluster are lost with it; a duplicate push is a no-op)."""
        stages = ", ".join(waiting) or "?"
        log.error(
            "no queued run was claimed for %ss (waiting: %s): restarting the stage workers",
            settings.TRENDREEL_STALL_SECONDS,
            stages,
        )
        self.stdout.write(f"stalled: restarting the django-q2 cluster (waiting: {stages})", ending="\n")
        self.stdout.flush()
        cluster.stop_event.set()
        cluster.sentinel.join(timeout=10)
        if cluster.sentinel.is_alive():
            cluster.sentinel.kill()
            cluster.sentinel.join(timeout=5)
        self.kill_orphans(cluster.sentinel.pid)
        cluster = self.start_cluster()
        orchestrator.sweep(requeue_all=True)
        return cluster

    @staticmethod
    def children(pid: int) -> list[int]:
        """Processes whose parent is ``pid`` (from /proc)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid:
                found.append(int(entry))
        return found

    def worker_names(self, cluster) -> list[str] | None:
        """``host:pid`` of this cluster's processes, as StageRun.worker records a claim; None (ask
        about the whole database) where /proc cannot tell."""
        sentinel = getattr(cluster.sentinel, "pid", None)
        if sentinel is None or not os.path.isdir("/proc"):
            return None
        host = socket.gethostname()
        return [f"{host}:{pid}" for pid in self.children(sentinel)]

    @classmethod
    def kill_orphans(cls, sentinel_pid: int) -> None:
        """Workers of the old sentinel that did not exit (blocked on the dead worker's lock)."""
        for pid in cls.children(sentinel_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
