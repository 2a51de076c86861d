from __future__ import annotations

from django.core.management.base import BaseCommand

from jobs import cli, orchestrator


class Command(BaseCommand):
    help = "Resume a failed or cancelled job from its failed stage, or re-run it from a chosen stage."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id")
        parser.add_argument("--from-stage", dest="from_stage")

    def handle(self, *args, job_id: str, from_stage: str | None, **options) -> None:
        job = cli.get_job(job_id)
        cli.check_stage(from_stage)
        job = cli.act(orchestrator.retry_job, job.pk, from_stage=from_stage)
        job.refresh_from_db()
        self.stdout.write(f"job {job.pk}: {job.status} at {job.current_stage}")
