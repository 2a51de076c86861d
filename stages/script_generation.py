"""Stage: script_generation. (Placeholder until the real stage lands.)"""

from __future__ import annotations

from stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    ctx.progress(1.0, "done")
    return StageResult(output={"stage": "script_generation"})
