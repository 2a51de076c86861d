"""Stage: trend_analysis. Pick the one story this job's video is about, and say why.

Steps:

1. Load the ``Trend`` rows trend_collection listed (``trend_ids``), in its order.
2. Merge near-duplicates into candidates: two items are one story when they link the same page
   (normalised URL) or their titles share most of their words (token sets after accent folding,
   stop-word removal and light stemming: Jaccard >= 0.5, or >= 70 % of the shorter title with at
   least 3 shared words). Plain set arithmetic: cheap, explainable, no model to download.
3. Score each candidate (weights in ``WEIGHTS``, tunable per theme):
   * recency: ``0.5 ** (age / half_life)`` of its newest item. Age is measured from a reference
     time: by default the newest *trusted* date of the collected set (or ``params["now"]``, or
     wall clock with ``settings.trend_analysis.reference = "now"``). Measuring from the newest
     item keeps the demo's bundled feeds (fixed dates) picking the same topic whatever today's
     date is, and is fair to feeds that were all quiet for a day. Dates are not taken on trust: a
     date more than ``FUTURE_TOLERANCE`` after the item was fetched is clamped to the fetch time
     (``first_seen``) and flagged, an undated item gets the fetch time and is flagged; a flagged
     item's recency is multiplied by ``UNTRUSTED_RECENCY`` and it never sets the reference, so a
     story "dated" 9999-12-31 cannot make every real story old, and an undated one never gets the
     top recency.
   * engagement: ``log1p(score)`` scaled min-to-max *within the item's own source*, so a Reddit
     score of 18 000 and 800 HN points both count as "the top of their feed"; best member wins.
   * keywords: theme keywords found on word boundaries (title hit 1, summary-only hit 0.5),
     ``1 - 0.5 ** hits``: the first keyword matters most.
   * sources: how many distinct sources carry the story (the output shows the count; the score
     uses ``(n - 1) / (sources available - 1)``).
4. Skip stories this theme's other jobs of the last ``recent_days`` (30) already used (their
   succeeded trend_analysis runs: same trend ids, or a similar title; at most ``recent_jobs``, 500,
   of them are read): a theme never tells the same story twice within N days. Jobs that failed or
   were cancelled do not count - their video never went out. The output's ``skipped`` says which
   stories were passed over and why (the job page shows it). Nothing left -> ``PermanentStageError``
   with a hint.
5. Take the best (ties broken by sources, engagement, then collection order - deterministic) - or,
   for job i of a batch (``params["topic_rank"] = i``, ``params["batch"]`` shared), the i-th best
   new one; siblings do not count as "recent jobs", so the ranks stay stable while they run - and
   extract keywords, CamelCase hashtags and an angle (breaking / explainer / debate / how-to)
   from title cues.

Output: ``{"topic": {...}, "candidates": [top 5 with score and components], "reference_time",
"rank", "skipped": [...]}``; ``analysis.json`` holds every candidate.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from stages import feedback
from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult
from stages.text import STOPWORDS

WEIGHTS = {"recency": 0.3, "engagement": 0.25, "keywords": 0.25, "sources": 0.2}
HALF_LIFE_HOURS = 24.0
FUTURE_TOLERANCE = timedelta(hours=1)  # clock skew and time-zone slips; beyond it a date is not believed
UNTRUSTED_RECENCY = 0.5  # an undated or clamped item's recency counts half
FLAG_UNDATED = "undated: fetch time used"
FLAG_FUTURE = "future date clamped to the fetch time"
TOP_CANDIDATES = 5
RECENT_DAYS = 30  # a theme does not tell the same story again within this many days
RECENT_JOBS = 500  # at most this many of those jobs are read (the newest)
MAX_TRENDS = 800  # pairwise merging is O(n^2); the newest this many are plenty
ANGLES = ("debate", "how-to", "breaking", "explainer")  # tie order

# Words that say nothing about which story a title tells: the shared function words plus the
# furniture of headlines ("Show HN", "says", "today", "first").
TITLE_NOISE = STOPWORDS | frozenset(
    """
    ask back day days even first get gets got hn last like made make makes many
    much next one said show still tell today two use used using way week year years
    """.split()  # noqa: SIM905 - a word list reads better as words
)
# Short words that read as acronyms in a hashtag (#AI, not #Ai) when the titles give no casing.
ACRONYMS = frozenset(
    [
        "ai",
        "ml",
        "gpu",
        "cpu",
        "cdn",
        "api",
        "eu",
        "uk",
        "us",
        "os",
        "ui",
        "ux",
        "vr",
        "ar",
        "llm",
        "sql",
        "isp",
        "ev",
        "iot",
        "npu",
        "soc",
    ]
)
_ANGLE_CUES = {
    "how-to": re.compile(r"\bhow (to|we|i)\b|\bguide\b|\btutorial\b|\btips?\b|\bstep[- ]by[- ]step\b|\bfix(es|ing)?\b"),
    "debate": re.compile(
        r"\bshould\b|\bvs\.?\b|\bversus\b|\bdebat\w*|\bban(s|ned|ning)?\b|\bcontrovers\w*|\bbacklash\b"
        r"|\bfair\b|\bsplit\b|\breject\w*|\bcritics?\b|\bopinion\b"
    ),
    "breaking": re.compile(
        r"\bbreaking\b|\bjust\b|\breleas\w*|\blaunch\w*|\bunveil\w*|\bannounc\w*|\boutage\b|\bopens?\b"
        r"|\bstarts?\b|\bagree\w*|\bacquir\w*|\bships?\b|\bnow available\b|\bis out\b"
    ),
    "explainer": re.compile(r"\bwhy\b|\bwhat\b|\bexplain\w*|\bunderstanding\b|\binside\b|\bfirst look\b|\?"),
}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_COMPOUND = re.compile(r"[^\W_]+(?:-[^\W_]+)*", re.UNICODE)  # "free-threaded" stays one keyword
_TOKEN = re.compile(r"[a-z]+|[0-9]+(?:\.[0-9]+)*")


# -- text ------------------------------------------------------------------------------------
def fold(text: str) -> str:
    """Lower case without accents: "Café" and "cafe" are the same word for matching."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _stem(token: str) -> str:
    if token.isdigit() or len(token) <= 4:
        return token
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", "e"), ("s", "")):
        if token.endswith(suffix) and not token.endswith("ss") and len(token) - len(suffix) >= 3:
            return token[: -len(suffix)] + repl
    return token


