"""Learning from how past videos did: trend analysis weighs the patterns it picks (hook style,
topic keywords, length, caption style, voice) by the views of this theme's earlier videos that
had them, with a model simple enough to explain in the stage's output.

The model, per theme:

* A measured video (``jobs.analytics.video_results``: the latest reading of each platform, summed)
  scores ``y = log(1 + views)``: a log, so one viral video informs without drowning the rest.
* The theme's videos give the prior: their mean ``m0`` and spread ``s`` (at least ``MIN_SPREAD``; 1
  with fewer than two videos), worth ``prior_weight`` videos (default 2).
* An option (hook "subject", length 45, keyword "robot"...) seen in ``n`` videos with mean ``ȳ``
  gets the Bayesian average ``μ = (k·m0 + n·ȳ) / (k + n)`` and uncertainty ``σ = s / √(k + n)``
  (a normal mean with known spread and a conjugate prior). Its *weight* is ``exp(μ - m0)``: "x1.8"
  reads as "about 1.8 times the theme's typical views".
* Choice: Thompson sampling. Each option draws ``θ ~ N(μ, σ)`` and the largest draw wins. An option
  with no videos draws from the wide prior, so new patterns keep getting tried, and a clear winner
  wins most of the time. On top, a share ``explore`` of the choices (default 10 %) is uniformly
  random, so even a known loser is checked again now and then (audiences change).
* Topic keywords rank stories rather than being chosen: each candidate story gets the mean of
  ``(θ_k - m0) / s`` over those of its top keywords that earlier videos had (a story with none
  draws once from the prior instead), clipped to [-1, 1], times ``keyword_weight`` (0.15) added to
  its score (component ``feedback``).
* Deterministic: every draw comes from a ``random.Random`` seeded by the job id (the batch id for
  the story ranking, so the jobs of a batch agree on the ranking their ranks split).
* Inactive until the theme has ``min_videos`` (3) measured videos in the last ``window_days`` (90):
  then every stage keeps its own default.

Where the choices go: ``hook`` and ``length`` are read by script_generation (the template writer
opens with the subject or a plain hook; the length is the script's target), ``caption_style`` by
publish (how TikTok and Instagram captions open). ``voice`` is chosen among
``options.voice`` when a theme lists several, and recorded; the voiceover stage speaks it unless the
theme's explicit ``settings.voiceover.voice`` or an operator's voice edit names another
(``stages.voiceover.chosen_voice``). What each video was actually made with is recorded in its
Publication rows (``stages.publish.made_with``), and that, not the choice, is what the model learns
from.

Settings (``theme.settings["trend_analysis"]["feedback"]``): ``enabled`` (true), ``prior_weight``,
``explore``, ``min_videos``, ``window_days``, ``keyword_weight``, ``options`` (per dimension, e.g.
``{"length": [30, 45, 60], "voice": ["en_US-joe-medium", "en_US-amy-medium"]}``).
"""

from __future__ import annotations

import hashlib
import math
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.utils import timezone

from stages.base import PermanentStageError, StageContext
from stages.publish import CAPTION_STYLES

HOOK_STYLES = ("subject", "plain")  # the template writer's two hook pools (stages.providers.template)
DIMENSIONS = ("hook", "length", "caption_style", "voice")
DEFAULTS = {
    "enabled": True,
    "prior_weight": 2.0,
    "explore": 0.1,
    "min_videos": 3,
    "window_days": 90,
    "keyword_weight": 0.15,
}
MIN_SPREAD = 0.25
TOP_KEYWORDS = 5


@dataclass
class Option:
    value: Any
    videos: int
    mean_views: float | None  # exp(ȳ) - 1 of its videos; None when it has none
    posterior: float  # μ
    sigma: float  # σ
    draw: float = 0.0  # θ

    def weight(self, m0: float) -> float:
        return math.exp(self.posterior - m0)

    def shown(self, m0: float) -> dict[str, Any]:
        return {
            "value": self.value,
            "videos": self.videos,
            "mean_views": None if self.mean_views is None else round(self.mean_views),
            "weight": round(self.weight(m0), 3),
            "draw_views": round(math.expm1(self.draw)),  # this job's Thompson draw, as views
        }


@dataclass
class Prior:
    mean: float  # m0
    spread: float  # s
    weight: float  # k

    def option(self, value: Any, scores: list[float]) -> Option:
        n = len(scores)
        total = self.weight * self.mean + sum(scores)
        mean = total / (self.weight + n)
        return Option(
            value=value,
            videos=n,
            mean_views=(math.expm1(statistics.fmean(scores)) if scores else None),
            posterior=mean,
            sigma=self.spread / math.sqrt(self.weight + n),
        )


