from __future__ import annotations

from django.core.management.base import BaseCommand

from jobs import analytics


class Command(BaseCommand):
    help = (
        "Read the numbers of every recent published video once (YouTube, TikTok, Instagram). "
        "The django-q2 schedule does this every TRENDREEL_ANALYTICS_MINUTES; this is for operators."
    )

    def handle(self, *args, **options) -> None:
        report = analytics.pull_metrics()
        self.stdout.write(report.summary())
        if report.failures:
            for failure in report.failures:
                if failure.get("hint"):
                    self.stderr.write(f"{failure['destination']}@{failure['theme']}: {failure['hint']}")