def title_tokens(title: str) -> frozenset[str]:
    """The words that identify a story: folded, stemmed, no stop words, no single letters."""
    tokens = set()
    for token in _TOKEN.findall(fold(title)):
        if token in TITLE_NOISE or (len(token) < 2 and not token.isdigit()):
            continue
        tokens.add(_stem(token))
    return frozenset(tokens)


def similar(a: frozenset[str], b: frozenset[str]) -> bool:
    """Near-duplicate titles: most words shared (see the module docstring for the thresholds)."""
    if not a or not b:
        return False
    shared = len(a & b)
    if shared / len(a | b) >= 0.5:
        return True
    return shared >= 3 and shared / min(len(a), len(b)) >= 0.7


def normal_url(url: str) -> str:
    """A page's identity: no scheme, no www., no fragment, no tracking parameters."""
    if not url:
        return ""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower().removeprefix("www.")
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query) if not k.lower().startswith("utm_")))
    return f"{host}{parts.path.rstrip('/')}" + (f"?{query}" if query else "")


def keyword_pattern(keyword: str) -> re.Pattern[str] | None:
    """Word-boundary match for a theme keyword, plural-tolerant, "open source" = "open-source"."""
    words = _TOKEN.findall(fold(keyword))
    if not words:
        return None
    body = r"[\s\-_]+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![a-z0-9]){body}(?:s|es)?(?![a-z0-9])")


# -- data ------------------------------------------------------------------------------------
@dataclass
class Item:
    id: int
    position: int  # order in trend_collection's list (source order, then feed order)
    source: str
    title: str
    url: str
    summary: str
    when: datetime
    engagement: int
    tokens: frozenset[str]
    norm_engagement: float = 0.0
    flag: str | None = None  # why ``when`` is the fetch time rather than the feed's date


