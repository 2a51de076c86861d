"""django-q2 entry points. They only forward: all decisions live in ``jobs.orchestrator``."""

from __future__ import annotations

from jobs import orchestrator


def run_stage(run_id: int) -> str:
    return orchestrator.execute_run(run_id)


def sweep() -> str:
    """Scheduled backstop for deployments that run plain ``qcluster`` without ``manage.py worker``."""
    report = orchestrator.sweep()
    return f"crashed={len(report.crashed)} pushed={len(report.pushed)}"
