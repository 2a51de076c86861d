#!/usr/bin/env python
"""Engine benchmark (issue 2): the orchestrator through a real django-q2 cluster.

    cd /work/main && .venv/bin/python bench/engine.py [--jobs 50] [--db postgres|sqlite] [--quick]

For each broker (ORM, then Redis) it starts ``manage.py worker`` (django-q2 cluster with 2
workers + the sweeper loop) as a subprocess in its own process group, on a dedicated database
(PostgreSQL ``trendreel_bench``, dropped and re-created each run, or a SQLite file in a temp
dir; never the dev database), with no-op stage functions (``bench/stagefns.py``), then measures:

* handoff latency (StageRun(k+1).started_at - StageRun(k).finished_at) for one job alone
  (``--alone`` jobs run one after the other, handoffs pooled) and under ``--jobs`` jobs started
  in one transaction. The human gate (composition -> review) is excluded; the bench approves
  each job as soon as it waits for review, so review -> publish (approval commit to publish
  claim, a machine handoff) is included;
* stage transitions per second under that load (a transition = a StageRun that succeeded: 8 per
  job, 7 run by workers + the review decision);
* baselines on the same database/broker, same count, no orchestration logic: the bare
  transaction (INSERT + UPDATE on a plain table) and broker round trip, (a) through the cluster:
  N django-q2 chains x 8 hops at once where each hop runs the bare transaction and enqueues the
  next hop, on the same 2 workers (the cost ratio's baseline: ``--rounds`` pairs of the loaded
  phase and this chain, run back to back alternating which goes first; the median pair is
  reported, because one ~1 s chain moves 20-40 % from run to run on a shared VM), and (b) as a client loop
  (enqueue/dequeue/acknowledge through django-q2's broker API in the bench process, with 1 and
  with 2 clients), which leaves out what any task pays to reach a worker process; plus a bare
  chain with no transaction at all, alone and as N chains at once;
* where the time of one transition goes: CPU per transition by process role (from /proc),
  PostgreSQL connections opened per transition, an in-process profile of ``execute_run`` (with
  the same per-task ``close_old_connections`` django-q2 does), and the CPU share other
  processes on the machine used meanwhile (the numbers are only comparable when it is low);

then a chaos run per broker: N jobs, ~20% of stage calls raise TransientStageError, every 5 s
a worker process asleep inside a stage is SIGKILLed, until all jobs finish or the deadline; and
an idle-kill probe (SIGKILL the idle worker blocked reading django-q2's task queue, then check
that new jobs still run; informational). The exit status is non-zero when a chaos invariant
fails (stuck jobs, a stage that succeeded twice); missed performance targets only print FAIL.

``--whatif`` runs the same bench with ``bench/settings_whatif.py`` (persistent DB connections)
to measure that suggestion; it is not the shipped configuration. Results: ``bench/RESULTS.md``.

Worker processes are always killed (process group) on exit, Ctrl-C, SIGTERM or error.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "trendreel_bench"  # dedicated; dropped and re-created by every run
REDIS_URL = "redis://127.0.0.1:6379/13"
TARGET_P50_MS = {"orm": 30.0, "redis": 15.0}
TARGET_TPS = 150.0
TARGET_RATIO = 1.5
CLK = os.sysconf("SC_CLK_TCK")
MAIN_PID = os.getpid()
RUN_ID = uuid.uuid4().hex[:8]
HOST = socket.gethostname()

STAGE_KEYS = (  # must match stages.pipeline (checked after django.setup)
    "trend_collection",
    "trend_analysis",
    "script_generation",
    "scene_generation",
    "voiceover",
    "composition",
    "review",
    "publish",
)
GATE = "review"
WORKER_STAGES = tuple(k for k in STAGE_KEYS if k != GATE)
NOOP_FUNCTIONS = {k: "bench.stagefns.noop" for k in WORKER_STAGES}
CHAOS_FUNCTIONS = {k: "bench.stagefns.chaos" for k in WORKER_STAGES}
LOAD_POLICY = {
    k: {"time_limit": 60, "max_attempts": 3, "backoff_base": 0.05, "backoff_cap": 0.5} for k in WORKER_STAGES
}
CHAOS_POLICY = {
    k: {"time_limit": 30, "max_attempts": 8, "backoff_base": 0.05, "backoff_cap": 0.5}
    | ({"cluster": "render"} if k == "composition" else {})
    for k in WORKER_STAGES
}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, float, float] | None:
    """(comm, ppid, cpu seconds, cpu seconds of reaped children) from /proc, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    return comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK, (int(rest[13]) + int(rest[14])) / CLK


def all_procs() -> dict[int, tuple[str, int, float, float]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                out[int(entry)] = st
    return out


def children_of(pid: int, procs: dict | None = None) -> list[int]:
    procs = procs if procs is not None else all_procs()
    return sorted(p for p, st in procs.items() if st[1] == pid)


def machine_ticks() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(v[:8])
    idle = v[3] + v[4]
    return total - idle, total


class Cluster:
    """``manage.py worker`` in its own session: the group kill takes sentinel + workers with it."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log = logdir / f"worker-{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "worker"],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.aux_pids: set[int] = set()  # pusher + monitor, known after the warm-up
        CLUSTERS.append(self)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if "stage workers" in self.tail() and len(children_of(self.sentinel_pid() or -1)) >= 4:
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready after {timeout}s:\n{self.tail()}")

    def learn_aux(self) -> None:
        """After jobs ran: the sentinel's children that ran no stage are the pusher and monitor."""
        kids = set(children_of(self.sentinel_pid() or -1))
        self.aux_pids = (kids - worker_pids()) & (self.aux_pids or kids)
        if len(self.aux_pids) != 2:
            say(f"warning: expected 2 non-worker processes (pusher, monitor), found {sorted(self.aux_pids)}")

    def sentinel_pid(self) -> int | None:
        procs = all_procs()
        kids = children_of(self.pid, procs)
        # the sentinel is the child that has children (2 workers + monitor + pusher)
        kids.sort(key=lambda p: -len(children_of(p, procs)))
        return kids[0] if kids else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with _suppress():
                self.proc.send_signal(signal.SIGTERM)
            with _suppress():
                self.proc.wait(timeout=3)
        with _suppress():
            os.killpg(self.pid, signal.SIGKILL)  # sentinel, workers, pusher, monitor
        with _suppress():
            self.proc.wait(timeout=5)
        if self in CLUSTERS:
            CLUSTERS.remove(self)


CLUSTERS: list[Cluster] = []
CLEANUPS: list = []


def _suppress():
    return suppress(Exception)  # cleanup must go on


def cleanup() -> None:
    if os.getpid() != MAIN_PID:
        return
    for cluster in list(CLUSTERS):
        cluster.stop()
    while CLEANUPS:
        with _suppress():
            CLEANUPS.pop()()


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def _alarm(signum, frame):
    raise TimeoutError("the bench ran past --max-seconds; stopping")


# --- setup -----------------------------------------------------------------------------------


def prepare_database(db: str, tmp: Path) -> str:
    if db == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_BENCH_DB
    return f"sqlite:///{tmp / 'var' / 'bench.sqlite3'}"


def worker_env(
    common: dict[str, str], *, queue: str, broker: str, functions: dict, policy: dict, extra: dict | None = None
) -> dict[str, str]:
    env = dict(common)
    env.update(
        TRENDREEL_QUEUE_NAME=queue,
        TRENDREEL_STAGE_FUNCTIONS=json.dumps(functions),
        TRENDREEL_STAGE_POLICY=json.dumps(policy),
    )
    if broker == "redis":
        env["REDIS_URL"] = REDIS_URL
    env.update(extra or {})
    return env


def use_broker(broker: str, queue: str) -> None:
    """Point this process's django-q2 (enqueue from start_job/review_job, baselines) at a broker."""
    from django.conf import settings
    from django_q.conf import Conf

    if broker == "redis":
        Conf.ORM, Conf.REDIS, Conf.BROKER_CLASS = None, REDIS_URL, None
    else:
        Conf.ORM, Conf.REDIS, Conf.BROKER_CLASS = "default", None, "jobs.broker.FifoORM"
    Conf.CLUSTER_NAME = queue
    settings.TRENDREEL_QUEUE_BASE = queue  # the default cluster's queue: where routing pushes


def purge_queue(broker: str, queue: str) -> None:
    use_broker(broker, queue)
    from django_q.brokers import get_broker

    with _suppress():
        get_broker(queue).delete_queue()


# --- measurements ----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def handoffs_ms(job_ids: list[int]) -> list[float]:
    from jobs.models import StageRun

    runs: dict[int, dict[str, tuple]] = defaultdict(dict)
    for job_id, stage, started, finished in StageRun.objects.filter(
        job_id__in=job_ids, status=StageRun.Status.SUCCEEDED
    ).values_list("job_id", "stage", "started_at", "finished_at"):
        runs[job_id][stage] = (started, finished)
    out = []
    for stages in runs.values():
        for prev, cur in zip(STAGE_KEYS, STAGE_KEYS[1:], strict=False):
            if cur == GATE or prev not in stages or cur not in stages:
                continue  # composition -> review is the human gate
            out.append((stages[cur][0] - stages[prev][1]).total_seconds() * 1000)
    return out


@functools.cache
def reviewer():
    """The bench's reviewer (approving needs a user with jobs.review_job)."""
    from django.contrib.auth.models import Permission, User

    user, _ = User.objects.get_or_create(username="bench-reviewer")
    user.user_permissions.add(Permission.objects.get(codename="review_job"))
    return User.objects.get(pk=user.pk)


def job_statuses(pending: set[int]) -> list[tuple[int, str]]:
    """(id, status) of the pending jobs: one plain statement over their id range. The bench's
    poll is its instrument, not the engine: through the ORM (``pk__in`` of up to 200 ids, compiled
    every 25 ms) it cost ~1.6 ms of CPU a poll, charged to the engine's side of the cost ratio."""
    from django.db import connection

    from jobs.models import Job

    with connection.cursor() as cur:
        cur.execute(
            f"SELECT id, status FROM {Job._meta.db_table} WHERE id BETWEEN %s AND %s", [min(pending), max(pending)]
        )
        return [(pk, status) for pk, status in cur.fetchall() if pk in pending]


def drive(job_ids: list[int], deadline: float, poll: float, on_tick=None) -> set[int]:
    """Approve jobs as soon as they wait for review; return the jobs still active at the deadline."""
    from jobs import orchestrator
    from jobs.models import Job

    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        for pk, status in job_statuses(pending):
            if status == Job.Status.AWAITING_REVIEW:
                with _suppress():
                    orchestrator.review_job(pk, "approve", user=reviewer())
            elif status in Job.FINISHED:
                pending.discard(pk)
        if on_tick:
            on_tick()
        if pending:
            time.sleep(poll)
    return pending


def start_jobs(theme, n: int, params: dict | None = None) -> tuple[list[int], float]:
    """n jobs in one transaction: all become visible (and, ORM, enqueued) at one COMMIT."""
    from django.db import transaction

    from jobs import orchestrator

    with transaction.atomic():
        ids = [orchestrator.start_job(theme, params=params or {}).pk for _ in range(n)]
    return ids, time.time()


def pg_sessions() -> int | None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cur.fetchone()[0])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