@dataclass
class Candidate:
    members: list[Item]
    lead: Item
    components: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0
    matched_keywords: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.members]

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(m.source for m in self.members))

    def sort_key(self) -> tuple:
        return (-self.score, -len(self.sources), -max(m.norm_engagement for m in self.members), self.lead.position)

    def brief(self) -> dict[str, Any]:
        brief = {"trend_id": self.lead.id, "title": self.lead.title, "score": self.score, "components": self.components}
        flags = list(dict.fromkeys(m.flag for m in self.members if m.flag and m.when == self.newest))
        if flags:
            brief["flags"] = flags
        return brief

    @property
    def newest(self) -> datetime:
        return max(m.when for m in self.members)


# -- the stage -------------------------------------------------------------------------------
def run(ctx: StageContext) -> StageResult:
    collected = ctx.output_of("trend_collection")
    trend_ids = [int(i) for i in collected.get("trend_ids") or []]
    settings = ctx.stage_settings
    weights = {**WEIGHTS, **(settings.get("weights") or {})}
    unknown = set(weights) - set(WEIGHTS)
    if unknown:
        raise PermanentStageError(
            f"trend_analysis weights name unknown components: {', '.join(sorted(unknown))}",
            hint=f"use {', '.join(WEIGHTS)}",
        )
    for name, value in weights.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise PermanentStageError(f"trend_analysis weight {name}={value!r} must be a number >= 0")
    half_life = _positive(settings.get("half_life_hours", HALF_LIFE_HOURS), "half_life_hours")

    ctx.progress(0.05, f"Loading {len(trend_ids)} collected stories")
    items = load_items(trend_ids)
    if not items:
        raise PermanentStageError(
            "trend_collection found no stories to choose from",
            hint="the theme's feeds were empty or not modified; add sources or wait for new items",
        )
    reference = reference_time(ctx, items)
    ctx.progress(0.2, f"Merging {len(items)} stories into candidates")
    candidates = merge(items)
    ctx.progress(0.5, f"Scoring {len(candidates)} candidates")
    keywords = [k for k in (ctx.theme.get("keywords") or []) if isinstance(k, str) and k.strip()]
    score_all(candidates, items, keywords=keywords, reference=reference, half_life=half_life, weights=weights)
    candidates.sort(key=Candidate.sort_key)
    # How this theme's past videos did (stages.feedback): re-ranks by topic keywords, picks the patterns.
    plan = feedback.plan(ctx, candidates, keywords_of=topic_keywords)

    ctx.progress(0.7, "Checking topics used by recent jobs")
    rank = topic_rank(ctx.params)
    used = used_topics(ctx)
    chosen: Candidate | None = None
    skipped: list[dict[str, Any]] = []
    fresh = 0
    for candidate in candidates:
        reason = used_reason(candidate, used)
        if reason is not None:
            skipped.append({"trend_id": candidate.lead.id, "title": candidate.lead.title, "reason": reason})
            continue
        if fresh == rank:
            chosen = candidate
            break
        fresh += 1  # a better topic, left to the batch sibling with that rank
    if chosen is None:
        if rank and fresh:
            raise PermanentStageError(
                f"no topic for rank {rank + 1}: only {fresh} new candidate stories (of {len(candidates)})",
                hint="the batch is larger than the number of new topics; add sources or use a smaller batch",
            )
        raise PermanentStageError(
            f"no new topic: all {len(candidates)} candidate stories were used by this theme's recent jobs",
            hint="all recent topics were used; add sources to the theme or wait for the feeds to bring new stories",
        )

    ctx.progress(0.9, f"Chose: {chosen.lead.title[:120]}")
    topic = describe(chosen, keywords=keywords, theme_name=str(ctx.theme.get("name") or ""))
    output = {
        "topic": topic,
        "candidates": [c.brief() for c in candidates[:TOP_CANDIDATES]],
        "reference_time": reference.isoformat(),
        "rank": rank,
        "skipped": skipped,
        "patterns": plan.explain(chosen),
    }
    path = ctx.work_dir / "analysis.json"
    tmp = path.with_suffix(".json.part")
    everything = {**output, "candidates": [{**c.brief(), "sources": c.sources, "trend_ids": c.ids} for c in candidates]}
    tmp.write_text(json.dumps(everything, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)
    ctx.progress(1.0, f"Topic: {topic['title'][:120]} ({topic['angle']})")
    return StageResult(output=output, artifacts=[ArtifactSpec("analysis.json", "json", "All scored candidates")])


def load_items(trend_ids: list[int]) -> list[Item]:
    from jobs.models import Trend

    order = {trend_id: pos for pos, trend_id in enumerate(dict.fromkeys(trend_ids))}
    rows = []
    ids = list(order)
    for start in range(0, len(ids), 400):
        rows.extend(Trend.objects.filter(id__in=ids[start : start + 400]))
    items = []
    for row in rows:
        when, flag = item_time(row.published, row.first_seen)
        items.append(
            Item(
                id=row.id,
                position=order[row.id],
                source=row.source,
                title=row.title,
                url=row.url,
                summary=row.summary,
                when=when,
                engagement=max(0, row.engagement),
                tokens=title_tokens(row.title),
                flag=flag,
            )
        )
    items.sort(key=lambda i: i.position)
    if len(items) > MAX_TRENDS:
        keep = set(i.id for i in sorted(items, key=lambda i: (i.when, -i.position), reverse=True)[:MAX_TRENDS])
        items = [i for i in items if i.id in keep]
    return items


def item_time(published: datetime | None, fetched: datetime) -> tuple[datetime, str | None]:
    """When an item happened, as far as it can be believed: (time, flag or None).

    ``fetched`` is when the item was first fetched (``first_seen``): an undated story is at least
    that old, and one dated beyond it (plus a tolerance for skewed clocks) was not written yet.
    """
    if published is None:
        return fetched, FLAG_UNDATED
    if published > fetched + FUTURE_TOLERANCE:
        return fetched, FLAG_FUTURE
    return published, None


def reference_time(ctx: StageContext, items: list[Item]) -> datetime:
    raw = ctx.params.get("now")
    if raw:
        value = parse_datetime(str(raw)) if not isinstance(raw, datetime) else raw
        if value is None:
            raise PermanentStageError(
                f"job parameter now={raw!r} is not an ISO date-time", hint="e.g. 2026-11-28T18:00:00Z"
            )
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if ctx.stage_settings.get("reference") == "now":
        return timezone.now()
    trusted = [i.when for i in items if i.flag is None]
    return max(trusted or [i.when for i in items])


def merge(items: list[Item]) -> list[Candidate]:
    """Union-find over "same story" pairs, visited in collection order (deterministic)."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    by_url: dict[str, int] = {}
    for i, item in enumerate(items):
        key = normal_url(item.url)
        if key:
            if key in by_url:
                union(by_url[key], i)
            else:
                by_url[key] = i
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if similar(items[i].tokens, items[j].tokens):
                union(i, j)
    groups: dict[int, list[Item]] = {}
    for i, item in enumerate(items):
        groups.setdefault(find(i), []).append(item)
    return [Candidate(members=members, lead=members[0]) for _, members in sorted(groups.items())]


def score_all(
    candidates: list[Candidate],
    items: list[Item],
    *,
    keywords: list[str],
    reference: datetime,
    half_life: float,
    weights: dict[str, float],
) -> None:
    span: dict[str, tuple[float, float]] = {}
    for item in items:
        value = math.log1p(item.engagement)
        low, high = span.get(item.source, (value, value))
        span[item.source] = (min(low, value), max(high, value))
    for item in items:
        low, high = span[item.source]
        value = math.log1p(item.engagement)
        if high <= 0:
            item.norm_engagement = 0.0  # the feed has no engagement numbers at all
        elif high == low:
            item.norm_engagement = 1.0
        else:
            item.norm_engagement = (value - low) / (high - low)
    available = len(span)
    patterns = [(k, keyword_pattern(k)) for k in keywords]
    for candidate in candidates:
        members = candidate.members
        # The lead (title, link) is the best-engaged member, with a summary if possible.
        candidate.lead = min(members, key=lambda m: (-round(m.norm_engagement, 6), not m.summary, m.position))
        newest = candidate.newest
        age_hours = max(0.0, (reference - newest).total_seconds() / 3600.0)
        recency = 0.5 ** (age_hours / half_life)
        if all(m.flag for m in members if m.when == newest):
            recency *= UNTRUSTED_RECENCY  # its newest time is a fetch time, not a date anyone wrote
        engagement = max(m.norm_engagement for m in members)
        hits = 0.0
        matched: list[str] = []
        titles = " ".join(fold(m.title) for m in members)
        summaries = " ".join(fold(m.summary) for m in members)
        for keyword, pattern in patterns:
            if pattern is None:
                continue
            if pattern.search(titles):
                hits += 1.0
                matched.append(keyword)
            elif pattern.search(summaries):
                hits += 0.5
                matched.append(keyword)
        keyword_score = 1.0 - 0.5**hits if hits else 0.0
        n_sources = len(candidate.sources)
        coverage = (n_sources - 1) / (available - 1) if available > 1 else 0.0
        candidate.matched_keywords = matched
        candidate.components = {
            "recency": round(recency, 4),
            "engagement": round(engagement, 4),
            "keywords": round(keyword_score, 4),
            "sources": n_sources,
        }
        candidate.score = round(
            weights["recency"] * recency
            + weights["engagement"] * engagement
            + weights["keywords"] * keyword_score
            + weights["sources"] * coverage,
            4,
        )


# -- topics already used ---------------------------------------------------------------------
def topic_rank(params: dict[str, Any]) -> int:
    """``params["topic_rank"]``: a batch's job i takes the i-th best new topic (0 = the best)."""
    raw = params.get("topic_rank")
    if raw is None:
        return 0
    try:
        value = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw).strip())
    except ValueError:
        value = -1
    if value < 0:
        raise PermanentStageError(f"job parameter topic_rank={raw!r} must be a whole number >= 0")
    return value


