"""The hot path's statements: claim + load, the success record, the next attempt.

Claim -> run -> record + next attempt + enqueue is paid on every stage of every job. Through the
ORM, compiling those statements cost the worker more CPU than the database spent running them
(bench/RESULTS.md), so they are built once per database vendor from the models' metadata (column
names, defaults and value adaptation stay the models') and run with bound parameters. They hold no
status of their own: the transition table (``transitions``) hands in every status they write.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.transaction import TransactionManagementError

from jobs.models import Job, ReviewDecision, StageRun, Theme

log = logging.getLogger("trendreel.orchestrator")


@dataclass
class Approval:
    """What the review gate needs to know about a job's current reviewed checkpoint (one query)."""

    attempt: int | None  # the checkpoint's attempt; None: the job has no current one
    decision: str | None  # the latest decision on it; None: nobody decided
    after_checkpoint: bool  # the decision was made after the checkpoint finished
    reviewer_may: bool  # its maker is active and may review (superuser, or the permission directly or by group)


@dataclass
class Claim:
    run: StageRun  # job_id, stage, attempt, retry_index, input, started_at (not its status)
    job_status: str
    params: dict
    review_notes: list
    theme: Theme
    checkpoints: dict[str, tuple[Any, str]]  # stage -> (output, output_dir) of its current checkpoint
    overrides: dict = field(default_factory=dict)  # the job's targeted edits, merged (ctx.overrides)
    skip_stages: list = field(default_factory=list)  # stages the job's current re-run leaves alone
    # the run's own stage's latest succeeded attempt (superseded or not): (output, output_dir), or None
    base: tuple[Any, str] | None = None


