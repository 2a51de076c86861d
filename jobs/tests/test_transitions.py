"""The table of legal status changes, and the structure that makes it the only way to change one."""

from __future__ import annotations

import ast

import pytest

from jobs import orchestrator
from jobs.models import Job, StageRun
from jobs.orchestrator import transitions
from jobs.tests.conftest import ROOT, params

pytestmark = pytest.mark.django_db(transaction=True)
JS, RS = Job.Status, StageRun.Status


def test_every_status_is_reachable_and_every_move_is_named():
    for moves, statuses in ((transitions.JOB_MOVES, JS), (transitions.RUN_MOVES, RS)):
        reached = {m.target for m in moves}
        assert reached == set(statuses.values)
        keys = [(m.event, m.target) for m in moves]
        assert len(keys) == len(set(keys)), "one move per (event, target)"
        for m in moves:
            assert m.why and set(m.sources) <= set(statuses.values)


def test_a_move_not_in_the_table_raises(engine, theme, call_log, tmp_path):
    job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
    with pytest.raises(orchestrator.InvalidState, match="awaiting review"):
        transitions.move_job(job, "complete")  # skipping review and publish
    with pytest.raises(orchestrator.InvalidState):
        transitions.move_job(job, "start")
    with pytest.raises(orchestrator.InvalidState, match="no move"):
        transitions.move_job(job, "teleport")
    job.refresh_from_db()
    assert job.status == JS.AWAITING_REVIEW


WRITERS = {"update", "create", "get_or_create", "update_or_create", "bulk_update"}
STATUSES = set(JS.values) | set(RS.values)


def _could_be_a_status(value: ast.expr) -> bool:
    """``RS.RUNNING``, ``Job.Status.FAILED``, a variable, or a literal status; not ``204`` or an f-string."""
    if isinstance(value, ast.Constant):
        return value.value in STATUSES
    return isinstance(value, ast.Attribute | ast.Name | ast.Subscript | ast.IfExp)


CONDITIONS = {"Q", "When"}  # query conditions: ``Q(status=…)`` reads, like ``filter(status=…)``


def _status_writes(tree: ast.AST) -> list[int]:
    """Lines that set a ``status``: ``x.status = …``, ``….update(status=…)`` and the other writing
    query methods, ``Model(status=…)``, a values dict with a ``"status"`` key handed to a writer.
    Reads (``filter(status=…)``, ``exclude``, ``get``…) are not writes."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            lines += [node.lineno for t in targets if isinstance(t, ast.Attribute) and t.attr == "status"]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if not (name in WRITERS or name[:1].isupper()) or name.endswith("Response") or name in CONDITIONS:
                continue
            values = [*node.args, *(k.value for k in node.keywords)]
            if any(k.arg == "status" and _could_be_a_status(k.value) for k in node.keywords) or any(
                isinstance(v, ast.Dict)
                and any(
                    isinstance(k, ast.Constant) and k.value == "status" and _could_be_a_status(x)
                    for k, x in zip(v.keys, v.values, strict=True)
                )
                for v in values
            ):
                lines.append(node.lineno)
    return lines


def test_the_status_write_detector_tells_writes_from_reads():
    writes = """
run.status = "failed"
StageRun.objects.filter(pk=1).update(status="failed")
StageRun(status="queued")
StageRun.objects.bulk_create([StageRun(job=j, status=RS.QUEUED)])
"""
    reads = """
StageRun.objects.filter(status="failed")
StageRun.objects.exclude(status=RS.RUNNING).count()
rows.annotate(n=Count("id", filter=Q(status=ok)))
Case(When(status="failed", then=1), default=0)
"""
    assert _status_writes(ast.parse(writes)) == [2, 3, 4, 5]
    assert _status_writes(ast.parse(reads)) == []


def test_only_the_transitions_module_writes_a_status():
    """ "Only the orchestrator writes status", held by structure: any other module that sets a Job's
    or a StageRun's status (ORM, raw values, bulk updates) fails this test. Tests, migrations and
    benchmarks are exempt."""
    allowed = {ROOT / "jobs" / "orchestrator" / "transitions.py"}
    offenders = []
    for path in sorted(ROOT.glob("**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".venv", "bench", "var") or "tests" in rel.parts or "migrations" in rel.parts:
            continue
        if path in allowed:
            continue
        tree = ast.parse(path.read_text(), str(path))
        offenders += [f"{rel}:{line}" for line in _status_writes(tree)]
    assert offenders == []


def test_cancel_is_the_status_alone():
    """``cancel_requested`` was written and never read: a second flag that could disagree."""
    assert "cancel_requested" not in {f.name for f in Job._meta.get_fields()}


def test_the_readme_shows_the_table_as_the_code_has_it():
    readme = (ROOT / "README.md").read_text()
    assert transitions.markdown() in readme