@dataclass
class UsedTopic:
    job_id: int
    trend_ids: set[int]
    titles: list[frozenset[str]]


def used_topics(ctx: StageContext) -> list[UsedTopic]:
    """Topics of this theme's recent other jobs (read-only; none when the theme has no id).

    Jobs of the same batch (``params["batch"]``) are left out: siblings split the top topics by
    ``topic_rank``, and counting a sibling that finished first as "used" would shift every rank.
    """
    theme_id = ctx.theme.get("id")
    if theme_id is None:
        return []
    from jobs.models import Job, StageRun

    limit = int(_positive(ctx.stage_settings.get("recent_jobs", RECENT_JOBS), "recent_jobs"))
    days = _positive(ctx.stage_settings.get("recent_days", RECENT_DAYS), "recent_days")
    rows = (
        StageRun.objects.filter(job__theme_id=theme_id, stage="trend_analysis", status=StageRun.Status.SUCCEEDED)
        .filter(job__created__gte=timezone.now() - timedelta(days=days))
        .exclude(job_id=ctx.job_id)
        .exclude(job__status__in=[Job.Status.FAILED, Job.Status.CANCELLED])
        .order_by("-job__created", "-finished_at", "-id")
        .values_list("job_id", "job__params", "output")
    )
    batch = ctx.params.get("batch")
    used: list[UsedTopic] = []
    seen_jobs: set[int] = set()
    for job_id, job_params, output in rows.iterator():
        if batch and isinstance(job_params, dict) and job_params.get("batch") == batch:
            continue
        if len(seen_jobs) >= limit and job_id not in seen_jobs:
            break
        seen_jobs.add(job_id)
        topic = (output or {}).get("topic") if isinstance(output, dict) else None
        if not isinstance(topic, dict):
            continue
        ids = {int(i) for i in [topic.get("trend_id"), *(topic.get("trend_ids") or [])] if isinstance(i, int)}
        titles = [str(topic.get("title") or "")] + [
            str(r.get("title") or "") for r in topic.get("related") or [] if isinstance(r, dict)
        ]
        used.append(UsedTopic(job_id=job_id, trend_ids=ids, titles=[title_tokens(t) for t in titles if t]))
    return used