class Statements:
    RUN_FIELDS = ("job_id", "stage", "attempt", "retry_index", "input")
    JOB_FIELDS = ("status", "params", "review_notes", "overrides", "skip_stages")
    THEME_FIELDS = ("id", "name", "slug", "keywords", "sources", "target_seconds", "voice", "settings")

    def __init__(self, conn) -> None:
        q = conn.ops.quote_name
        self.q = q
        run_t, job_t, theme_t = (q(m._meta.db_table) for m in (StageRun, Job, Theme))
        col = lambda model, name: q(model._meta.get_field(name).column)  # noqa: E731
        self.json_fields = [
            StageRun._meta.get_field("input"),
            *(Job._meta.get_field(f) for f in self.JOB_FIELDS[1:]),
            *(Theme._meta.get_field(f) for f in ("keywords", "sources", "settings")),
        ]
        run_cols = ", ".join(col(StageRun, f) for f in self.RUN_FIELDS)
        select = ", ".join(
            [
                *(f"r.{col(StageRun, f)}" for f in self.RUN_FIELDS),
                *(f"j.{col(Job, f)}" for f in self.JOB_FIELDS),
                *(f"t.{col(Theme, f)}" for f in self.THEME_FIELDS),
            ]
        )
        joins = f"JOIN {job_t} j ON j.{col(Job, 'id')} = r.{col(StageRun, 'job_id')} JOIN {theme_t} t ON t.{col(Theme, 'id')} = j.{col(Job, 'theme_id')}"
        # the job's current checkpoints, as one JSON array of [stage, attempt, output, output_dir]
        c_stage, c_attempt, c_output, c_dir = (
            f"c.{col(StageRun, f)}" for f in ("stage", "attempt", "output", "output_dir")
        )
        where = (
            f"c.{col(StageRun, 'job_id')} = r.{col(StageRun, 'job_id')} AND c.{col(StageRun, 'status')} = %s "
            f"AND c.{col(StageRun, 'superseded_at')} IS NULL"
        )
        if conn.vendor == "postgresql":
            checkpoints = f"(SELECT json_agg(json_build_array({c_stage}, {c_attempt}, {c_output}, {c_dir})) FROM {run_t} c WHERE {where})"
        else:
            checkpoints = f"(SELECT json_group_array(json_array({c_stage}, {c_attempt}, json({c_output}), {c_dir})) FROM {run_t} c WHERE {where})"
        # the stage's own latest succeeded attempt, superseded or not: what a re-run may reuse
        same = (
            f"c.{col(StageRun, 'job_id')} = r.{col(StageRun, 'job_id')} AND c.{col(StageRun, 'stage')} = r.{col(StageRun, 'stage')} "
            f"AND c.{col(StageRun, 'status')} = %s ORDER BY {c_attempt} DESC LIMIT 1"
        )
        if conn.vendor == "postgresql":
            base = f"(SELECT json_build_array({c_output}, {c_dir}) FROM {run_t} c WHERE {same})"
        else:
            base = f"(SELECT json_array(json({c_output}), {c_dir}) FROM {run_t} c WHERE {same})"
        select += ", " + checkpoints + ", " + base
        nb = col(StageRun, "not_before")
        update = (
            f"UPDATE {run_t} SET {col(StageRun, 'status')} = %s, {col(StageRun, 'started_at')} = %s, "
            f"{col(StageRun, 'heartbeat_at')} = %s, {col(StageRun, 'worker')} = %s, {col(StageRun, 'message')} = %s "
            f"WHERE {col(StageRun, 'id')} = %s AND {col(StageRun, 'status')} = %s AND ({nb} IS NULL OR {nb} <= %s)"
        )
        if conn.vendor == "postgresql":  # one round trip: the claim and everything the stage needs
            self.claim_sql = [f"WITH r AS ({update} RETURNING {run_cols}) SELECT {select} FROM r {joins}"]
        else:  # SQLite has no UPDATE inside WITH
            self.claim_sql = [update, f"SELECT {select} FROM {run_t} r {joins} WHERE r.{col(StageRun, 'id')} = %s"]
        self.run_fields = written_fields(StageRun)
        self.constant_defaults: dict[str, Any] = {}  # attname -> a constant default, adapted once
        next_attempt = (
            f"(SELECT COALESCE(MAX({col(StageRun, 'attempt')}), 0) + 1 FROM {run_t} "
            f"WHERE {col(StageRun, 'job_id')} = %s AND {col(StageRun, 'stage')} = %s)"
        )
        # "INSERT INTO runs (columns) {VALUES (values) | SELECT values WHERE ...} RETURNING id, attempt"
        self.insert_parts = (
            f"INSERT INTO {run_t} ({', '.join(q(f.column) for f in self.run_fields)})",
            ", ".join(next_attempt if f.name == "attempt" else "%s" for f in self.run_fields),
            f"RETURNING {col(StageRun, 'id')}, {col(StageRun, 'attempt')}",
        )
        into, values, returning = self.insert_parts
        self.insert_sql = f"{into} VALUES ({values}) {returning}"
        self.updates: dict[tuple, str] = {}
        self.inserts: dict[type, tuple[str, list]] = {}
        # a job's row, locked for the rest of the transaction (every operator move, every review)
        job_fields = Job._meta.concrete_fields
        lock = " FOR UPDATE" if conn.features.has_select_for_update else ""  # SQLite: the write lock
        self.lock_job_sql = (
            f"SELECT {', '.join(q(f.column) for f in job_fields)} FROM {job_t} WHERE {col(Job, 'id')} = %s{lock}"
        )
        self.job_converters: list | None = None  # per field, as Django's compiler would convert it
        self.approval_sql = self._approval_sql(col)
        # a review's two rows: the gate's waiting run and the checkpoint the decision binds to
        waiting = (
            f"SELECT {col(StageRun, 'id')} FROM {run_t} WHERE {col(StageRun, 'job_id')} = %s "
            f"AND {col(StageRun, 'stage')} = %s AND {col(StageRun, 'status')} = %s "
            f"ORDER BY {col(StageRun, 'attempt')} DESC LIMIT 1"
        )
        checkpoint = self._checkpoint_sql(col, col(StageRun, "id"))
        self.review_rows_sql = f"SELECT ({waiting}), ({checkpoint})"

    def _checkpoint_sql(self, col, columns: str) -> str:
        """The current checkpoint of a job's stage (params: job, stage, succeeded status): its
        latest attempt in that status that no re-run superseded."""
        return (
            f"SELECT {columns} FROM {self.q(StageRun._meta.db_table)} WHERE {col(StageRun, 'job_id')} = %s "
            f"AND {col(StageRun, 'stage')} = %s AND {col(StageRun, 'status')} = %s "
            f"AND {col(StageRun, 'superseded_at')} IS NULL ORDER BY {col(StageRun, 'attempt')} DESC LIMIT 1"
        )

    def _approval_sql(self, col) -> str:
        """The gate's question in one statement: the current checkpoint of the reviewed stage, the
        latest decision on it and whether its maker may review. Through the ORM the same answer
        took ~4 ms of CPU per publish claim (query compilation), ``user.has_perm`` ~8 ms more
        (it loads every permission the user holds)."""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group, Permission
        from django.contrib.contenttypes.models import ContentType

        q = self.q
        table = lambda model: q(model._meta.db_table)  # noqa: E731
        user = get_user_model()
        user_perms = user._meta.get_field("user_permissions").remote_field.through
        user_groups = user._meta.get_field("groups").remote_field.through
        group_perms = Group._meta.get_field("permissions").remote_field.through
        rd = lambda f: f"d.{col(ReviewDecision, f)}"  # noqa: E731
        perm = (
            f"SELECT p.{col(Permission, 'id')} FROM {table(Permission)} p JOIN {table(ContentType)} ct "
            f"ON ct.{col(ContentType, 'id')} = p.{col(Permission, 'content_type')} "
            f"WHERE p.{col(Permission, 'codename')} = %s AND ct.{col(ContentType, 'app_label')} = %s"
        )
        held = (
            f"EXISTS (SELECT 1 FROM {table(user_perms)} up WHERE up.{q(user_perms._meta.get_field('user').column)} "
            f"= u.{col(user, 'id')} AND up.{q(user_perms._meta.get_field('permission').column)} IN ({perm})) "
            f"OR EXISTS (SELECT 1 FROM {table(user_groups)} ug JOIN {table(group_perms)} gp "
            f"ON gp.{q(group_perms._meta.get_field('group').column)} = ug.{q(user_groups._meta.get_field('group').column)} "
            f"WHERE ug.{q(user_groups._meta.get_field('user').column)} = u.{col(user, 'id')} "
            f"AND gp.{q(group_perms._meta.get_field('permission').column)} IN ({perm}))"
        )
        latest = (
            f"SELECT d2.{col(ReviewDecision, 'id')} FROM {table(ReviewDecision)} d2 "
            f"WHERE d2.{col(ReviewDecision, 'composition_run')} = c.{col(StageRun, 'id')} "
            f"ORDER BY d2.{col(ReviewDecision, 'decided_at')} DESC, d2.{col(ReviewDecision, 'id')} DESC LIMIT 1"
        )
        checkpoint = self._checkpoint_sql(
            col, f"{col(StageRun, 'id')}, {col(StageRun, 'attempt')}, {col(StageRun, 'finished_at')}"
        )
        return (
            f"SELECT c.{col(StageRun, 'attempt')}, {rd('decision')}, "
            f"CASE WHEN c.{col(StageRun, 'finished_at')} IS NULL OR {rd('decided_at')} >= c.{col(StageRun, 'finished_at')} "
            f"THEN 1 ELSE 0 END, "
            f"CASE WHEN u.{col(user, 'is_active')} AND (u.{col(user, 'is_superuser')} OR {held}) THEN 1 ELSE 0 END "
            f"FROM ({checkpoint}) c "
            f"LEFT JOIN {table(ReviewDecision)} d ON {rd('id')} = ({latest}) "
            f"LEFT JOIN {table(user)} u ON u.{col(user, 'id')} = {rd('decided_by')}"
        )

    def approval(self, job_id: int, *, stage: str, status: str, permission: str) -> Approval:
        """The review gate's facts for ``job_id``: ``stage`` is the reviewed stage, ``status`` a
        checkpoint's status, ``permission`` the reviewer's (``app_label.codename``)."""
        app_label, codename = permission.split(".")
        with self.cursor() as cur:
            self.execute(cur, self.approval_sql, [codename, app_label, codename, app_label, job_id, stage, status])
            row = cur.fetchone()
        if row is None:
            return Approval(None, None, False, False)
        attempt, decision, after, may = row
        return Approval(attempt, decision, bool(after), bool(may))

    def review_rows(self, job_id: int, *, gate: str, waiting: str, reviewed: str, checkpoint: str) -> tuple:
        """``(waiting run id, checkpoint id)`` of a job in review, each None when missing: the
        ``gate`` stage's latest run in status ``waiting`` and the ``reviewed`` stage's current
        checkpoint (status ``checkpoint``), in one prepared statement (through the ORM, two
        compiled queries were most of an approval's CPU)."""
        with self.cursor() as cur:
            self.execute(cur, self.review_rows_sql, [job_id, gate, waiting, job_id, reviewed, checkpoint])
            return tuple(cur.fetchone())

    @property
    def conn(self):
        """This thread's connection itself (bound once per call: through ``django.db.connection``,
        a proxy, every attribute the fields' value adaptation reads was a thread-local lookup)."""
        return connections[DEFAULT_DB_ALIAS]

    def cursor(self):
        """A cursor for the hot path's statements (use it as ``with sql().cursor() as cur``).

        On PostgreSQL (unless ``DB_PREPARED`` is off) a server-binding cursor whose statements are
        prepared once per session: each statement is planned once, not on every stage of every
        job (PostgreSQL CPU per transition 1.97 -> 1.16 ms, bench/RESULTS.md). Django's own cursors
        bind on the client and are never prepared, so nothing else changes. It is wrapped like
        any Django cursor (execute wrappers, error translation) and kept for the session's next
        statements (one cursor per connection, as connections are per thread: building and
        wrapping a cursor per statement was a tenth of a transition's CPU). While queries are
        logged (DEBUG, ``CaptureQueriesContext``) the plain cursor runs them: Django cannot show
        the text of a prepared statement's execution, and a query log with holes would mislead.
        """
        conn = self.conn
        if conn.vendor != "postgresql" or not settings.DB_PREPARED or conn.queries_logged:
            return conn.cursor()
        conn.close_if_health_check_failed()
        conn.ensure_connection()
        raw = conn.connection
        kept = conn.__dict__.get(_KEPT)
        if kept is None or kept[0] is not raw or kept[1].cursor.closed:
            if raw.prepare_threshold is None:  # Django turns psycopg's preparing off for the session
                raw.prepare_threshold = 1 << 30  # so only what asks (prepare=True) is prepared
            kept = conn.__dict__[_KEPT] = (raw, _Lent(conn._prepare_cursor(_prepared_cursor_class()(raw))))
        return kept[1]

    def execute(self, cur, sql: str, params: list[Any]) -> None:
        """``cur.execute``, once more after a prepared statement went stale outside a transaction.

        A statement this session prepared can vanish (``DISCARD ALL``, ``DEALLOCATE`` by a pooler)
        or no longer fit its table (a migration changed a column's type). Outside a transaction
        (the claim) the session's statements are dropped and the statement prepared again; inside
        one the error stands: the rollback drops them, and the attempt's retry prepares afresh.
        """
        try:
            cur.execute(sql, params)
        except DatabaseError as exc:
            cause = getattr(exc, "__cause__", None)
            if getattr(cause, "sqlstate", None) not in _STALE_PREPARED or not self.conn.get_autocommit():
                raise
            log.warning("prepared statements went stale (%s): preparing them again", cause.sqlstate)
            with self.conn.cursor() as plain:
                plain.execute("DEALLOCATE ALL")  # psycopg forgets its own names on seeing this
            cur.execute(sql, params)

    def _json(self, field, value, conn):
        return field.from_db_value(value, None, conn)

    def claim(
        self, run_id: int, now: datetime, worker: str, *, source: str, target: str, checkpoint: str
    ) -> Claim | None:
        """``source -> target`` if due, committed at once, with what the stage needs (the job's
        runs in status ``checkpoint`` are its checkpoints); None if another delivery (or nobody,
        for a run not due or not in ``source``) has it. Statuses come from the transition table."""
        conn = self.conn
        at = conn.ops.adapt_datetimefield_value(now)
        params = [target, at, at, worker, "started", run_id, source, at]
        with self.cursor() as cur:
            if len(self.claim_sql) == 1:
                self.execute(cur, self.claim_sql[0], params + [checkpoint, checkpoint])
            else:
                self.execute(cur, self.claim_sql[0], params)
                if not cur.rowcount:
                    return None
                cur.execute(self.claim_sql[1], [checkpoint, checkpoint, run_id])
            row = cur.fetchone()
        if row is None:
            return None
        job_id, stage, attempt, retry_index, input_, job_status, params_, notes, overrides, skip, *theme = row
        *theme, checkpoints, base = theme
        input_f, params_f, notes_f, overrides_f, skip_f, *theme_json = self.json_fields
        theme_values = dict(zip(self.THEME_FIELDS, theme, strict=False))
        for f in theme_json:
            theme_values[f.name] = self._json(f, theme_values[f.name], conn)
        if isinstance(checkpoints, str):
            checkpoints = json.loads(checkpoints)
        if isinstance(base, str):
            base = json.loads(base)
        latest: dict[str, tuple[int, Any, str]] = {}
        for cp_stage, cp_attempt, output, folder in checkpoints or []:
            if cp_stage not in latest or cp_attempt > latest[cp_stage][0]:
                latest[cp_stage] = (cp_attempt, output, folder)
        return Claim(
            run=instance(
                StageRun,
                {
                    "id": run_id,
                    "job_id": job_id,
                    "stage": stage,
                    "attempt": attempt,
                    "retry_index": retry_index,
                    "input": self._json(input_f, input_, conn) or {},
                    "started_at": now,
                },
            ),
            job_status=job_status,
            params=self._json(params_f, params_, conn) or {},
            review_notes=self._json(notes_f, notes, conn) or [],
            theme=instance(Theme, theme_values),
            checkpoints={k: (output, folder) for k, (_, output, folder) in latest.items()},
            overrides=self._json(overrides_f, overrides, conn) or {},
            skip_stages=self._json(skip_f, skip, conn) or [],
            base=(base[0], base[1]) if base else None,
        )

    def _run_params(self, values: dict[str, Any], conn) -> list[Any]:
        """The insert's parameters for a new run (``values`` gains the defaults it lacked)."""
        params: list[Any] = []
        for f in self.run_fields:
            name = f.attname
            if name == "attempt":
                params += [values["job_id"], values["stage"]]
            elif name in values:
                params.append(f.get_db_prep_save(values[name], conn))
            else:
                value = values[name] = f.get_default()
                if callable(f.default):  # a fresh value each time (dict, list, now)
                    params.append(f.get_db_prep_save(value, conn))
                else:
                    adapted = self.constant_defaults.get(name, _MISSING)
                    if adapted is _MISSING:
                        adapted = self.constant_defaults[name] = f.get_db_prep_save(value, conn)
                    params.append(adapted)
        return params

    def insert_run(self, **values: Any) -> StageRun:
        """A new StageRun row; its attempt is the next free number of (job, stage)."""
        params = self._run_params(values, self.conn)
        with self.cursor() as cur:
            self.execute(cur, self.insert_sql, params)
            values["id"], values["attempt"] = cur.fetchone()
        return instance(StageRun, values)

    @property
    def records_in_one(self) -> bool:
        """The success record is one statement (PostgreSQL: UPDATE and INSERT inside WITH)."""
        return self.conn.vendor == "postgresql"

    def record(
        self,
        *,
        job_id: int,
        job_values: dict[str, Any],
        job_sources: tuple[str, ...],
        run_id: int,
        run_values: dict[str, Any],
        run_sources: tuple[str, ...],
        new_run: dict[str, Any] | None,
    ) -> tuple[bool, bool, StageRun | None]:
        """A success's three writes in one statement (``records_in_one``), each only if the one
        before it happened: move the job (``job_values``, if its status is one of ``job_sources``;
        this also locks its row, first, as every writer does), record the run (``run_values``, if
        its status is one of ``run_sources``), insert ``new_run`` (the next attempt, its number
        the next free one). Returns (job moved, run recorded, the new run or None).

        Three statements became one: two round trips and two statements' work in PostgreSQL
        less on every stage of every job (bench/RESULTS.md). The values are plain field values.
        """
        conn = self.conn
        key = ("record", tuple(job_values), len(job_sources), tuple(run_values), len(run_sources), new_run is not None)
        sql = self.updates.get(key)
        if sql is None:
            sql = self.updates[key] = self._record_sql(job_values, job_sources, run_values, run_sources, new_run)
        params: list[Any] = self._set_params(Job, job_values, conn) + [job_id, *job_sources]
        params += self._set_params(StageRun, run_values, conn) + [run_id, *run_sources]
        if new_run is not None:
            new_run = dict(new_run)
            params += self._run_params(new_run, conn)
        with self.cursor() as cur:
            self.execute(cur, sql, params)
            moved, recorded, *created = cur.fetchone()
        made = None
        if new_run is not None and created[0] is not None:
            new_run["id"], new_run["attempt"] = created
            made = instance(StageRun, new_run)
        return bool(moved), bool(recorded), made

    def _record_sql(self, job_values, job_sources, run_values, run_sources, new_run) -> str:
        shape = lambda sources: (("status__in", len(sources)),)  # noqa: E731
        its_id = lambda model: f" RETURNING {self.q(model._meta.pk.column)}"  # noqa: E731
        j = self._update_sql(Job, job_values, shape(job_sources), its_id(Job))
        r = self._update_sql(
            StageRun, run_values, shape(run_sources), " AND EXISTS (SELECT 1 FROM j)" + its_id(StageRun)
        )
        # "r" reads "j" and "n" reads "r": each runs after (and only if) the one before it wrote
        sql = f"WITH j AS ({j}), r AS ({r})"
        if new_run is None:
            return sql + " SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM r)"
        into, values, returning = self.insert_parts
        sql += f", n AS ({into} SELECT {values} WHERE EXISTS (SELECT 1 FROM r) {returning})"
        return (
            sql
            + " SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM r), n.* FROM (SELECT 1) one LEFT JOIN n ON true"
        )

    def lock_job(self, job_id: int) -> Job | None:
        """The job's row as a ``Job``, locked until the transaction ends; None if there is none."""
        conn = self.conn
        if conn.get_autocommit():  # as Django's select_for_update: a lock that ends at once is a bug
            raise TransactionManagementError("locking a job's row needs a transaction")
        with self.cursor() as cur:
            self.execute(cur, self.lock_job_sql, [job_id])
            row = cur.fetchone()
        if row is None:
            return None
        fields = Job._meta.concrete_fields
        if self.job_converters is None:
            cols = [f.get_col(Job._meta.db_table) for f in fields]
            self.job_converters = [(c, conn.ops.get_db_converters(c) + c.get_db_converters(conn)) for c in cols]
        values = []
        for value, (c, converters) in zip(row, self.job_converters, strict=True):
            for convert in converters:
                value = convert(value, c, conn)
            values.append(value)
        return Job.from_db(conn.alias, [f.attname for f in fields], values)

    def insert(self, model, values: dict[str, Any]):
        """``model.objects.create(**values)`` as one prepared statement (no signals are sent)."""
        conn = self.conn
        built = self.inserts.get(model)
        if built is None:
            fields, q = written_fields(model), self.q
            sql = (
                f"INSERT INTO {q(model._meta.db_table)} ({', '.join(q(f.column) for f in fields)}) "
                f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {q(model._meta.pk.column)}"
            )
            built = self.inserts[model] = (sql, fields)
        sql, fields = built
        values = dict(values)
        params = []
        for f in fields:
            if f.attname not in values:
                values[f.attname] = f.get_default()
            params.append(f.get_db_prep_save(values[f.attname], conn))
        with self.cursor() as cur:
            self.execute(cur, sql, params)
            values[model._meta.pk.attname] = cur.fetchone()[0]
        return instance(model, values)

    def _set_params(self, model, values: dict[str, Any], conn) -> list[Any]:
        get = model._meta.get_field
        return [get(f).get_db_prep_save(v, conn) for f, v in values.items()]

    def _update_sql(self, model, fields, shape: tuple, tail: str = "") -> str:
        """``UPDATE model SET fields WHERE pk = %s AND ...`` for a ``where`` of ``shape``
        (``(lookup, n)``: ``f`` = one value, ``f__in`` = n values), then ``tail``."""
        meta, q = model._meta, self.q
        conds = [f"{q(meta.pk.column)} = %s"]
        for k, n in shape:
            name, _, op = k.partition("__")
            column = q(meta.get_field(name).column)
            conds.append(f"{column} IN ({', '.join(['%s'] * n)})" if op == "in" else f"{column} = %s")
        sets = ", ".join(f"{q(meta.get_field(f).column)} = %s" for f in fields)
        return f"UPDATE {q(meta.db_table)} SET {sets} WHERE {' AND '.join(conds)}{tail}"

    def update(self, model, pk: int, values: dict[str, Any], **where: Any) -> int:
        """``UPDATE model SET values WHERE pk AND where`` (``f=v`` or ``f__in=(...)``): rows changed."""
        shape = tuple((k, len(v) if k.endswith("__in") else 0) for k, v in where.items())
        key = (model, tuple(values), shape)
        sql = self.updates.get(key)
        if sql is None:
            sql = self.updates[key] = self._update_sql(model, values, shape)
        meta, conn = model._meta, self.conn
        params = self._set_params(model, values, conn)
        params.append(pk)
        for k, v in where.items():
            f = meta.get_field(k.partition("__")[0])
            params += [f.get_db_prep_value(x, conn) for x in (v if k.endswith("__in") else [v])]
        with self.cursor() as cur:
            self.execute(cur, sql, params)
            return cur.rowcount