OURS = (
    "workers",
    "pusher+monitor",
    "sentinel",
    "sweeper loop (worker cmd)",
    "postgres",
    "redis",
    "bench (approvals, polling)",
)


def cpu_snapshot(cluster: Cluster | list[Cluster] | None) -> dict[str, float]:
    """CPU seconds so far by role; "postgres" = the bench database's backends + background
    processes + exited backends (reaped by the postmaster); other databases' backends are foreign."""
    from django.conf import settings

    dbname = settings.DATABASES["default"]["NAME"]
    procs = all_procs()
    clusters = cluster if isinstance(cluster, list) else [cluster] if cluster else []
    sentinels = {c.sentinel_pid(): c for c in clusters}
    mains = {c.pid for c in clusters}
    out: dict[str, float] = defaultdict(float)
    for pid, (comm, ppid, cpu, reaped) in procs.items():
        if pid in mains:
            out["sweeper loop (worker cmd)"] += cpu
        elif pid in sentinels and pid is not None:
            out["sentinel"] += cpu
            out["workers"] += reaped  # workers that died/recycled during the phase
        elif ppid in sentinels and ppid is not None:
            # pusher and monitor are the sentinel's children at start that never ran a stage;
            # any other child is a worker (reincarnated and recycled ones included)
            out["pusher+monitor" if pid in sentinels[ppid].aux_pids else "workers"] += cpu
        elif pid == MAIN_PID:
            out["bench (approvals, polling)"] += cpu
        elif comm == "postgres":
            if ppid == 1:  # postmaster: its own CPU + every exited backend's
                out["postgres"] += cpu + reaped
            else:
                cmd = _cmdline(pid)
                parts = cmd.split()
                is_backend = len(parts) >= 4 and parts[1].endswith("main:") and "(" in cmd
                if not is_backend or f" {dbname} " in cmd:
                    out["postgres"] += cpu
        elif comm == "redis-server":
            out["redis"] += cpu
        elif ppid == MAIN_PID:
            out["bench (approvals, polling)"] += cpu + reaped  # baseline clients
    busy, total = machine_ticks()
    out["_busy"], out["_total"] = busy / CLK, total / CLK
    return out


class Meter:
    """CPU by role over a phase, plus what other processes on the machine used meanwhile."""

    def __init__(self, cluster: Cluster | list[Cluster] | None) -> None:
        self.cluster = cluster
        self.t0 = time.monotonic()
        self.before = cpu_snapshot(cluster)

    def stop(self) -> dict[str, float]:
        after = cpu_snapshot(self.cluster)
        d = {k: after.get(k, 0.0) - self.before.get(k, 0.0) for k in OURS}
        busy = after["_busy"] - self.before["_busy"]
        total = after["_total"] - self.before["_total"]
        d["_seconds"] = time.monotonic() - self.t0
        d["_machine_busy_pct"] = 100.0 * busy / total if total else float("nan")
        d["_foreign_pct"] = max(0.0, 100.0 * (busy - sum(d[k] for k in OURS)) / total) if total else float("nan")
        return d


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait (at most max_wait s) until the machine is below ``limit`` % busy over 1 s; return it."""
    end = time.monotonic() + max_wait
    while True:
        b0, t0 = machine_ticks()
        time.sleep(1.0)
        b1, t1 = machine_ticks()
        busy = 100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        if busy < limit or time.monotonic() >= end:
            return busy


def wchan(pid: int) -> str:
    """Where the process's main thread sleeps in the kernel ("hrtimer_nanosleep": time.sleep,
    "anon_pipe_read": blocked reading a pipe, e.g. django-q2's task queue, "futex_do_wait": a lock)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        return "?"


def worker_pids(job_ids: list[int] | None = None) -> set[int]:
    from jobs.models import StageRun

    qs = StageRun.objects.exclude(worker="")
    if job_ids is not None:
        qs = qs.filter(job_id__in=job_ids)
    return {
        int(w.rsplit(":", 1)[1]) for w in qs.values_list("worker", flat=True).distinct() if w.startswith(HOST + ":")
    }


# --- phases ----------------------------------------------------------------------------------


def phase_alone(theme, n: int, cluster: Cluster | None = None) -> dict:
    from jobs.models import Job

    meter = Meter(cluster)
    ids, total = [], []
    for _ in range(n):
        t0 = time.monotonic()
        job_ids, _ = start_jobs(theme, 1)
        left = drive(job_ids, time.monotonic() + 30, 0.002)
        if left:
            raise RuntimeError(f"job {job_ids[0]} alone did not finish in 30 s")
        ids += job_ids
        total.append(time.monotonic() - t0)
    statuses = set(Job.objects.filter(pk__in=ids).values_list("status", flat=True))
    h = handoffs_ms(ids)
    return {"ids": ids, "handoffs": h, "statuses": statuses, "job_s": total, "cpu": meter.stop()}


