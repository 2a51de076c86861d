from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from jobs import cli, orchestrator
from jobs.models import ReviewDecision


class Command(BaseCommand):
    help = "Decide a job waiting in review: approve, reject, or request changes from a stage."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--approve", action="store_const", const=ReviewDecision.Decision.APPROVE, dest="decision")
        group.add_argument("--reject", action="store_const", const=ReviewDecision.Decision.REJECT, dest="decision")
        group.add_argument(
            "--request-changes", action="store_const", const=ReviewDecision.Decision.REQUEST_CHANGES, dest="decision"
        )
        parser.add_argument("--from-stage", dest="from_stage")
        parser.add_argument("--notes", default="")
        parser.add_argument(
            "--user", dest="username", help="the reviewer deciding (needs the jobs.review_job permission)"
        )

    def handle(
        self, *args, job_id: str, decision: str, from_stage: str | None, notes: str, username: str | None, **options
    ) -> None:
        job = cli.get_job(job_id)
        cli.check_stage(from_stage)
        if decision == ReviewDecision.Decision.REQUEST_CHANGES and not from_stage:
            raise CommandError("--request-changes needs --from-stage", returncode=2)
        if not username:
            raise CommandError("a review is made by a person: name the reviewer with --user", returncode=2)
        user = cli.get_user(username)
        job = cli.act(orchestrator.review_job, job.pk, decision, user=user, notes=notes, from_stage=from_stage)
        job.refresh_from_db()
        self.stdout.write(f"job {job.pk}: {job.status}")
