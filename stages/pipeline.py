"""Stage order and per-stage policy: the single source of truth.

Model choices, the orchestrator, the commands, the console and the API all read ``STAGES``.
Tests (and operators) can swap a stage's function with ``TRENDREEL_STAGE_FUNCTIONS`` and tune
its policy with ``TRENDREEL_STAGE_POLICY`` (settings or environment, both JSON objects).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class StagePolicy:
    time_limit: float  # seconds; past it the attempt is stopped (child processes killed); 0: no limit
    max_attempts: int  # automatic attempts per operator action (crashes count)
    backoff_base: float  # seconds; retry n waits random(0, min(cap, base * 2**n)) (full jitter)
    backoff_cap: float
    cluster: str | None = None  # django-q2 ALT_CLUSTERS name for heavy stages, None = default


@dataclass(frozen=True)
class StageSpec:
    key: str
    label: str
    path: str  # dotted path of the stage callable
    policy: StagePolicy
    gate: bool = False  # the pipeline pauses here for a human decision (review)


STAGES: tuple[StageSpec, ...] = (
    StageSpec("trend_collection", "Trend collection", "stages.trend_collection.run", StagePolicy(120, 4, 2, 60)),
    StageSpec("trend_analysis", "Trend analysis", "stages.trend_analysis.run", StagePolicy(60, 2, 1, 10)),
    StageSpec("script_generation", "Script", "stages.script_generation.run", StagePolicy(180, 4, 2, 60)),
    StageSpec("scene_generation", "Scenes", "stages.scene_generation.run", StagePolicy(300, 3, 2, 60)),
    StageSpec("voiceover", "Voiceover", "stages.voiceover.run", StagePolicy(300, 3, 2, 60)),
    StageSpec("composition", "Composition", "stages.composition.run", StagePolicy(900, 2, 5, 60)),
    StageSpec("review", "Review", "stages.review.run", StagePolicy(0, 1, 0, 0), gate=True),
    StageSpec("publish", "Publish", "stages.publish.run", StagePolicy(300, 5, 5, 300)),
)

STAGE_KEYS: tuple[str, ...] = tuple(s.key for s in STAGES)
STAGE_CHOICES: list[tuple[str, str]] = [(s.key, s.label) for s in STAGES]
# The human gate, and the stage whose checkpoint it reviews (an approval binds to that checkpoint).
GATE: str = next(s.key for s in STAGES if s.gate)
REVIEWED: str = STAGE_KEYS[STAGE_KEYS.index(GATE) - 1]
_BY_KEY = {s.key: s for s in STAGES}
_POLICY_FIELDS = {f.name for f in fields(StagePolicy)}


def spec(key: str) -> StageSpec:
    try:
        base = _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown stage {key!r}; stages are: {', '.join(STAGE_KEYS)}") from None
    overrides: dict[str, Any] = (getattr(settings, "TRENDREEL_STAGE_POLICY", {}) or {}).get(key) or {}
    unknown = set(overrides) - _POLICY_FIELDS
    if unknown:
        raise ImproperlyConfigured(f"TRENDREEL_STAGE_POLICY[{key!r}] has unknown fields: {sorted(unknown)}")
    path = (getattr(settings, "TRENDREEL_STAGE_FUNCTIONS", {}) or {}).get(key, base.path)
    return replace(base, path=path, policy=replace(base.policy, **overrides))


def index(key: str) -> int:
    if key not in _BY_KEY:
        spec(key)  # raises the unknown-stage error
    return STAGE_KEYS.index(key)


def next_stage(key: str | None) -> str | None:
    """The stage after ``key`` (the first stage for None); None after the last."""
    if key is None:
        return STAGE_KEYS[0]
    i = index(key)
    return STAGE_KEYS[i + 1] if i + 1 < len(STAGE_KEYS) else None


def stages_from(key: str) -> tuple[str, ...]:
    return STAGE_KEYS[index(key) :]


def load(key: str):
    """The stage callable (lazy import, so a broken provider fails its stage, not the console)."""
    path = spec(key).path
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"stage {key}: cannot import {path}: {exc}") from exc


def after_gate(key: str) -> bool:
    """Stages that act on what a reviewer approved (publish): they need the approval to run."""
    return index(key) > index(GATE)


def stages_of_cluster(cluster: str | None) -> tuple[str, ...]:
    """The stages a worker of ``cluster`` (None: the default cluster) runs; the gate runs nowhere."""
    return tuple(k for k in STAGE_KEYS if k != GATE and (spec(k).policy.cluster or None) == (cluster or None))


def clusters() -> tuple[str | None, ...]:
    """Every cluster some stage is routed to (None: the default cluster)."""
    return tuple(dict.fromkeys(spec(k).policy.cluster or None for k in STAGE_KEYS if k != GATE))


def max_time_limit() -> float:
    """The longest stage time limit; ``inf`` when some stage has none (``time_limit: 0``)."""
    limits = [spec(k).policy.time_limit for k in STAGE_KEYS if k != GATE]
    return float("inf") if any(limit <= 0 for limit in limits) else max(limits)
