"""Run a management command on a host whose clock is off: ``python -m jobs.tests.skewclock SECONDS CMD``.

Shifts ``django.utils.timezone.now`` (what Django, django-q2 and the orchestrator read) before
Django loads, as NTP trouble on one machine of a deployment would.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta


def main() -> None:
    skew = timedelta(seconds=float(sys.argv[1]))
    from django.utils import timezone

    real_now = timezone.now
    timezone.now = lambda: real_now() + skew
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *sys.argv[2:]])


if __name__ == "__main__":
    main()
