"""Console benchmark: server time of each page and HTMX partial with 10,000 jobs / 80,000 runs.

Run:  .venv/bin/python bench/console.py [--db postgres|sqlite] [--requests 200]
Uses its own database (PostgreSQL `trendreel_bench_console`, or a temp SQLite file), never the
dev one. Times Django's full request cycle in-process (middleware, views, templates, queries),
which is the server time a browser would wait for, minus the network.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"partial": 30.0, "page": 150.0}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    if args.db == "postgres":
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS trendreel_bench_console")
            conn.execute("CREATE DATABASE trendreel_bench_console")
        os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/trendreel_bench_console"
    else:
        os.environ["TRENDREEL_VAR_DIR"] = tempfile.mkdtemp(prefix="trendreel-bench-")
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("SECRET_KEY", "bench-insecure-trendreel-not-for-production")  # settings refuse none
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from jobs.models import Job
    from jobs.tests.factories import populate

    call_command("migrate", verbosity=0)
    t0 = time.perf_counter()
    job = populate()
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    print(f"populated 10,000 jobs / 80,000 stage runs in {time.perf_counter() - t0:.1f}s ({connection.vendor})")
    user = User.objects.create_superuser("bench", password="x")
    client = Client()
    client.force_login(user)
    pages = [
        ("dashboard", "page", reverse("console:dashboard")),
        ("dashboard partial", "partial", reverse("console:dashboard_live")),
        ("jobs changelist", "page", reverse("admin:jobs_job_changelist")),
        ("jobs changelist, failed", "page", reverse("admin:jobs_job_changelist") + "?status=failed"),
        ("job page", "page", reverse("console:job_detail", args=[job.pk])),
        ("job partial", "partial", reverse("console:job_live", args=[job.pk])),
        ("review page", "page", reverse("console:review", args=[job.pk])),
    ]
    rows = []
    for name, kind, url in pages:
        for _ in range(5):  # warm up
            client.get(url)
        times = []
        for _ in range(args.requests):
            start = time.perf_counter()
            resp = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert resp.status_code == 200, (url, resp.status_code)
        times.sort()
        p50 = statistics.median(times)
        p95 = times[int(len(times) * 0.95) - 1]
        ok = p95 <= TARGETS[kind]
        rows.append((name, kind, p50, p95, ok))
    print(f"\n{'view':<26} {'kind':<8} {'p50 ms':>8} {'p95 ms':>8}  target p95")
    for name, kind, p50, p95, ok in rows:
        print(f"{name:<26} {kind:<8} {p50:8.1f} {p95:8.1f}  <= {TARGETS[kind]:.0f} ms {'PASS' if ok else 'FAIL'}")
    print(f"\n{args.requests} requests each, {Job.objects.count()} jobs, {connection.vendor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
