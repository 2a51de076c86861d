"""django-q2's ORM broker, handing tasks out oldest first.

Its ``dequeue`` selects with no ORDER BY, so PostgreSQL returns rows in heap order: a task whose
row was touched (locked, re-pushed) jumps behind newer ones, and under a burst some stages wait
far longer than others (bench/RESULTS.md: handoff p95 under load). Every query the broker makes
goes through ``get_connection``; ordering that queryset by id makes the dequeue FIFO (updates,
counts and deletes drop the ordering).
"""

from __future__ import annotations

from django_q.brokers.orm import ORM


class FifoORM(ORM):
    @staticmethod
    def get_connection(list_key: str | None = None):
        return ORM.get_connection(list_key).order_by("id")