@dataclass
class Plan:
    """What trend analysis takes from the feedback loop, and how it explains it."""

    active: bool
    reason: str
    settings: dict[str, Any]
    seed: int = 0
    videos: int = 0
    prior: Prior | None = None
    chosen: dict[str, Any] = field(default_factory=dict)
    dimensions: dict[str, dict[str, Any]] = field(default_factory=dict)
    keyword_options: dict[str, Option] = field(default_factory=dict)
    keywords_of: Callable[[Any], list[str]] | None = None

    def explain(self, candidate: Any | None = None) -> dict[str, Any]:
        """The stage output's ``patterns``: the choices, and per option the weight and why."""
        out: dict[str, Any] = {"active": self.active, "reason": self.reason, "chosen": dict(self.chosen)}
        if not self.active or self.prior is None:
            return out
        m0 = self.prior.mean
        out.update(
            model=(
                "Thompson sampling over a Bayesian average of log(1 + views) per option; prior: the theme's "
                f"mean of {self.videos} videos, worth {self.prior.weight:g} videos; "
                f"{self.settings['explore']:.0%} of choices explore at random"
            ),
            seed=self.seed,
            history={
                "videos": self.videos,
                "window_days": self.settings["window_days"],
                "typical_views": round(math.expm1(m0)),
                "spread": round(self.prior.spread, 4),
            },
            dimensions=self.dimensions,
        )
        if candidate is not None and self.keywords_of is not None:
            words = self.keywords_of(candidate)[:TOP_KEYWORDS]
            out["keywords"] = {
                "weight": self.settings["keyword_weight"],
                "bonus": (candidate.components or {}).get("feedback"),
                "topic": [
                    {"keyword": w, **self.keyword_options[w].shown(m0)} for w in words if w in self.keyword_options
                ],
            }
        return out


# -- settings ----------------------------------------------------------------------------------------
def read_settings(ctx: StageContext) -> dict[str, Any]:
    raw = ctx.stage_settings.get("feedback") or {}
    if not isinstance(raw, dict):
        raise PermanentStageError("trend_analysis feedback settings must be an object", hint=_HINT)
    unknown = set(raw) - set(DEFAULTS) - {"options"}
    if unknown:
        raise PermanentStageError(f"trend_analysis feedback: unknown settings {', '.join(sorted(unknown))}", hint=_HINT)
    out = {**DEFAULTS, **{k: v for k, v in raw.items() if k != "options"}}
    checks = {
        "prior_weight": (0.1, 1000.0),
        "explore": (0.0, 1.0),
        "min_videos": (1, 100_000),
        "window_days": (1, 3650),
        "keyword_weight": (0.0, 10.0),
    }
    for name, (low, high) in checks.items():
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise PermanentStageError(
                f"trend_analysis feedback: {name}={value!r} must be a number from {low} to {high}", hint=_HINT
            )
    if not isinstance(out["enabled"], bool):
        raise PermanentStageError("trend_analysis feedback: enabled must be true or false", hint=_HINT)
    options = raw.get("options") or {}
    if not isinstance(options, dict) or set(options) - set(DIMENSIONS):
        raise PermanentStageError(
            f"trend_analysis feedback: options are lists per dimension ({', '.join(DIMENSIONS)})", hint=_HINT
        )
    theme_target = ctx.theme.get("target_seconds") or 30
    defaults: dict[str, list[Any]] = {
        "hook": list(HOOK_STYLES),
        "length": [int(theme_target)],
        "caption_style": list(CAPTION_STYLES),
        "voice": [ctx.theme["voice"]] if ctx.theme.get("voice") else [],
    }
    allowed: dict[str, Callable[[Any], bool]] = {
        "hook": lambda v: v in HOOK_STYLES,
        "length": lambda v: isinstance(v, int) and not isinstance(v, bool) and 5 <= v <= 180,
        "caption_style": lambda v: v in CAPTION_STYLES,
        "voice": lambda v: isinstance(v, str) and 0 < len(v) <= 200,
    }
    out["options"] = {}
    for name in DIMENSIONS:
        values = options.get(name, defaults[name])
        if not isinstance(values, list) or not all(allowed[name](v) for v in values):
            raise PermanentStageError(f"trend_analysis feedback: options.{name} has a value it cannot use", hint=_HINT)
        out["options"][name] = list(dict.fromkeys(values))
    return out


_HINT = (
    'see theme.settings["trend_analysis"]["feedback"]: enabled, prior_weight, explore, min_videos, window_days, '
    'keyword_weight, options {"hook": ["subject", "plain"], "length": [30, 45], "caption_style": '
    '["hook", "title", "summary"], "voice": [...]}'
)


# -- the model ---------------------------------------------------------------------------------------
def seed_for(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()[:4], "big")


def choose(options: list[Option], rng: random.Random, explore: float) -> tuple[Option, str]:
    """Thompson sampling with an exploration floor; returns the option and why it won."""
    for option in options:
        option.draw = rng.gauss(option.posterior, option.sigma)
    roll = rng.random()
    best_mean = max(options, key=lambda o: (o.posterior, -options.index(o)))
    if roll < explore:
        pick = options[rng.randrange(len(options))]
        return pick, f"random exploration ({explore:.0%} of choices try any option)"
    pick = max(options, key=lambda o: (o.draw, -options.index(o)))
    if pick is best_mean:
        return pick, "best draw; also the best average so far"
    if pick.videos == 0:
        return pick, "best draw: an option without videos yet, tried to learn how it does"
    return pick, f"best draw: less certain than {best_mean.value!r}, so worth another look"


