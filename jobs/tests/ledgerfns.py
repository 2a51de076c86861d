"""A stage function for the cost ledger's tests: it spends what the job's params say, then
behaves like ``jobs.tests.stagefns`` (``params["behave"]``).

``params["spend"]``: ``{provider: {metric: amount}}`` added to ``ctx.usage``; ``params["calls"]``:
URLs requested through ``stages.http`` (each one an API call of provider ``fake``); ``params["cpu"]``:
loop iterations of a shell child (render CPU).
"""

from __future__ import annotations

from jobs.tests import stagefns
from stages import http
from stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    for provider, counts in (ctx.params.get("spend") or {}).items():
        ctx.usage.add(provider, **counts)
    if ctx.stage == "trend_collection":
        for url in ctx.params.get("calls") or []:
            http.request(ctx, "POST", url, provider="fake", hint_setting="none", content=b"x" * 1000)
        loops = ctx.params.get("cpu")
        if loops:
            ctx.run_process(["sh", "-c", f"i=0; while [ $i -lt {int(loops)} ]; do i=$((i+1)); done"])
    return stagefns.run(ctx)
