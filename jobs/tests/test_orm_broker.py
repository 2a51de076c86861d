"""The ORM broker hands tasks out oldest first."""

from __future__ import annotations

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import OrmQ
from django_q.signing import SignedPackage

pytestmark = pytest.mark.django_db(transaction=True)


def test_tasks_leave_the_orm_queue_in_the_order_they_came(engine):
    broker = get_broker()
    ids = [broker.enqueue(SignedPackage.dumps({"n": n})) for n in range(3)]
    # Touch the oldest row: on PostgreSQL its new version now sits after the others in the heap,
    # so a dequeue without ORDER BY hands out the newer tasks first.
    OrmQ.objects.filter(pk=ids[0]).update(lock=timezone.now())
    order = []
    for _ in range(3):
        [(task_id, payload)] = broker.dequeue()
        order.append(SignedPackage.loads(payload)["n"])
        broker.acknowledge(task_id)
    assert order == [0, 1, 2]