def history(ctx: StageContext, window_days: int) -> list[Any]:
    """This theme's measured videos in the window, other than this job's."""
    theme_id = ctx.theme.get("id")
    if theme_id is None:
        return []
    from jobs.analytics import video_results

    since = timezone.now() - timedelta(days=window_days)
    return [v for v in video_results(theme_id=theme_id, since=since) if v.job_id != ctx.job_id]


def prior_of(scores: list[float], weight: float) -> Prior:
    spread = statistics.pstdev(scores) if len(scores) >= 2 else 1.0
    return Prior(mean=statistics.fmean(scores), spread=max(MIN_SPREAD, spread), weight=weight)


def plan(ctx: StageContext, candidates: list[Any], *, keywords_of: Callable[[Any], list[str]]) -> Plan:
    """Re-rank ``candidates`` (stories with ``score``, ``components`` and ``sort_key()``) by their
    keywords' past views and choose the patterns; the ``Plan`` explains both."""
    settings = read_settings(ctx)
    if not settings["enabled"]:
        return Plan(active=False, reason="switched off for this theme (feedback.enabled = false)", settings=settings)
    videos = history(ctx, settings["window_days"])
    if len(videos) < settings["min_videos"]:
        return Plan(
            active=False,
            reason=(
                f"{settings['min_videos']} measured videos of this theme are needed to learn from; "
                f"it has {len(videos)} in the last {settings['window_days']} days: the stages' defaults apply"
            ),
            settings=settings,
        )
    scores = {v.job_id: math.log1p(max(0, v.views)) for v in videos}
    prior = prior_of(list(scores.values()), float(settings["prior_weight"]))
    result = Plan(
        active=True,
        reason=f"learning from {len(videos)} measured videos of this theme",
        settings=settings,
        seed=seed_for("patterns", ctx.job_id),
        videos=len(videos),
        prior=prior,
        keywords_of=keywords_of,
    )
    rng = random.Random(result.seed)
    for name in DIMENSIONS:
        values = settings["options"][name]
        if not values:
            continue
        by_value: dict[Any, list[float]] = {v: [] for v in values}
        for video in videos:
            used = video.patterns.get(name)
            if used in by_value:
                by_value[used].append(scores[video.job_id])
        options = [prior.option(v, by_value[v]) for v in values]
        if len(options) == 1:
            options[0].draw = options[0].posterior
            result.chosen[name] = options[0].value
            result.dimensions[name] = {
                "chosen": options[0].value,
                "why": "the only option (list more in feedback.options to compare)",
                "options": [options[0].shown(prior.mean)],
            }
            continue
        pick, why = choose(options, rng, float(settings["explore"]))
        result.chosen[name] = pick.value
        result.dimensions[name] = {"chosen": pick.value, "why": why, "options": [o.shown(prior.mean) for o in options]}
    rerank(result, videos, scores, candidates, ctx)
    return result


def rerank(result: Plan, videos: list[Any], scores: dict[int, float], candidates: list[Any], ctx: StageContext) -> None:
    """Add each story's keyword feedback to its score and sort again (see the module docstring)."""
    prior = result.prior
    weight = float(result.settings["keyword_weight"])
    if prior is None or not candidates or weight <= 0 or result.keywords_of is None:
        return
    seen: dict[str, list[float]] = {}
    for video in videos:
        for word in video.patterns.get("keywords") or []:
            if isinstance(word, str):
                seen.setdefault(word.lower(), []).append(scores[video.job_id])
    words_of = {id(c): [w.lower() for w in result.keywords_of(c)[:TOP_KEYWORDS]] for c in candidates}
    rng = random.Random(seed_for("stories", ctx.params.get("batch") or ctx.job_id))
    for word in sorted(w for w in {w for words in words_of.values() for w in words} if w in seen):
        option = prior.option(word, seen[word])
        option.draw = rng.gauss(option.posterior, option.sigma)
        result.keyword_options[word] = option
    for candidate in candidates:
        known = [w for w in words_of[id(candidate)] if w in result.keyword_options]
        if known:  # the mean of its known keywords' draws, in spreads from the theme's typical video
            lift = _mean((result.keyword_options[w].draw - prior.mean) / prior.spread for w in known)
        else:  # nothing known about its words: one draw from the prior, so new subjects get their turn
            lift = rng.gauss(0.0, 1.0 / math.sqrt(prior.weight))
        lift = max(-1.0, min(1.0, lift))
        candidate.components = {**(candidate.components or {}), "feedback": round(lift, 4)}
        candidate.score = round(candidate.score + weight * lift, 4)
    candidates.sort(key=lambda c: c.sort_key())


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0
