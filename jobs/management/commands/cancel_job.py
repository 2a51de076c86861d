from __future__ import annotations

from django.core.management.base import BaseCommand

from jobs import cli, orchestrator


class Command(BaseCommand):
    help = "Cancel an active job; a running stage stops within a heartbeat and its child processes are killed."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id")

    def handle(self, *args, job_id: str, **options) -> None:
        job = cli.act(orchestrator.cancel_job, cli.get_job(job_id).pk)
        self.stdout.write(f"job {job.pk}: {job.status}")
