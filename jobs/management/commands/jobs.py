from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job


class Command(BaseCommand):
    help = "List jobs, newest first."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--status", help="only jobs with this status")
        parser.add_argument("--limit", type=int, default=30)

    def handle(self, *args, status: str | None, limit: int, **options) -> None:
        jobs = Job.objects.for_dashboard().order_by("-created")
        if status:
            if status not in Job.Status.values:
                raise CommandError(
                    f"unknown status {status!r}; use one of {', '.join(Job.Status.values)}", returncode=2
                )
            jobs = jobs.filter(status=status)
        self.stdout.write(f"{'ID':>6}  {'STATUS':<16} {'STAGE':<18} {'THEME':<16} CREATED")
        for job in jobs[:limit]:
            self.stdout.write(
                f"{job.pk:>6}  {job.status:<16} {job.current_stage:<18} {job.theme.slug:<16} {job.created:%Y-%m-%d %H:%M:%S}"
                + (f"  {job.error_stage}: {job.error_message[:60]}" if job.status == Job.Status.FAILED else "")
            )
