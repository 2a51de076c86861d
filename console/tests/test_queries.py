"""No N+1: the console's pages cost the same few queries with 10,000 jobs and 80,000 runs."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from jobs.models import Job, StageRun, Theme
from jobs.tests.factories import populate


@pytest.fixture(scope="module")
def big_db(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        job = populate()
        yield job
        StageRun.objects.all().delete()
        Job.objects.all().delete()
        Theme.objects.all().delete()


@pytest.fixture
def operator(big_db, db, client):
    user, _ = User.objects.get_or_create(username="boss", defaults={"is_staff": True, "is_superuser": True})
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "name, args, queries",
    [
        # stage stats: one percentile query on PostgreSQL, counts + median per window on SQLite;
        # every page: one query for the user's second-factor devices (console.two_factor); the dashboard
        # page (not its live part) adds the best videos (one query, cached), the job page its
        # publications and their readings; the job and review pages their targeted edits (one query);
        # the cost ledger: the dashboard's spend chart (one grouped query), the job page's cost table
        # (stage sums, usage), the review page's lineage (checkpoints)
        ("console:dashboard", [], {"postgresql": 11, "sqlite": 14}),
        ("console:dashboard_live", [], {"postgresql": 9, "sqlite": 12}),
        ("console:job_detail", ["job"], 12),
        # the poll after a status change re-renders the job's records, its edit history included (+1)
        ("console:job_live", ["job"], 8),
        ("console:review", ["job"], 9),
        ("admin:jobs_job_changelist", [], 10),
    ],
)
def test_query_count_is_pinned_with_10000_jobs(operator, big_db, django_assert_num_queries, name, args, queries):
    assert Job.objects.count() == 10_000 and StageRun.objects.count() == 80_000
    url = reverse(name, args=[big_db.pk if a == "job" else a for a in args])
    from django.db import connection

    if isinstance(queries, dict):
        queries = queries[connection.vendor]
    with django_assert_num_queries(queries):
        resp = operator.get(url)
        if hasattr(resp, "render"):
            resp.render()
    assert resp.status_code == 200


def test_a_poll_that_finds_nothing_new_costs_less_than_the_fragment(operator, big_db, django_assert_num_queries):
    """The job page's poll when nothing changed (console/live.py): the session, the user, the second
    factor, the job and its attempts; no files, no decisions, nothing rendered (204)."""
    from console.tests.test_live import poll_vals

    page = operator.get(reverse("console:job_detail", args=[big_db.pk])).content.decode()
    with django_assert_num_queries(5):
        resp = operator.get(reverse("console:job_live", args=[big_db.pk]), poll_vals(page))
    assert resp.status_code == 204