_MISSING = object()


def written_fields(model) -> list:
    """The columns an INSERT writes: every one but the key and those the database fills (db_default)."""
    return [f for f in model._meta.concrete_fields if not f.primary_key and not f.has_db_default()]


def instance(model, values: dict[str, Any]):
    """``model(**values)`` (the rest at their defaults), built through the positional path of
    ``Model.__init__``: a third of the cost of keyword arguments, and built on every stage."""
    return model(*[values[f.attname] if f.attname in values else f.get_default() for f in model._meta.concrete_fields])


_KEPT = "_trendreel_hot_cursor"  # on the connection wrapper: (its raw connection, the kept cursor)


class _Lent:
    """The kept cursor, lent for a ``with`` block that must not close it."""

    __slots__ = ("wrapped",)

    def __init__(self, wrapped) -> None:
        self.wrapped = wrapped

    @property
    def cursor(self):  # the psycopg cursor underneath, as on Django's wrapper
        return self.wrapped.cursor

    def __enter__(self):
        return self.wrapped

    def __exit__(self, *exc) -> None:
        return None


# 26000 invalid_sql_statement_name: the prepared statement is gone; 0A000 feature_not_supported:
# "cached plan must not change result type" after its table changed
_STALE_PREPARED = {"26000", "0A000"}
_PREPARED_CURSOR = None


def _prepared_cursor_class():
    """Django's server-binding cursor (psycopg 3) preparing every statement it executes."""
    global _PREPARED_CURSOR
    if _PREPARED_CURSOR is None:
        from django.db.backends.postgresql.base import ServerBindingCursor

        class PreparedCursor(ServerBindingCursor):
            def execute(self, query, params=None, *, prepare=None, binary=None):
                return super().execute(query, params, prepare=True, binary=binary)

        _PREPARED_CURSOR = PreparedCursor
    return _PREPARED_CURSOR


_statements: dict[str, Statements] = {}


def sql() -> Statements:
    """The hot path's statements for the default database (built on first use)."""
    vendor = connection.vendor
    built = _statements.get(vendor)
    if built is None:
        built = _statements[vendor] = Statements(connection)
    return built
