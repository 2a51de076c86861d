"""Stage: review. A gate: the orchestrator pauses the job here for a human decision.

The function never runs as a task; it exists so every stage has a module of one shape.
"""

from __future__ import annotations

from stages.base import PermanentStageError, StageContext


def run(ctx: StageContext) -> None:
    raise PermanentStageError("review is decided by an operator, not run by a worker")