def phase_load(theme, n: int, cluster: Cluster, deadline_s: float = 120) -> dict:
    from jobs.models import Job, StageRun

    sessions0 = pg_sessions()
    meter = Meter(cluster)
    ids, t0 = start_jobs(theme, n)
    left = drive(ids, time.monotonic() + deadline_s, 0.025)
    if left:
        raise RuntimeError(f"{len(left)} of {n} load jobs did not finish in {deadline_s} s")
    end = max(Job.objects.filter(pk__in=ids).values_list("finished", flat=True)).timestamp()
    cpu = meter.stop()
    sessions1 = pg_sessions()
    transitions = StageRun.objects.filter(job_id__in=ids, status=StageRun.Status.SUCCEEDED).count()
    statuses = set(Job.objects.filter(pk__in=ids).values_list("status", flat=True))
    wall = end - t0
    return {
        "ids": ids,
        "transitions": transitions,
        "wall": wall,
        "tps": transitions / wall,
        "handoffs": handoffs_ms(ids),
        "statuses": statuses,
        "cpu": cpu,
        "sessions": None if sessions0 is None else sessions1 - sessions0,
    }


def cost_ratio(pair: dict) -> float:
    """Orchestrated ms per transition over bare durable-chain ms per hop, measured side by side."""
    floor_hps = pair["durable_chain_load"]["hps"]
    return (1000 / pair["load"]["tps"]) / (1000 / floor_hps) if floor_hps else float("inf")


def phase_idle(cluster: Cluster, seconds: float = 3.0) -> dict:
    """What an idle cluster costs (the ORM pusher polls every TRENDREEL_BROKER_POLL)."""
    s0, meter = pg_sessions(), Meter(cluster)
    time.sleep(seconds)
    d, s1 = meter.stop(), pg_sessions()
    ours = sum(d[k] for k in OURS if k != "bench (approvals, polling)")
    return {
        "cpu": d,
        "ours_pct": 100 * ours / d["_seconds"],  # % of one core
        "sessions_per_s": None if s0 is None else (s1 - s0) / seconds,
    }


def phase_chain(
    workdir: Path, chains: int, hops: int, deadline_s: float = 60, cluster: Cluster | None = None, txn: bool = False
) -> dict:
    """Bare django-q2 chains: each task enqueues the next, no bookkeeping (``txn``: plus one
    bare transaction per hop, the "durable" chain)."""
    from django.db import transaction
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    log = workdir / f"chain-{uuid.uuid4().hex[:6]}.log"
    log.write_text("")
    meter = Meter(cluster)
    broker = get_broker()
    with transaction.atomic():
        for c in range(chains):
            async_task(
                "bench.stagefns.hop",
                str(log),
                c,
                0,
                hops,
                time.time(),
                txn,
                task_name=f"hop-{c}-0",
                timeout=60,
                broker=broker,
            )
    t0 = time.time()
    end = time.monotonic() + deadline_s
    want = chains * hops
    lines: list[str] = []
    while time.monotonic() < end:
        lines = log.read_text().splitlines()
        if len(lines) >= want:
            break
        time.sleep(0.02)
    rows = [line.split() for line in lines]
    lat = [(float(st) - float(sent)) * 1000 for _, i, sent, st in rows if int(i) > 0]
    last = max((float(r[3]) for r in rows), default=t0)
    return {
        "hops": len(rows),
        "want": want,
        "latency": lat,
        "wall": last - t0,
        "hps": len(rows) / (last - t0) if last > t0 else 0.0,
        "cpu": meter.stop(),
    }


BASELINE_TABLE = "bench_baseline"


def _baseline_setup() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {BASELINE_TABLE} (id bigserial PRIMARY KEY, status varchar(20) NOT NULL, n integer NOT NULL, updated timestamptz NOT NULL)"
            )
        else:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {BASELINE_TABLE} (id integer PRIMARY KEY AUTOINCREMENT, status varchar(20) NOT NULL, n integer NOT NULL, updated datetime NOT NULL)"
            )


def _baseline_async_commit(n: int) -> float | None:
    """PostgreSQL only: the bare transaction with SET LOCAL synchronous_commit = off (no WAL
    flush wait), to show how much of a commit is the flush. Returns ms per transaction."""
    from django.db import connection, transaction
    from django.utils import timezone

    if connection.vendor != "postgresql":
        return None
    t = time.perf_counter()
    for i in range(n):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit TO OFF")
            cur.execute(
                f"INSERT INTO {BASELINE_TABLE} (status, n, updated) VALUES (%s, %s, %s) RETURNING id",
                ["queued", i, timezone.now()],
            )
            pk = cur.fetchone()[0]
            cur.execute(
                f"UPDATE {BASELINE_TABLE} SET status = %s, updated = %s WHERE id = %s",
                ["succeeded", timezone.now(), pk],
            )
    return 1000 * (time.perf_counter() - t) / n


def _baseline_work(n: int, list_key: str, kinds: str = "both") -> tuple[float, float, float, float]:
    """n x (bare transaction, broker round trip). Returns (start, end, txn seconds, rt seconds)."""
    from django.db import connection, transaction
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = get_broker(list_key)
    t_txn = t_rt = 0.0
    start = time.time()
    for i in range(n):
        if kinds in ("both", "txn"):
            a = time.perf_counter()
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {BASELINE_TABLE} (status, n, updated) VALUES (%s, %s, %s) RETURNING id",
                    ["queued", i, timezone.now()],
                )
                pk = cur.fetchone()[0]
                cur.execute(
                    f"UPDATE {BASELINE_TABLE} SET status = %s, updated = %s WHERE id = %s",
                    ["succeeded", timezone.now(), pk],
                )
            t_txn += time.perf_counter() - a
        if kinds in ("both", "rt"):
            a = time.perf_counter()
            broker.enqueue(SignedPackage.dumps({"func": "noop", "args": (i,), "kwargs": {}}))
            got = None
            for _ in range(100):
                got = broker.dequeue()
                if got:
                    break
            ack_id, payload = got[0]
            SignedPackage.loads(payload)
            broker.acknowledge(ack_id)
            t_rt += time.perf_counter() - a
    return start, time.time(), t_txn, t_rt


def _baseline_child(conn, n: int, list_key: str) -> None:
    try:
        conn.send(_baseline_work(n, list_key))
    except BaseException as exc:  # noqa: BLE001
        conn.send(repr(exc))
    finally:
        from django.db import connections

        connections.close_all()


