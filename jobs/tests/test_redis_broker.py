"""The Redis broker: pushes happen on commit, and a lost push is repaired by the sweeper."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from django.db import transaction
from django.utils import timezone
from django_q.conf import Conf

from jobs import orchestrator
from jobs.models import Job
from jobs.tests.conftest import job_status, params, wait_for

REDIS_URL = "redis://127.0.0.1:6379/15"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_broker(monkeypatch, engine):
    """Point django-q2 at Redis for this process, on a list of its own."""
    name = f"trendreel-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "BROKER_CLASS", None)  # settings name the ORM broker's class
    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", name)
    engine.TRENDREEL_QUEUE_BASE = name  # the default cluster's queue (routing pushes there)
    client = redis.from_url(REDIS_URL)
    yield client, f"django_q:{name}:q"
    client.delete(f"django_q:{name}:q")


def test_it_pushes_only_after_commit_and_nothing_on_rollback(redis_broker, theme):
    client, key = redis_broker
    assert not orchestrator.broker_joins_transaction()
    with pytest.raises(RuntimeError), transaction.atomic():
        orchestrator.start_job(theme)
        assert client.llen(key) == 0  # not before COMMIT
        raise RuntimeError("roll back")
    assert client.llen(key) == 0
    assert Job.objects.count() == 0
    orchestrator.start_job(theme)
    assert client.llen(key) == 1


def test_the_sweeper_repairs_a_push_lost_after_commit(redis_broker, theme, engine):
    client, key = redis_broker
    job = orchestrator.start_job(theme)
    client.delete(key)  # the broker lost it (Redis restart, a cluster killed with prefetched tasks)
    assert orchestrator.sweep().pushed == []  # still inside the grace period
    later = timezone.now() + timedelta(seconds=engine.TRENDREEL_REQUEUE_SECONDS + 1)
    assert orchestrator.sweep(now=later).pushed == [job.runs.get().pk]
    assert client.llen(key) == 1


def test_the_sweeper_never_pushes_a_run_still_in_the_redis_list(redis_broker, theme, engine):
    """A busy queue: the run waits behind others. Its task is still in the list: no second copy."""
    client, key = redis_broker
    job = orchestrator.start_job(theme)
    for k in range(1, 4):
        later = timezone.now() + timedelta(seconds=k * (engine.TRENDREEL_REQUEUE_SECONDS + 1))
        assert orchestrator.sweep(now=later).pushed == []
    assert client.llen(key) == 1
    assert job.runs.get().status == "queued"


@pytest.mark.cluster
def test_a_job_runs_through_a_worker_on_the_redis_broker(redis_broker, start_worker, theme, call_log, tmp_path):
    client, key = redis_broker
    worker = start_worker("worker", extra_env={"REDIS_URL": REDIS_URL, "TRENDREEL_QUEUE_NAME": Conf.CLUSTER_NAME})
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path, voiceover=["transient", "ok"]))
    wait_for(
        lambda: job_status(job.pk) == Job.Status.AWAITING_REVIEW, timeout=60, what="awaiting_review", log=worker.log
    )
    assert job.runs.filter(stage="voiceover").count() == 2
