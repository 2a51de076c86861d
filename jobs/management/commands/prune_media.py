from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from jobs import retention


class Command(BaseCommand):
    help = (
        "Remove the media files of jobs that finished more than N days ago (completed and rejected; "
        "failed and cancelled too with --include-failed). Job records, outputs and history stay."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", type=float, required=True, metavar="DAYS")
        parser.add_argument(
            "--include-failed", action="store_true", help="also failed and cancelled jobs (a retry then starts over)"
        )
        parser.add_argument("--dry-run", action="store_true", help="only report what would be removed")

    def handle(self, *args, older_than: float, include_failed: bool, dry_run: bool, **options) -> None:
        try:
            report = retention.prune_media(older_than, include_failed=include_failed, dry_run=dry_run)
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None
        n = len(report.jobs)
        verb = "would remove" if dry_run else "removed"
        self.stdout.write(
            f"{verb} the media of {n} job{'s' * (n != 1)} finished more than {older_than:g} days ago: "
            f"{report.bytes / 1e6:.1f} MB"
            + (f" (jobs {', '.join(map(str, report.jobs[:20]))}{' ...' if n > 20 else ''})" if n else "")
        )