def phase_baseline(n: int, queue: str) -> dict:
    import multiprocessing

    from django.db import connections

    _baseline_setup()
    # 1 client: the two parts timed separately
    _, _, t_txn, _ = _baseline_work(n, f"{queue}-base", kinds="txn")
    _, _, _, t_rt = _baseline_work(n, f"{queue}-base", kinds="rt")
    async_ms = _baseline_async_commit(n)
    # 2 clients (the cluster has 2 workers): n/2 pairs each, wall clock of both
    connections.close_all()  # never fork with an open connection
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for c in range(2):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_baseline_child, args=(child, n // 2, f"{queue}-base{c}"))
        p.start()
        pipes.append(parent)
        procs.append(p)
    results = []
    for parent, p in zip(pipes, procs, strict=False):
        if not parent.poll(120):
            p.kill()
            raise RuntimeError("baseline client did not answer in 120 s")
        results.append(parent.recv())
        p.join(10)
    for r in results:
        if isinstance(r, str):
            raise RuntimeError(f"baseline client failed: {r}")
    wall2 = max(r[1] for r in results) - min(r[0] for r in results)
    for key in (f"{queue}-base", f"{queue}-base0", f"{queue}-base1"):
        from django_q.brokers import get_broker

        with _suppress():
            get_broker(key).delete_queue()
    return {
        "n": n,
        "txn_ms": 1000 * t_txn / n,
        "txn_async_ms": async_ms,
        "rt_ms": 1000 * t_rt / n,
        "pair_ms_1": 1000 * (t_txn + t_rt) / n,
        "pair_ms_2": 1000 * wall2 / (2 * (n // 2)),
    }


# --- in-process profile of one transition ----------------------------------------------------


class Profiler:
    """Exclusive wall and CPU time per labelled segment, per transition; SQL statements are
    segments of their caller (so a caller's time excludes its queries)."""

    def __init__(self) -> None:
        self.stack: list[list] = []
        self.current: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
        self.history: list[dict[str, list[float]]] = []
        self.main = threading.main_thread()

    def next_transition(self) -> None:
        self.history.append(dict(self.current))
        self.current = defaultdict(lambda: [0.0, 0.0, 0])

    @contextmanager
    def seg(self, label: str):
        if threading.current_thread() is not self.main:
            yield
            return
        t, c = time.perf_counter(), time.thread_time()
        self.stack.append([label, 0.0, 0.0])
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - t, time.thread_time() - c
            _, child_wall, child_cpu = self.stack.pop()
            acc = self.current[label]
            acc[0] += wall - child_wall
            acc[1] += cpu - child_cpu
            acc[2] += 1
            if self.stack:
                self.stack[-1][1] += wall
                self.stack[-1][2] += cpu

    def wrap(self, label: str, fn):
        """Time ``fn`` only when called inside a measured segment (not the bench's own calls)."""

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not self.stack:
                return fn(*args, **kwargs)
            with self.seg(label):
                return fn(*args, **kwargs)

        return wrapper

    def rows(self) -> list[tuple[str, float, float, float, float]]:
        """(label, mean wall ms, median wall ms, mean CPU ms, calls) per transition."""
        n = len(self.history)
        labels = {label for h in self.history for label in h}
        out = []
        for label in labels:
            walls = [1000 * h[label][0] if label in h else 0.0 for h in self.history]
            cpus = [1000 * h[label][1] if label in h else 0.0 for h in self.history]
            calls = sum(h[label][2] for h in self.history if label in h)
            out.append((label, sum(walls) / n, pct(walls, 0.5), sum(cpus) / n, calls / n))
        return sorted(out, key=lambda r: -r[1])


_SQL_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.I)


def classify_sql(sql: str) -> str:
    verb = sql.lstrip().split(None, 1)[0].upper()
    m = _SQL_TABLE.search(sql)
    table = m.group(1) if m else "?"
    extra = ""
    if verb == "SELECT" and "FOR UPDATE" in sql.upper():
        extra = " FOR UPDATE"
    elif verb == "SELECT" and "MAX(" in sql.upper():
        extra = " MAX(attempt)"
    elif verb == "UPDATE" and table == "jobs_stagerun":
        extra = " (claim)" if '"worker"' in sql else " (record)"
    elif verb == "WITH" and '"worker"' in sql:
        return "UPDATE+SELECT jobs_stagerun (claim + load, one statement)"
    elif verb == "WITH":
        return "UPDATE job, UPDATE run, INSERT next (the record, one statement)"
    elif verb == "UPDATE" and table == "jobs_job":
        extra = " (start: a job's first claim)"
    elif verb == "SELECT" and table == "jobs_stagerun":
        extra = (
            " JOIN job, theme (load run)"
            if "JOIN" in sql.upper()
            else (" (checkpoints)" if "superseded_at" in sql else "")
        )
    return f"{verb} {table}{extra}"


def phase_profile(theme, broker: str, queue: str, jobs: int, cprofile_jobs: int = 0) -> dict:
    """Run jobs' stages in this process with django-q2's per-task close_old_connections, timed."""
    from django import db
    from django.db import connection
    from django_q import tasks as q_tasks

    from jobs import orchestrator

    dead_queue = f"{queue}-profile"  # no cluster reads it; purged afterwards
    use_broker(broker, dead_queue)
    prof = Profiler()
    conn = db.connections["default"]
    from jobs.orchestrator import lifecycle, runner, watchdog

    patches = [
        (runner, "_context", "context: python + fs"),
        (watchdog.Watchdog, "start", "watchdog thread start"),
        (watchdog.Watchdog, "finish", "watchdog thread stop/join"),
        (runner, "_record", "record: python + fs rename"),
        (lifecycle, "lock_job", "record: lock job"),
        (lifecycle, "new_run", "advance: new run"),
        (q_tasks, "async_task", "enqueue: async_task (sign + push)"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, label in patches:
        setattr(obj, name, prof.wrap(label, getattr(obj, name)))
    conn_saved = {k: conn.__dict__.get(k) for k in ("commit", "connect")}
    conn.commit = prof.wrap("COMMIT", conn.commit)
    conn.connect = prof.wrap("connect (new DB connection)", conn.connect)

    def sql_wrapper(execute, sql, params, many, context):
        if not prof.stack:
            return execute(sql, params, many, context)
        with prof.seg(f"  SQL {classify_sql(sql)}"):
            return execute(sql, params, many, context)

    transitions = 0
    totals: list[float] = []
    cpu_totals: list[float] = []
    stats_text = ""
    try:
        with connection.execute_wrapper(sql_wrapper):
            for run_id in _inline_runs(theme, jobs):
                t, c = time.perf_counter(), time.thread_time()
                with prof.seg("django-q2: close_old_connections"):
                    db.close_old_connections()  # what the worker does before every task
                with prof.seg("execute_run: python"):
                    orchestrator.execute_run(run_id)
                totals.append(1000 * (time.perf_counter() - t))
                cpu_totals.append(1000 * (time.thread_time() - c))
                prof.next_transition()
                transitions += 1
        if cprofile_jobs:
            stats_text = _cprofile_pass(theme, cprofile_jobs)
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
        for k, v in conn_saved.items():
            if v is None:
                conn.__dict__.pop(k, None)
            else:
                setattr(conn, k, v)
        purge_queue(broker, dead_queue)
    rows = prof.rows()
    return {
        "transitions": transitions,
        "ms_per_transition": sum(totals) / transitions,
        "p50_ms": pct(totals, 0.5),
        "cpu_ms": sum(cpu_totals) / transitions,
        "rows": rows,
        "cprofile": stats_text,
        "queries": sum(r[4] for r in rows if r[0].startswith("  SQL")),
    }


def _inline_runs(theme, jobs: int):
    """Start ``jobs`` jobs one after the other and yield each queued run for the caller to execute
    in this process (approving each job at review), until the job finishes."""
    from jobs import orchestrator
    from jobs.models import Job, StageRun

    for _ in range(jobs):
        job_id = start_jobs(theme, 1)[0][0]
        for _ in range(40):
            status = Job.objects.values_list("status", flat=True).get(pk=job_id)
            if status == Job.Status.AWAITING_REVIEW:
                orchestrator.review_job(job_id, "approve", user=reviewer())
                continue
            if status in Job.FINISHED:
                break
            yield (
                StageRun.objects.filter(job_id=job_id, status=StageRun.Status.QUEUED)
                .order_by("id")
                .values_list("pk", flat=True)
                .first()
            )


def _cprofile_pass(theme, jobs: int) -> str:
    """Python hot spots of execute_run (+ the per-task close_old_connections), by own time."""
    import cProfile
    import io
    import pstats

    from django import db

    from jobs import orchestrator

    prof = cProfile.Profile(time.thread_time)  # CPU time of this thread, not waits on the DB
    n = 0
    for run_id in _inline_runs(theme, jobs):
        prof.enable()
        db.close_old_connections()
        orchestrator.execute_run(run_id)
        prof.disable()
        n += 1
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(r"jobs/orchestrator|stages/base|django_q|bench/stagefns", 14)
    stats.sort_stats("tottime").print_stats(14)
    text = out.getvalue()
    parts = [p[p.find("ncalls") :] for p in text.split("   Ordered by")[1:]]
    return (
        f"cProfile (CPU time) of {n} transitions; the profiler's own per-call cost inflates small functions.\n"
        "By cumulative CPU, engine functions:\n" + parts[0].rstrip() + "\nBy own CPU, anything:\n" + parts[1].rstrip()
    )


# --- chaos -----------------------------------------------------------------------------------


def phase_chaos(
    theme,
    clusters: list[Cluster],
    n: int,
    deadline_s: float,
    kill_every: float,
    seed: int,
    kill_target: str = "running",
) -> dict:
    from django.conf import settings
    from django.db.models import Count, Q

    from jobs.models import Job, StageRun

    settings.TRENDREEL_STAGE_POLICY = CHAOS_POLICY  # what routing reads after an approval here
    rng = random.Random(seed)
    kills: list[tuple[float, int, int]] = []
    skipped = [0]
    meter = Meter(clusters)
    ids, t0 = start_jobs(theme, n, params={"chaos": {"seed": seed, "rate": 0.2, "sleep_min": 0.02, "sleep_max": 0.2}})
    next_kill = [time.monotonic() + kill_every]

    def killer() -> None:
        if time.monotonic() < next_kill[0]:
            return
        next_kill[0] += kill_every
        procs = all_procs()
        kids = {k for c in clusters for k in children_of(c.sentinel_pid() or -1, procs)}
        if kill_target == "any":
            # any worker process of the cluster, busy or idle (idle = blocked in the task queue)
            known = sorted(worker_pids() & kids)
            if known:
                pid = rng.choice(known)
                with _suppress():
                    os.kill(pid, signal.SIGKILL)
                    kills.append((time.time() - t0, pid, None))
                    return
        end = time.monotonic() + 1.0
        while kill_target == "running" and time.monotonic() < end:
            running = list(
                StageRun.objects.filter(job_id__in=ids, status=StageRun.Status.RUNNING).values_list("pk", "worker")
            )
            cands = [
                (pk, int(w.rsplit(":", 1)[1]))
                for pk, w in running
                if w.startswith(HOST + ":") and int(w.rsplit(":", 1)[1]) in kids
            ]
            # only a worker asleep inside the chaos stage: one that has just finished its stage
            # may already be back in the task queue's get(), and killing that one is another test
            # (see run_idle_kill)
            cands = [(pk, pid) for pk, pid in cands if wchan(pid) == "hrtimer_nanosleep"]
            if cands:
                pk, pid = rng.choice(cands)
                if (
                    StageRun.objects.filter(pk=pk, status=StageRun.Status.RUNNING).exists()
                    and wchan(pid) == "hrtimer_nanosleep"
                ):
                    with _suppress():
                        os.kill(pid, signal.SIGKILL)
                        kills.append((time.time() - t0, pid, pk))
                        return
            time.sleep(0.01)
        skipped[0] += 1

    left = drive(ids, time.monotonic() + deadline_s, 0.02, on_tick=killer)
    wall = time.time() - t0
    cpu = meter.stop()
    # what became of the attempt each kill interrupted
    hit = defaultdict(int)
    for _, pid, pk in kills:
        if pk is None:
            pk = (
                StageRun.objects.filter(job_id__in=ids, worker=f"{HOST}:{pid}")
                .order_by("-started_at")
                .values_list("pk", flat=True)
                .first()
            )
            st = StageRun.objects.values_list("status", flat=True).get(pk=pk) if pk else "idle"
        else:
            st = StageRun.objects.values_list("status", flat=True).get(pk=pk)
        hit[st] += 1
    now = datetime.now(UTC)
    jobs = dict(Job.objects.filter(pk__in=ids).values_list("pk", "status"))
    finished = [pk for pk, s in jobs.items() if s in Job.FINISHED]
    completed = [pk for pk, s in jobs.items() if s == Job.Status.COMPLETED]
    failed = Job.objects.filter(pk__in=ids, status=Job.Status.FAILED)
    # stuck: still active at the deadline with no StageRun activity in the last 10 s
    stuck = []
    for pk in left:
        stamps = [
            t
            for row in StageRun.objects.filter(job_id=pk).values_list(
                "queued_at", "started_at", "finished_at", "heartbeat_at"
            )
            for t in row
            if t
        ]
        if not stamps or (now - max(stamps)).total_seconds() > 10:
            stuck.append(pk)
    diagnosis = ""
    if stuck:
        waits = {
            pid: wchan(pid) for c in clusters for pid in children_of(c.sentinel_pid() or -1) if pid not in c.aux_pids
        }
        queued = StageRun.objects.filter(job_id__in=stuck, status=StageRun.Status.QUEUED).count()
        diagnosis = f"stuck jobs' queued runs: {queued}; workers' kernel wait: " + ", ".join(
            f"{p}:{w}" for p, w in sorted(waits.items())
        )
        if queued and waits and all(w == "futex_do_wait" for w in waits.values()):
            diagnosis += (
                " -> every worker waits for the task queue's lock: a killed worker took it with it (cluster wedged)"
            )
    dups = list(
        StageRun.objects.filter(job_id__in=ids, status=StageRun.Status.SUCCEEDED)
        .values("job_id", "stage")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("job_id", "stage", "n")
    )
    incomplete = [
        pk
        for pk in completed
        if StageRun.objects.filter(job_id=pk, status=StageRun.Status.SUCCEEDED).count() != len(STAGE_KEYS)
    ]
    runs = StageRun.objects.filter(job_id__in=ids)
    agg = runs.aggregate(
        crashed=Count("id", filter=Q(status=StageRun.Status.CRASHED)),
        transient=Count("id", filter=Q(status=StageRun.Status.FAILED, error_kind=StageRun.ErrorKind.TRANSIENT)),
        total=Count("id"),
    )
    return {
        "jobs": n,
        "finished": len(finished),
        "completed": len(completed),
        "failed": failed.count(),
        "failed_why": list(failed.values_list("pk", "error_stage", "error_message")[:5]),
        "active_at_deadline": len(left),
        "stuck": stuck,
        "dups": dups,
        "incomplete": incomplete,
        "kills": kills,
        "kill_skipped": skipped[0],
        "crashed": agg["crashed"],
        "transient": agg["transient"],
        "attempts": agg["total"],
        "wall": wall,
        "kill_outcomes": dict(hit),
        "cpu": cpu,
        "diagnosis": diagnosis,
        "ids": ids,
    }


# --- orchestration of the bench ---------------------------------------------------------------


def run_broker(args, broker: str, common_env: dict, theme, workdir: Path) -> dict:
    from django.conf import settings

    queue = f"trendreel-bench-{RUN_ID}-{broker}"
    CLEANUPS.append(lambda: purge_queue(broker, queue))
    settings.TRENDREEL_STAGE_POLICY = LOAD_POLICY
    use_broker(broker, queue)
    res: dict[str, Any] = {"broker": broker}
    if args.quiet_wait > 0:
        res["quiet"] = wait_quiet(25.0, args.quiet_wait)
        say(f"{broker}: machine {res['quiet']:.0f}% busy before starting")
    say(f"{broker}: starting manage.py worker (2 workers, queue {queue})")
    cluster = Cluster(
        f"{broker}-load",
        worker_env(common_env, queue=queue, broker=broker, functions=NOOP_FUNCTIONS, policy=LOAD_POLICY),
        workdir,
    )
    try:
        cluster.wait_ready()
        say(f"{broker}: warm-up")
        phase_alone(theme, 2)
        cluster.learn_aux()
        res["idle"] = phase_idle(cluster, 2.0 if args.quick else 3.0)
        say(f"{broker}: {args.alone} jobs alone, one after the other")
        res["alone"] = phase_alone(theme, args.alone, cluster)
        cluster.learn_aux()
        say(
            f"{broker}: bare chain alone ({args.chain_hops} hops), then {args.jobs} chains x 8 hops at once, without a txn per hop"
        )
        res["chain_alone"] = phase_chain(workdir, 1, args.chain_hops, cluster=cluster)
        res["chain_load"] = phase_chain(workdir, args.jobs, len(STAGE_KEYS), cluster=cluster)
        _baseline_setup()
        say(
            f"{broker}: {args.rounds} rounds of {args.jobs} jobs at once beside {args.jobs} bare durable chains x 8 hops"
            " (the cost ratio's pair, alternating which goes first)"
        )
        rounds = []
        for i in range(args.rounds):
            pair: dict[str, Any] = {}
            for phase in ("load", "chain") if i % 2 == 0 else ("chain", "load"):
                if phase == "load":
                    pair["load"] = phase_load(theme, args.jobs, cluster)
                else:
                    pair["durable_chain_load"] = phase_chain(
                        workdir, args.jobs, len(STAGE_KEYS), cluster=cluster, txn=True
                    )
            pair["ratio"] = cost_ratio(pair)
            say(
                f"{broker}: round {i + 1}: {1000 / pair['load']['tps']:.2f} ms/transition,"
                f" bare {1000 / max(pair['durable_chain_load']['hps'], 1e-9):.2f} ms/hop: cost ratio {pair['ratio']:.2f}x"
            )
            rounds.append(pair)
        res["rounds"] = [p["ratio"] for p in rounds]
        median = sorted(rounds, key=lambda p: p["ratio"])[len(rounds) // 2]
        res["load"], res["durable_chain_load"] = median["load"], median["durable_chain_load"]
    finally:
        cluster.stop()
    say(f"{broker}: baselines ({res['load']['transitions']} bare transactions + broker round trips, 1 and 2 clients)")
    res["baseline"] = phase_baseline(res["load"]["transitions"], queue)
    say(f"{broker}: in-process profile of execute_run")
    res["profile"] = phase_profile(theme, broker, queue, args.profile_jobs, args.cprofile)
    return res


def run_chaos(args, broker: str, common_env: dict, theme, workdir: Path) -> dict:
    """The deployment shape: three ``manage.py worker`` processes on one database and broker, two
    for the default cluster and one for the render cluster (composition is routed to it), each
    with its own sweeper loop; a worker process of any of them is SIGKILLed every few seconds."""
    queue = f"trendreel-bench-{RUN_ID}-{broker}-chaos"
    CLEANUPS.append(lambda: purge_queue(broker, queue))
    CLEANUPS.append(lambda: purge_queue(broker, f"{queue}-render"))
    use_broker(broker, queue)
    extra = {"TRENDREEL_HEARTBEAT_SECONDS": "0.2", "TRENDREEL_STALE_SECONDS": "2", "TRENDREEL_SWEEP_SECONDS": "0.2"}
    say(
        f"chaos/{broker}: {args.jobs} jobs on 3 workers (2 default + 1 render), 20% transient errors, "
        f"a worker process SIGKILLed every {args.kill_every:g} s, deadline {args.chaos_deadline:g} s"
    )
    clusters = [
        Cluster(
            f"{broker}-chaos-{name}",
            worker_env(
                common_env,
                queue=queue,
                broker=broker,
                functions=CHAOS_FUNCTIONS,
                policy=CHAOS_POLICY,
                extra={**extra, **({"TRENDREEL_CLUSTER": "render"} if name == "render" else {})},
            ),
            workdir,
        )
        for name in ("default-a", "default-b", "render")
    ]
    try:
        for cluster in clusters:
            cluster.wait_ready()
        phase_alone(theme, 2)  # warm-up (chaos stages: may retry), tells workers from pusher/monitor
        for cluster in clusters:
            cluster.learn_aux()
        res = phase_chaos(theme, clusters, args.jobs, args.chaos_deadline, args.kill_every, args.seed, args.kill_target)
        res["render_only"] = _renders_on(res["ids"])
    finally:
        for cluster in clusters:
            cluster.stop()
    res["broker"] = broker
    return res


def _renders_on(ids: list[int]) -> bool:
    """Every composition ran on the render cluster, and nothing else did (succeeded attempts)."""
    from jobs.models import StageRun

    rows = StageRun.objects.filter(job_id__in=ids, status=StageRun.Status.SUCCEEDED).exclude(stage=GATE)
    outputs = list(rows.values_list("stage", "output"))
    return bool(outputs) and all(
        (stage == "composition") == ((out or {}).get("cluster") == "render") for stage, out in outputs
    )


def run_idle_kill(args, broker: str, common_env: dict, theme, workdir: Path) -> dict:
    """SIGKILL the idle worker that holds the task queue's read lock (blocked in the pipe read),
    then start 5 jobs: do they run? (multiprocessing.Queue.get holds a lock while it waits.)"""
    from jobs.models import Job

    queue = f"trendreel-bench-{RUN_ID}-{broker}-idlekill"
    CLEANUPS.append(lambda: purge_queue(broker, queue))
    use_broker(broker, queue)
    extra = {
        "TRENDREEL_HEARTBEAT_SECONDS": "0.2",
        "TRENDREEL_STALE_SECONDS": "2",
        "TRENDREEL_SWEEP_SECONDS": "0.2",
        "TRENDREEL_STALL_SECONDS": "3",
    }
    say(f"idle-kill probe/{broker}: kill the idle worker blocked reading the task queue, then run 5 jobs")
    cluster = Cluster(
        f"{broker}-idlekill",
        worker_env(common_env, queue=queue, broker=broker, functions=NOOP_FUNCTIONS, policy=LOAD_POLICY, extra=extra),
        workdir,
    )
    res: dict[str, Any] = {"broker": broker, "victim": None}
    try:
        cluster.wait_ready()
        phase_alone(theme, 2)
        end = time.monotonic() + 5
        while time.monotonic() < end and res["victim"] is None:
            time.sleep(0.2)
            for pid in sorted(worker_pids() & set(children_of(cluster.sentinel_pid() or -1))):
                with _suppress():
                    if Path(f"/proc/{pid}/wchan").read_text().strip() == "anon_pipe_read":
                        res["victim"] = pid
                        break
        if res["victim"] is None:
            return res
        os.kill(res["victim"], signal.SIGKILL)
        time.sleep(2.0)  # the sentinel replaces it within its 0.5 s guard cycle
        ids, _ = start_jobs(theme, 5)
        t0 = time.monotonic()
        left = drive(ids, time.monotonic() + 30, 0.02)  # the worker restarts a stalled cluster (STALL 3 s)
        res["seconds"] = time.monotonic() - t0
        res["finished"] = 5 - len(left)
        res["statuses"] = sorted(set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)))
    finally:
        cluster.stop()
    return res


def fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def broker_label(name: str) -> str:
    return "ORM broker" if name == "orm" else "Redis broker"


def report(
    args, info: dict, results: list[dict], chaos: list[dict], idle_kills: list[dict] | None = None
) -> tuple[list[str], list[tuple[str, bool]]]:
    lines: list[str] = []
    w = lines.append
    checks: list[tuple[str, bool]] = []
    W = 46

    def table_head(title: str, names: list[str], last: str) -> None:
        head = f"{title:{W}}" + "".join(f"{broker_label(n):>16}" for n in names) + f"   {last}"
        w(head)
        w("-" * len(head))

    def row(label: str, values: list[str], target: str = "") -> None:
        w(f"{label[:W]:{W}}" + "".join(" " + v.rjust(15) for v in values) + (f"   {target}" if target else ""))

    w("")
    w(f"Trendreel engine benchmark  {info['date']}  {info['machine']}")
    w(f"DB {info['db']} | django-q2 {info['djq']} | Django {info['django']} | Python {info['python']}")
    w(
        f"cluster: {info['workers']} workers, broker poll {info['poll']} s, heartbeat {info['heartbeat']} s, CONN_MAX_AGE {info['conn_max_age']}{' (WHAT-IF settings: ' + info['settings'] + ')' if info['whatif'] else ''}"
    )
    w(
        f"{args.jobs} jobs x 8 stages (7 no-op worker stages + review, approved by the bench at once); {args.alone} jobs alone"
    )
    w("")
    if results:
        table_head("Throughput and latency", [r["broker"] for r in results], "target")
        vals = []
        for r in results:
            v = pct(r["alone"]["handoffs"], 0.5)
            ok = v <= TARGET_P50_MS[r["broker"]]
            checks.append((f"handoff p50 alone {r['broker']} {v:.1f} ms <= {TARGET_P50_MS[r['broker']]:g} ms", ok))
            vals.append(f"{v:.1f} {verdict(ok)}")
        row("handoff p50, one job alone (ms)", vals, "<= 30 ORM, <= 15 Redis")
        row("handoff p95, one job alone (ms)", [fmt(pct(r["alone"]["handoffs"], 0.95)) for r in results])
        row(
            f"handoff p50 / p95, {args.jobs} jobs at once (ms)",
            [f"{pct(r['load']['handoffs'], 0.5):.0f}/{pct(r['load']['handoffs'], 0.95):.0f}" for r in results],
        )
        vals = []
        for r in results:
            ok = r["load"]["tps"] >= TARGET_TPS
            checks.append((f"transitions/s {r['broker']} {r['load']['tps']:.1f} >= {TARGET_TPS:g}", ok))
            vals.append(f"{r['load']['tps']:.1f} {verdict(ok)}")
        row(f"stage transitions/s, {args.jobs} jobs at once", vals, f">= {TARGET_TPS:g}")
        row("  transitions / wall seconds", [f"{r['load']['transitions']}/{r['load']['wall']:.2f}" for r in results])
        row(
            "bare chain hop p50 / p95 alone (ms)",
            [
                f"{pct(r['chain_alone']['latency'], 0.5):.1f}/{pct(r['chain_alone']['latency'], 0.95):.1f}"
                for r in results
            ],
        )
        row(
            "orchestration overhead per handoff, p50 (ms)",
            [fmt(pct(r["alone"]["handoffs"], 0.5) - pct(r["chain_alone"]["latency"], 0.5)) for r in results],
        )
        row(f"bare chain hops/s, {args.jobs} chains x 8 at once", [f"{r['chain_load']['hps']:.1f}" for r in results])
        row(
            "bare chain CPU ms / hop (workers, q2 aux)",
            [
                f"{1000 * r['chain_load']['cpu']['workers'] / max(1, r['chain_load']['hops']):.2f}, {1000 * r['chain_load']['cpu']['pusher+monitor'] / max(1, r['chain_load']['hops']):.2f}"
                for r in results
            ],
        )
        row(
            "bare chain hop p50 / p95 under load (ms)",
            [
                f"{pct(r['chain_load']['latency'], 0.5):.0f}/{pct(r['chain_load']['latency'], 0.95):.0f}"
                for r in results
            ],
        )
        w("")
        table_head("Cost vs bare baseline (same DB, same count)", [r["broker"] for r in results], "target")
        row("bare txn INSERT+UPDATE, 1 client (ms)", [fmt(r["baseline"]["txn_ms"], ".2f") for r in results])
        row("  same, synchronous_commit=off (ms)", [fmt(r["baseline"]["txn_async_ms"], ".2f") for r in results])
        row("bare broker round trip, 1 client (ms)", [fmt(r["baseline"]["rt_ms"], ".2f") for r in results])
        row("bare txn + round trip, 1 client (ms)", [fmt(r["baseline"]["pair_ms_1"], ".2f") for r in results])
        row("bare txn + round trip, 2 clients (ms/pair)", [fmt(r["baseline"]["pair_ms_2"], ".2f") for r in results])
        row(
            "bare txn + round trip via the cluster (ms/hop)",
            [
                fmt(1000 / r["durable_chain_load"]["hps"], ".2f") if r["durable_chain_load"]["hps"] else "n/a"
                for r in results
            ],
        )
        row("orchestrated, 2 workers (ms/transition)", [fmt(1000 / r["load"]["tps"], ".2f") for r in results])
        vals = []
        for r in results:
            ratio = cost_ratio(r)
            ok = ratio <= TARGET_RATIO
            checks.append(
                (
                    f"cost ratio {r['broker']} {ratio:.2f}x <= {TARGET_RATIO:g}x (orchestrated / bare via the cluster,"
                    f" median of {len(r['rounds'])} rounds)",
                    ok,
                )
            )
            vals.append(f"{ratio:.2f}x {verdict(ok)}")
        row("ratio orchestrated / bare via the cluster", vals, f"<= {TARGET_RATIO:g}x")
        row(
            "  each round (the median above)",
            ["/".join(f"{x:.2f}" for x in r["rounds"]) for r in results],
        )
        row(
            "ratio orchestrated / bare client loop (2 cl.)",
            [f"{(1000 / r['load']['tps']) / r['baseline']['pair_ms_2']:.2f}x" for r in results],
        )
        row(
            "  bare via the cluster / bare client loop",
            [
                f"{(1000 / r['durable_chain_load']['hps']) / r['baseline']['pair_ms_2']:.2f}x"
                if r["durable_chain_load"]["hps"]
                else "n/a"
                for r in results
            ],
        )
        row(
            "  (orchestrated / 1-client bare loop)",
            [f"{(1000 / r['load']['tps']) / r['baseline']['pair_ms_1']:.2f}x" for r in results],
        )
        w("")
        table_head("Where the CPU goes, under load", [r["broker"] for r in results], "")
        for k in OURS:
            row(
                f"  CPU ms / transition: {k}",
                [fmt(1000 * r["load"]["cpu"].get(k, 0.0) / r["load"]["transitions"], ".2f") for r in results],
            )
        row(
            "  CPU ms / transition: total (ours)",
            [
                fmt(1000 * sum(r["load"]["cpu"].get(k, 0.0) for k in OURS) / r["load"]["transitions"], ".2f")
                for r in results
            ],
        )
        row(
            "  => ceiling on 2 cores (transitions/s)",
            [
                fmt(2000 / (1000 * sum(r["load"]["cpu"].get(k, 0.0) for k in OURS) / r["load"]["transitions"]), ".0f")
                for r in results
            ],
        )
        row("machine busy under load (%)", [fmt(r["load"]["cpu"]["_machine_busy_pct"], ".0f") for r in results])
        row(
            "other processes' CPU: alone / load (%)",
            [f"{r['alone']['cpu']['_foreign_pct']:.0f}/{r['load']['cpu']['_foreign_pct']:.0f}" for r in results],
        )
        row(
            "DB connections opened / transition (load)",
            [
                fmt(r["load"]["sessions"] / r["load"]["transitions"], ".2f")
                if r["load"]["sessions"] is not None
                else "n/a"
                for r in results
            ],
        )
        row("profile: execute_run ms / transition", [fmt(r["profile"]["ms_per_transition"], ".2f") for r in results])
        row("profile: SQL statements / transition", [fmt(r["profile"]["queries"], ".1f") for r in results])
        row("idle cluster: CPU (% of one core)", [fmt(r["idle"]["ours_pct"], ".0f") for r in results])
        row("idle cluster: DB connections opened / s", [fmt(r["idle"]["sessions_per_s"], ".0f") for r in results])
        for r in results:
            done = all(set(r[k]["statuses"]) == {"completed"} for k in ("alone", "load"))
            if not done:
                checks.append((f"all {r['broker']} benchmark jobs completed", False))
        for r in results:
            w("")
            pr = r["profile"]
            w(
                f"Where one transition's time goes ({r['broker']} broker): execute_run in the bench process, {pr['transitions']} transitions,"
            )
            w(
                f"  mean {pr['ms_per_transition']:.2f} ms wall (p50 {pr['p50_ms']:.2f}), {pr['cpu_ms']:.2f} ms CPU of this process; exclusive time per transition:"
            )
            w(f"  {'segment':56} {'mean ms':>8} {'p50 ms':>8} {'CPU ms':>8} {'calls':>6}")
            for label, mean, med, cpu, calls in pr["rows"]:
                w(f"  {label:56} {mean:8.2f} {med:8.2f} {cpu:8.2f} {calls:6.2f}")
            if pr["cprofile"]:
                w("")
                w("  " + pr["cprofile"].rstrip().replace("\n", "\n  "))
    if chaos:
        w("")
        table_head(
            f"Chaos: {args.jobs} jobs, 3 workers (2 default + render), 20% transient, kill every {args.kill_every:g} s",
            [c["broker"] for c in chaos],
            "must be",
        )
        row(
            "jobs finished (completed / failed)",
            [f"{c['finished']}/{c['jobs']} ({c['completed']}/{c['failed']})" for c in chaos],
        )
        row(f"still active at the {args.chaos_deadline:g} s deadline", [str(c["active_at_deadline"]) for c in chaos])
        row(
            "jobs stuck (active, no progress for 10 s)",
            [f"{len(c['stuck'])} {verdict(not c['stuck'])}" for c in chaos],
            "0",
        )
        row(
            "(job, stage) with >1 succeeded attempt", [f"{len(c['dups'])} {verdict(not c['dups'])}" for c in chaos], "0"
        )
        row(
            "completed jobs without 8 succeeded stages",
            [f"{len(c['incomplete'])} {verdict(not c['incomplete'])}" for c in chaos],
            "0",
        )
        row(
            "compositions ran on the render worker only",
            [verdict(c["render_only"]) for c in chaos],
            "PASS",
        )
        row("workers SIGKILLed (ticks with none running)", [f"{len(c['kills'])} ({c['kill_skipped']})" for c in chaos])
        row("crashes detected by the sweeper", [str(c["crashed"]) for c in chaos])
        row(
            "  killed attempts that ended crashed/other",
            [
                f"{c['kill_outcomes'].get('crashed', 0)}/"
                + (",".join(f"{k}:{v}" for k, v in sorted(c["kill_outcomes"].items()) if k != "crashed") or "0")
                for c in chaos
            ],
        )
        row("transient failures (retried)", [str(c["transient"]) for c in chaos])
        row("stage attempts (7 x jobs without faults)", [f"{c['attempts'] - c['jobs']}/{7 * c['jobs']}" for c in chaos])
        row("wall (s)", [fmt(c["wall"]) for c in chaos])
        row("other processes' CPU meanwhile (%)", [fmt(c["cpu"]["_foreign_pct"], ".0f") for c in chaos])
        for c in chaos:
            checks.append(
                (
                    f"chaos {c['broker']}: no stuck job, no stage succeeded twice, renders on the render worker",
                    not (c["stuck"] or c["dups"] or c["incomplete"]) and c["render_only"],
                )
            )
            for pk, stage, msg in c["failed_why"]:
                w(f"  {c['broker']}: job {pk} failed at {stage}: {msg[:100]}")
            if c["diagnosis"]:
                w(f"  {c['broker']}: {c['diagnosis']}")
    if idle_kills:
        w("")
        w("Idle-worker kill probe (not an issue target, does not change the exit status):")
        for k in idle_kills:
            if k["victim"] is None:
                w(f"  {k['broker']}: no idle worker blocked in the task-queue read was found; nothing killed")
            else:
                w(
                    f"  {k['broker']}: killed idle worker {k['victim']} (blocked reading the task queue); then 5 new jobs: "
                    f"{k['finished']}/5 finished in {k.get('seconds', 0):.1f} s (worker restarts a stalled cluster), statuses {k['statuses']}"
                    + ("  RISK: cluster wedged" if k["finished"] < 5 else "  ok")
                )
    w("")
    w("Targets and invariants:")
    for name, ok in checks:
        w(f"  {verdict(ok)}  {name}")
    return lines, checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--jobs", type=int, default=None, help="jobs started at once (load and chaos; default 50, 20 with --quick)"
    )
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--quick", action="store_true", help="fewer jobs, shorter chaos (ORM only)")
    ap.add_argument("--alone", type=int, default=None, help="jobs run alone, one after the other (default 10)")
    ap.add_argument("--brokers", default="orm,redis")
    ap.add_argument("--chaos-brokers", default=None, help="default: orm,redis (orm with --quick); 'none' to skip")
    ap.add_argument("--chaos-deadline", type=float, default=None, help="seconds (default 120, 60 with --quick)")
    ap.add_argument("--kill-every", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument(
        "--kill-target",
        choices=["running", "any"],
        default="running",
        help="chaos: kill a worker inside a stage (default) or any worker, idle ones included",
    )
    ap.add_argument("--max-seconds", type=int, default=600, help="hard stop for the whole bench")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (worker logs)")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help="wait up to this many seconds for the machine to be < 25%% busy before each broker (0: don't)",
    )
    ap.add_argument("--workers", type=int, default=2, help="TRENDREEL_WORKERS (the issue's figures are for 2)")
    ap.add_argument(
        "--no-idle-kill-probe",
        dest="idle_kill_probe",
        action="store_false",
        help="skip the probe that SIGKILLs the idle worker blocked reading the cluster's task queue",
    )
    ap.add_argument(
        "--poll",
        type=float,
        default=None,
        help="TRENDREEL_BROKER_POLL for the workers (default: the settings' default)",
    )
    ap.add_argument(
        "--whatif",
        action="store_true",
        help="run with bench/settings_whatif.py (persistent DB connections): an experiment, not the shipped settings",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="load/bare-chain pairs for the cost ratio, median reported (default 5, 1 with --quick)",
    )
    ap.add_argument("--cprofile", type=int, default=0, help="also cProfile execute_run over this many jobs (hot spots)")
    ap.add_argument("--conn-max-age", type=float, default=300.0, help="CONN_MAX_AGE for --whatif")
    args = ap.parse_args()
    args.jobs = args.jobs or (20 if args.quick else 50)
    args.alone = args.alone or (4 if args.quick else 10)
    args.rounds = max(1, args.rounds or (1 if args.quick else 5))
    args.chain_hops = 20 if args.quick else 60
    args.profile_jobs = 4 if args.quick else 10
    args.chaos_deadline = args.chaos_deadline or (60.0 if args.quick else 120.0)
    chaos_brokers = args.chaos_brokers or ("orm" if args.quick else "orm,redis")
    chaos_brokers = [] if chaos_brokers == "none" else chaos_brokers.split(",")
    brokers = [b for b in args.brokers.split(",") if b]

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (background)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(args.max_seconds)
    atexit.register(cleanup)

    tmp = Path(tempfile.mkdtemp(prefix="trendreel-engine-bench-"))
    (tmp / "var").mkdir()
    (tmp / "media").mkdir()
    if not args.keep:
        CLEANUPS.insert(0, lambda: shutil.rmtree(tmp, ignore_errors=True))
    t_start = time.monotonic()
    try:
        db_url = prepare_database(args.db, tmp)
        common = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TRENDREEL_", "DATABASE_URL", "REDIS_URL", "MEDIA_ROOT", "Q_CLUSTER", "PYTEST"))
        }
        common.setdefault("SECRET_KEY", "bench-insecure-trendreel-not-for-production")  # settings refuse none
        common.update(
            DJANGO_SETTINGS_MODULE="console.settings",
            DATABASE_URL=db_url,
            TRENDREEL_VAR_DIR=str(tmp / "var"),
            MEDIA_ROOT=str(tmp / "media"),
            TRENDREEL_WORKERS=str(args.workers),
            PYTHONUNBUFFERED="1",
            TRENDREEL_STAGE_FUNCTIONS=json.dumps(NOOP_FUNCTIONS),
            TRENDREEL_STAGE_POLICY=json.dumps(LOAD_POLICY),
            TRENDREEL_QUEUE_NAME=f"trendreel-bench-{RUN_ID}",
        )
        if args.poll is not None:
            common["TRENDREEL_BROKER_POLL"] = str(args.poll)
        if args.whatif:
            common.update(DJANGO_SETTINGS_MODULE="bench.settings_whatif", BENCH_CONN_MAX_AGE=str(args.conn_max_age))
        say(f"database {db_url}: migrating")
        mig = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=common,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if mig.returncode:
            raise RuntimeError(f"migrate failed:\n{mig.stdout}\n{mig.stderr}")
        os.environ.clear()
        os.environ.update(common)
        import django

        django.setup()
        import django_q
        from django.conf import settings
        from django.db import connection

        from jobs.models import Theme
        from stages import pipeline

        assert pipeline.STAGE_KEYS == STAGE_KEYS, f"pipeline changed: {pipeline.STAGE_KEYS}"
        assert settings.DATABASES["default"]["NAME"] in (PG_BENCH_DB, str(tmp / "var" / "bench.sqlite3")), (
            "not the bench database"
        )
        theme = Theme.objects.create(
            name="Bench", slug=f"bench-{RUN_ID}", keywords=["bench"], sources=[{"name": "x", "path": "x"}]
        )
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                cur.execute("SELECT version()")
                dbv = "PostgreSQL " + cur.fetchone()[0].split()[1]
            else:
                cur.execute("SELECT sqlite_version()")
                dbv = "SQLite " + cur.fetchone()[0]
        cpu_model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        )
        info = {
            "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": f"{os.cpu_count()} cores ({cpu_model}), {platform.system()} {platform.release()}",
            "db": dbv + (" (local, same 2 cores)" if args.db == "postgres" else " (WAL file)"),
            "djq": django_q.VERSION if hasattr(django_q, "VERSION") else "1.11",
            "django": django.get_version(),
            "python": platform.python_version(),
            "poll": settings.Q_CLUSTER["poll"],
            "heartbeat": settings.TRENDREEL_HEARTBEAT_SECONDS,
            "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE", 0),
            "whatif": args.whatif,
            "settings": common["DJANGO_SETTINGS_MODULE"],
            "workers": settings.TRENDREEL_WORKERS,
        }
        if isinstance(info["djq"], tuple):
            info["djq"] = ".".join(map(str, info["djq"]))
        results = [run_broker(args, b, common, theme, tmp) for b in brokers]
        chaos = [run_chaos(args, b, common, theme, tmp) for b in chaos_brokers]
        idle_kills = (
            [run_idle_kill(args, b, common, theme, tmp) for b in (chaos_brokers or brokers)]
            if args.idle_kill_probe
            else []
        )
        lines, _ = report(args, info, results, chaos, idle_kills)
        print("\n".join(lines), flush=True)
        say(f"bench took {time.monotonic() - t_start:.0f} s")
        failed = [c for c in chaos if c["stuck"] or c["dups"] or c["incomplete"] or not c["render_only"]]
        if failed:
            print(f"CHAOS INVARIANT FAILED for: {', '.join(c['broker'] for c in failed)}", flush=True)
            return 1
        return 0
    except BaseException:
        for cluster in CLUSTERS:
            print(f"--- tail of {cluster.log} ---\n{cluster.tail(2000)}", file=sys.stderr)
        raise
    finally:
        signal.alarm(0)
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
