"""Fallback chains: try a stage's providers in order, record who produced the result and why
the others did not.

A theme lists them per stage, e.g. ``settings["voiceover"]["providers"] = ["elevenlabs",
"openai", "offline"]``. A provider that fails (transient or permanent) hands over to the next;
only when all fail does the stage fail: transient if any failure was transient (worth a retry),
else permanent, with every provider's reason in the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from stages.base import PermanentStageError, StageAborted, StageContext, StageError, TransientStageError

T = TypeVar("T")


def provider_names(ctx: StageContext, default: str) -> list[str]:
    """The stage's chain: ``providers`` (a list) or ``provider`` (one name), else the default."""
    settings = ctx.stage_settings
    names = settings.get("providers") or ([settings["provider"]] if settings.get("provider") else [default])
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise PermanentStageError(
            f"{ctx.stage}: providers must be a list of names",
            hint=f'e.g. theme.settings["{ctx.stage}"]["providers"] = ["{default}"]',
        )
    return names


def run_chain(ctx: StageContext, names: list[str], attempt: Callable[[str], T]) -> tuple[T, dict[str, Any]]:
    """Call ``attempt(name)`` for each provider until one returns. Returns (result, report)."""
    failures: list[dict[str, str]] = []
    retry_after: float | None = None
    for name in names:
        ctx.check_cancelled()
        try:
            result = attempt(name)
        except StageAborted:
            raise
        except StageError as exc:
            failures.append({"provider": name, "kind": exc.kind, "error": exc.message, "hint": exc.hint})
            if exc.retry_after is not None:
                retry_after = max(retry_after or 0.0, exc.retry_after)
            ctx.logger.warning("%s: provider %s failed (%s): %s", ctx.stage, name, exc.kind, exc.message)
            continue
        return result, {"provider": name, "failures": failures}
    summary = "; ".join(f"{f['provider']}: {f['error']}" for f in failures)
    hints = "; ".join(f["hint"] for f in failures if f["hint"])
    if any(f["kind"] == "transient" for f in failures):
        raise TransientStageError(f"every {ctx.stage} provider failed: {summary}", retry_after=retry_after)
    raise PermanentStageError(f"every {ctx.stage} provider failed: {summary}", hint=hints)


def load_dotted(stage: str, name: Any, hint: str) -> Any:
    """A provider given as a dotted path to a class (instantiated) or an object: a theme can plug in
    its own writer or renderer. Anything else is a permanent error naming the setting."""
    from django.utils.module_loading import import_string

    if not isinstance(name, str) or "." not in name:
        raise PermanentStageError(f"{stage} provider {name!r} is unknown", hint=hint)
    try:
        obj = import_string(name)
    except ImportError as exc:
        raise PermanentStageError(f"{stage} provider {name!r} cannot be imported: {exc}", hint=hint) from exc
    return obj() if isinstance(obj, type) else obj
