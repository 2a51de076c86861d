"""Providers of one shape: a registry of named providers per stage, one resolver, one chain runner,
and one way to say "every provider failed".

Like healthchecks' integrations (one transport class per kind, one table of kinds), each stage
module declares the protocol its providers implement and a ``Registry`` naming them::

    PROVIDERS = Registry("script_generation", {"template": "stages.providers.template.TemplateWriter",
                                               "openai": "stages.providers.llm.OpenAIWriter"},
                         default="template", method="write", aliases={"offline": "template"}, plug_ins=True)

A theme lists a fallback chain per stage, ``settings[<stage>]["providers"] = ["openai", "template"]``
(or one ``provider``); ``PROVIDERS.names(ctx)`` reads and checks it and ``PROVIDERS.resolve(ctx,
name)`` builds one: a registered class is called with the stage context, a dotted path (where the
stage allows plug-ins) names a class built without arguments, as before. ``run_chain`` tries the
names in order: a provider that fails hands over to the next, and only when all fail does the stage
fail, through ``all_failed``: transient if any failure was transient (worth a retry, after the
longest Retry-After any of them asked for), else permanent with every hint. ``all_failed`` is also
how trend sources, publish destinations and Hacker News items say "every one of them failed".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stages.base import PermanentStageError, StageAborted, StageContext, StageError, TransientStageError

T = TypeVar("T")


def all_failed(message: str, errors: Sequence[StageError], *, hint: str | None = None) -> StageError:
    """The error for "every one failed": transient if any was (with the longest Retry-After), else
    permanent. ``hint`` defaults to every distinct hint of the failures, in order."""
    if hint is None:
        hint = "; ".join(dict.fromkeys(e.hint for e in errors if e.hint))
    waits = [e.retry_after for e in errors if e.retry_after is not None]
    if any(not e.permanent for e in errors):
        return TransientStageError(message, hint=hint, retry_after=max(waits) if waits else None)
    return PermanentStageError(message, hint=hint)


def failure(name: str, exc: StageError, **extra: Any) -> dict[str, Any]:
    """How an output records a provider that did not deliver (``provider_failures``)."""
    return {"provider": name, "kind": exc.kind, "error": exc.message, "hint": exc.hint, **extra}


@dataclass(frozen=True)
class Registry:
    """The named providers of one stage and how a theme picks them."""

    stage: str
    providers: Mapping[str, str]  # name -> dotted path of a class (or function) taking the StageContext
    default: str
    method: str  # the protocol's entry point: a plugged-in class must have it
    aliases: Mapping[str, str] = field(default_factory=dict)
    plug_ins: bool = False  # a theme may name its own class by dotted path
    setting: str = "providers"  # the list's key in theme.settings[stage] (publish: "destinations")

    @property
    def known(self) -> list[str]:
        return [*self.providers, *self.aliases]

    def hint(self) -> str:
        names = ", ".join(f'"{n}"' for n in self.providers)
        plug = " or dotted paths to your own classes" if self.plug_ins else ""
        return f'set theme.settings["{self.stage}"]["{self.setting}"] to a list of {names}{plug}'

    def names(self, ctx: StageContext) -> list[str]:
        """The stage's chain: ``providers`` (a list) or ``provider`` (one name), else the default."""
        settings = ctx.stage_settings
        names = settings.get(self.setting) or ([settings["provider"]] if settings.get("provider") else [self.default])
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise PermanentStageError(
                f"{self.stage}: {self.setting} must be a list of names",
                hint=f'e.g. theme.settings["{self.stage}"]["{self.setting}"] = ["{self.default}"]',
            )
        for name in names:
            if name not in self.providers and name not in self.aliases and not (self.plug_ins and "." in name):
                raise PermanentStageError(f"{self.stage} provider {name!r} is unknown", hint=self.hint())
        return list(dict.fromkeys(names))

    def canonical(self, name: str) -> str:
        return self.aliases.get(name, name)

    def resolve(self, ctx: StageContext, name: str) -> Any:
        """Build the provider called ``name`` for this run (its settings are read and checked here)."""
        from django.utils.module_loading import import_string

        path = self.providers.get(self.canonical(name))
        if path is not None:
            return import_string(path)(ctx)
        if not (self.plug_ins and "." in name):
            raise PermanentStageError(f"{self.stage} provider {name!r} is unknown", hint=self.hint())
        try:
            obj = import_string(name)
        except ImportError as exc:
            raise PermanentStageError(
                f"{self.stage} provider {name!r} cannot be imported: {exc}", hint=self.hint()
            ) from exc
        provider = obj() if isinstance(obj, type) else obj
        if not callable(getattr(provider, self.method, None)):
            raise PermanentStageError(f"{self.stage} provider {name!r} has no {self.method}() method", hint=self.hint())
        return provider


def run_chain(
    ctx: StageContext,
    names: Sequence[str],
    attempt: Callable[[str], T],
    *,
    subject: str = "",
    unavailable: Callable[[str], StageError | None] | None = None,
    unwrap_single: bool = True,
) -> tuple[T, dict[str, Any]]:
    """Call ``attempt(name)`` for each provider until one returns. Returns (result, report), the
    report being ``{"provider": who produced it, "failures": [failure records of the ones before]}``.

    With one provider and ``unwrap_single`` its own error (message, hint, Retry-After) reaches the
    orchestrator unchanged. ``unavailable(name)`` may name an error that already put a provider out
    for the whole run (counted for the final verdict, not recorded again). ``subject`` ends the
    "every provider failed" message (" for hook").
    """
    if unwrap_single and len(names) == 1 and (unavailable is None or unavailable(names[0]) is None):
        return attempt(names[0]), {"provider": names[0], "failures": []}
    failures: list[dict[str, Any]] = []
    errors: list[StageError] = []
    for name in names:
        ctx.check_cancelled()
        off = unavailable(name) if unavailable is not None else None
        if off is not None:
            errors.append(off)
            continue
        try:
            result = attempt(name)
        except StageAborted:
            raise
        except StageError as exc:
            errors.append(exc)
            failures.append(failure(name, exc))
            ctx.logger.warning("%s: provider %s failed%s (%s): %s", ctx.stage, name, subject, exc.kind, exc.message)
            continue
        return result, {"provider": name, "failures": failures}
    summary = "; ".join(f"{f['provider']}: {f['error']}" for f in failures) or "; ".join(e.message for e in errors)
    raise all_failed(f"every {ctx.stage} provider failed{subject}: {summary or 'no provider'}", errors)
