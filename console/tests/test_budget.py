"""A theme's daily budget: once its jobs' attempts finished today (UTC) cost it, every route that
starts jobs refuses with the same message; running jobs go on; tomorrow starts afresh."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from console.tests.test_api import make_user, post, token  # noqa: F401 - the token fixture
from console.tests.test_views import staff
from jobs import orchestrator, tasks
from jobs.models import Job, StageRun, Theme, utc_midnight
from jobs.orchestrator import clock

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGE = "theme test spent $2.50 of its $2.00 daily budget today; raise Theme.daily_budget or wait until 00:00 UTC"


@pytest.fixture
def spent(theme):
    """The theme has a $2 budget and spent $2.50 today (one failed attempt, one succeeded)."""
    theme.daily_budget = Decimal("2.00")
    theme.save()
    job = Job.objects.create(theme=theme, status=Job.Status.RUNNING)
    now = clock.now()
    StageRun.objects.create(job=job, stage="trend_collection", status="failed", finished_at=now, cost=Decimal("1.0"))
    StageRun.objects.create(job=job, stage="trend_collection", attempt=2, status="succeeded", finished_at=now, cost=1.5)
    StageRun.objects.create(job=job, stage="script_generation", status="queued")  # running jobs go on
    return job


def test_the_api_refuses_generate_and_batches_with_409(client, token, theme, spent):  # noqa: F811
    resp = post(client, "/api/generate", {"theme": "test"}, token)
    assert (resp.status_code, resp.json()) == (409, {"detail": MESSAGE})
    resp = post(client, "/api/generate", {"theme": "test"}, token, **{"Idempotency-Key": "k1"})
    assert resp.status_code == 409  # the key is not used up by the refusal
    resp = post(client, "/api/batches", {"theme": "test", "count": 3}, token)
    assert (resp.status_code, resp.json()) == (409, {"detail": MESSAGE})
    assert Job.objects.count() == 1
    assert Job.objects.get().status == Job.Status.RUNNING  # the running job is not stopped


def test_the_console_says_why_it_did_not_start(client, theme, spent):
    client.force_login(staff("view_job", "add_job"))
    for count in ("1", "3"):
        resp = client.post(reverse("console:theme_run", args=[theme.pk]), {"count": count}, follow=True)
        assert f"Not started: {MESSAGE}" in resp.content.decode()
    assert Job.objects.count() == 1


def test_the_admin_action_says_why_it_did_not_start(client, theme, spent):
    user = make_user("boss", "add_job", "view_theme", "change_theme", staff=True)
    client.force_login(user)
    resp = client.post(
        reverse("admin:jobs_theme_changelist"), {"action": "run_now", "_selected_action": [theme.pk]}, follow=True
    )
    assert f"Not started: {MESSAGE}" in resp.content.decode()
    assert Job.objects.count() == 1


def test_the_command_fails_with_the_message(theme, spent):
    with pytest.raises(CommandError) as exc:
        call_command("run_pipeline", "--theme", "test")
    assert (str(exc.value), exc.value.returncode) == (MESSAGE, 1)
    assert Job.objects.count() == 1


def test_a_schedule_logs_and_skips(theme, spent, caplog):
    with caplog.at_level(logging.WARNING, logger="trendreel.schedules"):
        assert tasks.run_theme(theme.pk, 1) == f"skipped: {MESSAGE}"
        assert tasks.run_theme(theme.pk, 3) == f"skipped: {MESSAGE}"
    assert f"scheduled run of theme test skipped: {MESSAGE}" in caplog.text
    assert Job.objects.count() == 1


def test_under_budget_yesterdays_spend_and_other_themes_do_not_count(theme, spent):
    StageRun.objects.filter(job=spent).update(finished_at=utc_midnight() - timedelta(seconds=1))  # yesterday
    other = Theme.objects.create(name="Other", slug="other")
    busy = Job.objects.create(theme=other)
    StageRun.objects.create(job=busy, stage="composition", status="succeeded", finished_at=clock.now(), cost=100)
    assert orchestrator.start_job(theme).status == Job.Status.PENDING
    theme.daily_budget = None  # no budget: never refused, whatever was spent
    StageRun.objects.filter(job=spent).update(finished_at=clock.now())
    assert orchestrator.start_job(theme).status == Job.Status.PENDING


def test_a_budget_of_zero_allows_nothing(theme, django_assert_num_queries):
    theme.daily_budget = Decimal(0)
    with django_assert_num_queries(1), pytest.raises(orchestrator.BudgetSpent, match=r"spent \$0.00 of its \$0.00"):
        orchestrator.start_job(theme)


def test_a_negative_budget_is_refused_by_the_theme_form(theme):
    from django.core.exceptions import ValidationError

    theme.daily_budget = Decimal("-1")
    with pytest.raises(ValidationError) as exc:
        theme.full_clean()
    assert "daily_budget" in exc.value.message_dict
