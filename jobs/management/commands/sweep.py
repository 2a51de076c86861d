from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from jobs import orchestrator


class Command(BaseCommand):
    help = "Repair stale attempts, push due retries and lost pushes (once, or --loop)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--loop", action="store_true")

    def handle(self, *args, loop: bool, **options) -> None:
        while True:
            report = orchestrator.sweep()
            if report or not loop:
                self.stdout.write(f"crashed={report.crashed} pushed={report.pushed}")
            if not loop:
                return
            close_old_connections()
            time.sleep(settings.TRENDREEL_SWEEP_SECONDS)