def used_reason(candidate: Candidate, used: list[UsedTopic]) -> str | None:
    for topic in used:
        if topic.trend_ids.intersection(candidate.ids):
            return f"used by job {topic.job_id}"
        for member in candidate.members:
            if any(similar(member.tokens, t) for t in topic.titles):
                return f"similar to the topic of job {topic.job_id}"
    return None


# -- patterns --------------------------------------------------------------------------------
def describe(candidate: Candidate, *, keywords: list[str], theme_name: str) -> dict[str, Any]:
    lead = candidate.lead
    others = [m for m in candidate.members if m is not lead]
    summary = lead.summary or max((m.summary for m in others), key=len, default="")
    words = topic_keywords(candidate)
    return {
        "trend_id": lead.id,
        "title": lead.title,
        "summary": summary,
        "url": lead.url,
        "source": lead.source,
        "keywords": words,
        "hashtags": hashtags(candidate, words, theme_name),
        "angle": angle(candidate),
        "related": [{"title": m.title, "url": m.url, "source": m.source} for m in others],
        "trend_ids": candidate.ids,
        "published": max(m.when for m in candidate.members).isoformat(),
        "score": candidate.score,
    }


def _display_forms(candidate: Candidate) -> dict[str, str]:
    """The most used spelling of each word in the titles ("AI", "RISC", "Raspberry")."""
    forms: dict[str, Counter[str]] = {}
    for member in candidate.members:
        for word in _WORD.findall(member.title):
            forms.setdefault(fold(word), Counter())[word] += 1
    return {key: counter.most_common(1)[0][0] for key, counter in forms.items()}


