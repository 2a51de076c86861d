"""django-q2's ORM broker, handing tasks out oldest first, on the database's clock.

Two changes to django-q2's ``ORM`` broker:

* **FIFO.** Its ``dequeue`` selects with no ORDER BY, so PostgreSQL returns rows in heap order: a
  task whose row was touched (locked, re-pushed) jumps behind newer ones, and under a burst some
  stages wait far longer than others (bench/RESULTS.md: handoff p95 under load). Every query the
  broker makes goes through ``get_connection``; ordering that queryset by id makes the dequeue
  FIFO (updates, counts and deletes drop the ordering).
* **One clock.** A task row's ``lock`` is written by the enqueuing host and compared by the
  dequeuing one, each with its own ``timezone.now()``: a worker host 30 s behind saw every new
  task 30 s late. Here every lock time is on the database's clock (``jobs.orchestrator.clock``).
"""

from __future__ import annotations

from datetime import timedelta
from time import sleep

from django_q.brokers.orm import ORM
from django_q.conf import Conf


def _now():
    from jobs.orchestrator import clock

    return clock.now()


class FifoORM(ORM):
    @staticmethod
    def get_connection(list_key: str | None = None):
        return ORM.get_connection(list_key).order_by("id")

    def timeout(self, task):
        return _now() + timedelta(seconds=Conf.RETRY)

    def queue_size(self) -> int:
        return self.get_connection().filter(key=self.list_key, lock__lte=_now()).count()

    def lock_size(self) -> int:
        return self.get_connection().filter(key=self.list_key, lock__gt=_now()).count()

    def enqueue(self, task):
        return self.get_connection().create(key=self.list_key or Conf.CLUSTER_NAME, payload=task, lock=_now()).pk

    def dequeue(self):
        """django-q2's dequeue (select due rows, claim each with a compare-and-set of its lock)."""
        tasks = self.get_connection().filter(key=self.list_key, lock__lt=_now())[: Conf.BULK]
        if tasks:
            taken = []
            for task in tasks:
                if self.get_connection().filter(id=task.id, lock=task.lock).update(lock=self.timeout(task)):
                    taken.append((task.pk, task.payload))
                # else another cluster was faster
            return taken
        sleep(Conf.POLL)  # empty queue, spare the CPU
