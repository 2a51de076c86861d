from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from jobs import cli, orchestrator


class Command(BaseCommand):
    help = "Start a job for a theme. --wait shows live progress; --inline runs it in this process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--theme", required=True, help="theme slug")
        parser.add_argument(
            "--wait", action="store_true", help="follow progress; exit 0 at awaiting_review/completed, 1 otherwise"
        )
        parser.add_argument("--inline", action="store_true", help="run the stages in this process (no worker needed)")
        parser.add_argument("--params", default="{}", help="JSON object of job params")

    def handle(self, *args, theme: str, wait: bool, inline: bool, params: str, **options) -> None:
        try:
            job_params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}", returncode=2) from None
        if not isinstance(job_params, dict):
            raise CommandError("--params must be a JSON object", returncode=2)
        job = cli.act(orchestrator.start_job, cli.get_theme(theme), params=job_params)  # a spent budget: exit 1
        self.stdout.write(str(job.pk))
        if not (wait or inline):
            return
        watcher = cli.Watcher(job.pk, out=self.stdout._out)
        if inline:
            thread = watcher.follow_in_thread() if wait else None
            final = orchestrator.run_inline(job.pk)
            if thread is not None:
                watcher.stop()
                thread.join(timeout=5)
        else:
            final = watcher.follow()
        final.refresh_from_db()
        self.stdout.write(cli.describe(final))
        if final.status not in cli.FINISHED_OK:
            raise SystemExit(1)