def topic_keywords(candidate: Candidate, limit: int = 8) -> list[str]:
    """Matched theme keywords first, then the words the story's titles (x3) and summaries repeat.

    Hyphenated compounds ("free-threaded", "RISC-V") stay one keyword, so the hashtag reads
    #FreeThreaded, not #Free #Threaded.
    """
    counts: Counter[str] = Counter()  # by folded stem, so "chips"/"chip" and "café"/"cafe" are one
    spellings: dict[str, Counter[str]] = {}
    first: dict[str, int] = {}
    texts = [(m.title, 3) for m in candidate.members] + [(m.summary, 1) for m in candidate.members]
    for text, weight in texts:
        for word in _COMPOUND.findall(text):
            parts = fold(word).split("-")
            if not all(p.isalpha() for p in parts) or (
                len(parts) == 1 and (parts[0] in TITLE_NOISE or len(parts[0]) < 3)
            ):
                continue
            key = "-".join(_stem(p) for p in parts)
            counts[key] += weight
            spellings.setdefault(key, Counter())[word.lower()] += 1
            first.setdefault(key, len(first))
    result = [k.strip().lower() for k in candidate.matched_keywords]
    taken = {_stem(t) for k in result for t in _TOKEN.findall(fold(k))}
    for key in sorted(counts, key=lambda k: (-counts[k], first[k])):
        if len(result) >= limit:
            break
        parts = key.split("-")
        if all(p in taken for p in parts):
            continue
        taken.update(parts)
        result.append(spellings[key].most_common(1)[0][0])
    return result[:limit]


def hashtags(candidate: Candidate, words: list[str], theme_name: str, limit: int = 5) -> list[str]:
    """CamelCase tags from the topic's keywords (up to limit - 1), then the theme's own tag."""
    forms = _display_forms(candidate)

    def tag(phrase: str) -> str:
        return "#" + "".join(_tag_word(p, forms) for p in _WORD.findall(phrase))

    theme_tag = tag(theme_name) if _WORD.findall(theme_name) else ""
    tags: list[str] = []
    for phrase in words:
        value = tag(phrase)
        if len(value) > 1 and value.lower() not in {t.lower() for t in tags} and value.lower() != theme_tag.lower():
            tags.append(value)
    tags = tags[: limit - 1] if theme_tag else tags[:limit]
    return tags + ([theme_tag] if theme_tag else [])


def _tag_word(word: str, forms: dict[str, str]) -> str:
    form = forms.get(fold(word), word)
    if form.isupper() and len(form) > 1:
        return form
    if fold(word) in ACRONYMS:
        return word.upper()
    return form[:1].upper() + form[1:]


def angle(candidate: Candidate) -> str:
    """The framing the titles suggest; the lead's title counts double. Default: explainer."""
    votes: Counter[str] = Counter()
    for member in candidate.members:
        text = fold(member.title)
        weight = 2 if member is candidate.lead else 1
        for name, cue in _ANGLE_CUES.items():
            if cue.search(text):
                votes[name] += weight
    if not votes:
        return "explainer"
    return min(votes, key=lambda name: (-votes[name], ANGLES.index(name)))


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0:
        raise PermanentStageError(f"trend_analysis {name}={value!r} must be a positive number")
    return number
