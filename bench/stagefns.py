"""Stage functions and a bare django-q2 task for ``bench/engine.py``.

Registered in the worker through ``TRENDREEL_STAGE_FUNCTIONS`` (the worker is started with
``cwd`` = the project root, so ``bench`` is importable there as in the bench process).

* ``noop``: does nothing, so a benchmark measures the engine alone.
* ``chaos``: sleeps a little (so a SIGKILL lands inside a running stage) and raises
  ``TransientStageError`` on about ``rate`` of its calls. The draw is seeded per
  ``(seed, job, stage, attempt)``, so the same job id fails the same attempts in any process.
  Its output names the cluster (``TRENDREEL_CLUSTER``) whose worker ran it.
* ``hop``: the "bare handoff" baseline: a django-q2 task that stamps when it started and
  enqueues the next hop, with no database bookkeeping at all.
"""

from __future__ import annotations

import os
import random
import time

from stages.base import StageContext, TransientStageError

CHAOS_DEFAULTS = {"seed": 2, "rate": 0.2, "sleep_min": 0.02, "sleep_max": 0.2}


def noop(ctx: StageContext) -> dict:
    return {}


def chaos_draw(seed: int, job_id: int, stage: str, attempt: int) -> random.Random:
    return random.Random(f"{seed}:{job_id}:{stage}:{attempt}")


def chaos(ctx: StageContext) -> dict:
    cfg = {**CHAOS_DEFAULTS, **(ctx.params.get("chaos") or {})}
    rng = chaos_draw(int(cfg["seed"]), ctx.job_id, ctx.stage, ctx.attempt)
    end = time.monotonic() + rng.uniform(float(cfg["sleep_min"]), float(cfg["sleep_max"]))
    while time.monotonic() < end:
        ctx.check_cancelled()  # a swept (lost) run stops here
        time.sleep(0.01)
    if rng.random() < float(cfg["rate"]):
        raise TransientStageError(f"chaos: {ctx.stage} attempt {ctx.attempt} failed on purpose")
    return {"attempt": ctx.attempt, "cluster": os.environ.get("TRENDREEL_CLUSTER", "")}


def hop(log_path: str, chain: int, index: int, hops: int, sent: float, txn: bool = False) -> None:
    """One task of a bare chain: record (sent, started), then enqueue the next hop.

    ``txn``: the "durable" chain, the floor of any engine on this stack: each hop also runs the
    baseline's bare transaction (INSERT + UPDATE of ``bench_baseline``), and enqueues the next hop
    inside it, as the orchestrator does with the ORM broker (Redis: the push is not transactional).
    """
    started = time.time()
    with open(log_path, "a") as fh:  # one short O_APPEND write: atomic between processes
        fh.write(f"{chain} {index} {sent:.6f} {started:.6f}\n")
    from django.db import connection, transaction
    from django_q.tasks import async_task

    with transaction.atomic() if txn else _nothing():
        if txn:
            from django.utils import timezone

            with connection.cursor() as cur:
                cur.execute(
                    "INSERT INTO bench_baseline (status, n, updated) VALUES (%s, %s, %s) RETURNING id",
                    ["queued", index, timezone.now()],
                )
                pk = cur.fetchone()[0]
                cur.execute(
                    "UPDATE bench_baseline SET status = %s, updated = %s WHERE id = %s",
                    ["succeeded", timezone.now(), pk],
                )
        if index + 1 < hops:
            async_task(
                "bench.stagefns.hop",
                log_path,
                chain,
                index + 1,
                hops,
                time.time(),
                txn,
                task_name=f"hop-{chain}-{index + 1}",
                timeout=60,
            )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None
