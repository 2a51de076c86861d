"""Routing: which queue a stage's runs go to, and how a run is handed to the broker.

A stage whose policy names a ``cluster`` (e.g. ``{"composition": {"cluster": "render"}}``) is
pushed to that cluster's queue, which only ``manage.py worker --cluster render`` reads; every
other stage goes to the default queue. So heavy renders can have machines of their own and never
starve quick stages. The broker is only a wake-up: the database is the source of truth, and what a
lost wake-up leaves behind the sweeper repairs (``queue_state`` tells it what is still queued).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from django.conf import settings
from django.db import transaction

from jobs.models import StageRun
from jobs.queues import queue_name as _queue_name
from stages import pipeline

# django-q2's hard timeout is the stage's time limit plus this: the watchdog stops a stage at its
# limit and records why; the broker's SIGALRM (which replaces the worker process) is a backstop.
BROKER_GRACE_SECONDS = 30
NO_TIMEOUT = -1  # django-q2: no SIGALRM, no guard kill

_local = threading.local()


@contextlib.contextmanager
def inline_mode():
    """Run without a broker: nothing is pushed; ``run_inline`` executes queued runs itself."""
    previous = getattr(_local, "inline", False)
    _local.inline = True
    try:
        yield
    finally:
        _local.inline = previous


def queue_name(cluster: str | None) -> str:
    return _queue_name(settings.TRENDREEL_QUEUE_BASE, cluster)


def queue_of(stage: str) -> str:
    return queue_name(pipeline.spec(stage).policy.cluster)


def broker(queue: str | None = None):
    """The django-q2 broker for ``queue`` (default: the default cluster's), one per thread."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    queue = queue or queue_name(None)
    key = (Conf.ORM, str(Conf.REDIS), Conf.BROKER_CLASS, queue)
    brokers = getattr(_local, "brokers", None)
    if brokers is None:
        brokers = _local.brokers = {}
    found = brokers.get(key)
    if found is None:
        found = brokers[key] = get_broker(queue)
    return found


def is_orm(b) -> bool:
    from django_q.brokers.orm import ORM

    return isinstance(b, ORM)


def broker_joins_transaction(b=None) -> bool:
    """True when enqueueing writes to our database inside the caller's transaction."""
    from django_q.conf import Conf

    return is_orm(b or broker()) and Conf.ORM == "default"


def timeout_for(stage: str) -> int:
    limit = pipeline.spec(stage).policy.time_limit
    return NO_TIMEOUT if limit <= 0 else int(limit + BROKER_GRACE_SECONDS)


def push(run: StageRun) -> None:
    """Hand a queued run to its queue (called inside the transaction that made it due)."""
    if getattr(_local, "inline", False):
        return
    from django_q.tasks import async_task

    b = broker(queue_of(run.stage))
    options: dict[str, Any] = {
        "task_name": f"job{run.job_id}-{run.stage}-{run.attempt}",
        "timeout": timeout_for(run.stage),
        "broker": b,
    }

    def send() -> None:
        async_task("jobs.tasks.run_stage", run.pk, **options)

    if broker_joins_transaction(b):
        send()  # joins the open transaction: a rollback removes the task too
    else:
        transaction.on_commit(send)  # never push a run another worker cannot see yet


# --- what is still in a queue (for the sweeper) --------------------------------------------------

WAITING, HELD = "waiting", "held"
SCAN_LIMIT = 10_000  # a Redis queue is read this far; a run further back is pushed again (harmless)


def _run_id(payload) -> int | None:
    from django_q.signing import SignedPackage

    try:
        task = SignedPackage.loads(payload)
    except Exception:  # noqa: BLE001 - another site's task, or a corrupt row: not ours
        return None
    if task.get("func") != "jobs.tasks.run_stage" or len(task.get("args") or ()) != 1:
        return None
    return task["args"][0]


def queue_state(queue: str, now) -> dict[int, tuple[str, Any]]:
    """Run id -> (``waiting`` | ``held``, broker handle) for every stage task in ``queue``.

    ORM broker: every task row, ``held`` when a cluster has it locked (prefetched; django-q2 gives
    it back only after ``retry`` seconds, an hour, if that cluster died). Redis: the tasks still in
    the list (a task a cluster took is gone from Redis, and lost with that cluster if it dies).
    """
    b = broker(queue)
    found: dict[int, tuple[str, Any]] = {}
    if is_orm(b):
        from django_q.models import OrmQ

        for pk, payload, lock in OrmQ.objects.filter(key=b.list_key).values_list("pk", "payload", "lock"):
            run_id = _run_id(payload)
            if run_id is not None:
                found[run_id] = (HELD if lock and lock > now else WAITING, pk)
        return found
    for payload in b.connection.lrange(b.list_key, 0, SCAN_LIMIT - 1):
        run_id = _run_id(payload)
        if run_id is not None:
            found[run_id] = (WAITING, None)
    return found


def release(handles: list[Any], now) -> None:
    """Give held ORM task rows back to the queue now (any cluster may take them)."""
    from django_q.models import OrmQ

    OrmQ.objects.filter(pk__in=handles).update(lock=now)
