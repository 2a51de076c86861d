"""Stage: script_generation. Write the narrated script for the analysed topic.

Steps: read ``trend_analysis``'s topic, pick the writers (``theme.settings.script_generation.providers``,
a fallback chain such as ``["openai", "template"]``, or one ``provider``: ``"template"``, the offline
default, ``"openai"``, any OpenAI-compatible chat endpoint (``stages.providers.llm``), or a dotted path
to a ``ScriptWriter`` class), write with the operator's "request changes" notes, validate the result
against the output contract below (an invalid script moves the chain on), and save it as
``script.json`` (plus ``script.txt``, the narration as a reader would check it).

Output (every later stage relies on it)::

    {"title": str, "hook": str,
     "segments": [{"id": "hook" | "beat1".."beatN" | "cta", "narration": str, "headline": str}],
     "cta": str, "hashtags": [str], "description": str, "target_seconds": int,
     "word_count": int, "words_per_second": float, "notes_applied": [str], "writer": str,
     "provider": str, "provider_failures": [...], "prompt_version": str | None}

``provider``/``provider_failures`` record which writer of the chain produced the script and why the
ones before it did not; ``prompt_version`` is the LLM prompt's version (None for the template).
``validate_script`` checks the writer's script before these three are added.

Segments are in speaking order: hook first, 3-6 beats, cta last.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult
from stages.providers.chain import load_dotted, provider_names, run_chain
from stages.providers.llm import PROMPT_VERSION, OpenAIWriter
from stages.providers.writer import (
    HEADLINE_MAX_CHARS,
    HEADLINE_MAX_WORDS,
    MAX_BEATS,
    MIN_BEATS,
    OPERATOR_HOOK_MAX_WORDS,
    TITLE_MAX_CHARS,
    ScriptWriter,
    TemplateWriter,
    count_words,
    is_emoji,
)

WORD_BUDGET_TOLERANCE = 1.35  # narration may run this far past target_seconds * words_per_second
DESCRIPTION_MAX_CHARS = 5000  # YouTube's limit
HASHTAG_RE = re.compile(r"^#\w{1,60}$")
FIELDS: dict[str, type | tuple[type, ...]] = {
    "title": str,
    "hook": str,
    "segments": list,
    "cta": str,
    "hashtags": list,
    "description": str,
    "target_seconds": int,
    "word_count": int,
    "words_per_second": (int, float),
    "notes_applied": list,
    "writer": str,
}
_HINT = "the writer produced a script outside the contract; check the writer provider and the operator notes"


def _invalid(field: str, problem: str) -> PermanentStageError:
    return PermanentStageError(f"script is invalid: {field} {problem}", hint=_HINT)


def validate_script(script: Any) -> None:
    """Check a script against the output contract; raise ``PermanentStageError`` naming the field.

    Written out by hand (no jsonschema dependency) so every message says exactly what is wrong.
    """
    if not isinstance(script, dict):
        raise _invalid("script", f"must be an object, got {type(script).__name__}")
    for name, kind in FIELDS.items():
        if name not in script:
            raise _invalid(name, "is missing")
        value = script[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _invalid(name, f"must be {getattr(kind, '__name__', 'a number')}, got {type(value).__name__}")
        if isinstance(value, str) and not value.strip():
            raise _invalid(name, "is empty")
    extra = sorted(set(script) - set(FIELDS))
    if extra:
        raise _invalid(", ".join(extra), "is not part of the script contract")
    if len(script["title"]) > TITLE_MAX_CHARS:
        raise _invalid("title", f"has {len(script['title'])} characters (max {TITLE_MAX_CHARS})")
    if count_words(script["hook"]) > OPERATOR_HOOK_MAX_WORDS:
        raise _invalid("hook", f"has {count_words(script['hook'])} words (max {OPERATOR_HOOK_MAX_WORDS})")
    if len(script["description"]) > DESCRIPTION_MAX_CHARS:
        raise _invalid("description", f"has {len(script['description'])} characters (max {DESCRIPTION_MAX_CHARS})")
    if script["target_seconds"] <= 0 or script["words_per_second"] <= 0:
        raise _invalid("target_seconds/words_per_second", "must be positive")

    segments = script["segments"]
    beats = len(segments) - 2
    if not MIN_BEATS <= beats <= MAX_BEATS:
        raise _invalid("segments", f"has {beats} beats (needs {MIN_BEATS}-{MAX_BEATS} between hook and cta)")
    expected_ids = ["hook", *(f"beat{i}" for i in range(1, beats + 1)), "cta"]
    total = 0
    for i, (seg, expected) in enumerate(zip(segments, expected_ids, strict=False)):
        where = f"segments[{i}]"
        if not isinstance(seg, dict):
            raise _invalid(where, "must be an object")
        if seg.get("id") != expected:
            raise _invalid(f"{where}.id", f"is {seg.get('id')!r}, expected {expected!r}")
        for key in ("narration", "headline"):
            value = seg.get(key)
            if not isinstance(value, str) or count_words(value) == 0:
                raise _invalid(f"{where}.{key}", "is missing or empty")
        if any(is_emoji(ch) for ch in seg["narration"] + seg["headline"]):
            raise _invalid(f"{where}", "contains emoji (TTS reads them aloud; the card font has none)")
        headline = seg["headline"]
        if count_words(headline) > HEADLINE_MAX_WORDS or len(headline) > HEADLINE_MAX_CHARS:
            raise _invalid(
                f"{where}.headline",
                f"is too long for a card: {count_words(headline)} words / {len(headline)} characters "
                f"(max {HEADLINE_MAX_WORDS} / {HEADLINE_MAX_CHARS})",
            )
        total += count_words(seg["narration"])
    if segments[0]["narration"] != script["hook"]:
        raise _invalid("segments[0].narration", "must be the hook")
    if segments[-1]["narration"] != script["cta"]:
        raise _invalid(f"segments[{len(segments) - 1}].narration", "must be the cta")

    for i, tag in enumerate(script["hashtags"]):
        if not isinstance(tag, str) or not HASHTAG_RE.match(tag):
            raise _invalid(f"hashtags[{i}]", f"is {tag!r}; expected # followed by letters, digits or _")
    for i, note in enumerate(script["notes_applied"]):
        if not isinstance(note, str):
            raise _invalid(f"notes_applied[{i}]", "must be a string")

    if script["word_count"] != total:
        raise _invalid("word_count", f"is {script['word_count']} but the narration has {total} words")
    budget = script["target_seconds"] * script["words_per_second"]
    if total > budget * WORD_BUDGET_TOLERANCE:
        raise _invalid(
            "word_count",
            f"is {total} words, over {WORD_BUDGET_TOLERANCE}x the budget of {budget:.0f} "
            f"({script['target_seconds']} s at {script['words_per_second']} words/s)",
        )


NETWORK_WRITERS = {"openai"}  # OpenAI-compatible chat completions (OpenAI, OpenRouter, Ollama, vLLM...)


def get_writer(settings: dict[str, Any], ctx: StageContext | None = None) -> ScriptWriter:
    """The configured writer: "template" (offline, default), "openai" (needs ``ctx``) or a dotted path
    to a writer class."""
    provider = settings.get("provider") or "template"
    if provider in {"template", "offline"}:
        return TemplateWriter()
    if provider in NETWORK_WRITERS and ctx is not None:
        return OpenAIWriter(ctx, validate_script)
    writer = load_dotted(
        "script_generation",
        provider,
        'set theme settings script_generation.providers to a list of "openai", "template" or dotted paths to writer classes',
    )
    if not callable(getattr(writer, "write", None)):
        raise PermanentStageError(f"script_generation provider {provider!r} has no write(topic, theme, notes) method")
    return writer


def _topic(ctx: StageContext) -> dict[str, Any]:
    topic = ctx.output_of("trend_analysis").get("topic")
    if not isinstance(topic, dict):
        raise PermanentStageError("trend_analysis output has no topic", hint="re-run from trend_analysis")
    title = topic.get("title")
    if not isinstance(title, str) or not title.strip():
        raise PermanentStageError("trend_analysis topic.title is missing or empty", hint="re-run from trend_analysis")
    return topic


def _narration_text(script: dict[str, Any]) -> str:
    lines = [script["title"], ""]
    for seg in script["segments"]:
        lines.append(f"[{seg['id']}] {seg['headline']}")
        lines.append(seg["narration"])
        lines.append("")
    lines += ["---", script["description"], ""]
    if script["notes_applied"]:
        lines += ["Notes applied:", *(f"- {n}" for n in script["notes_applied"])]
    return "\n".join(lines) + "\n"


def run(ctx: StageContext) -> StageResult:
    ctx.progress(0.05, "reading the analysed topic")
    topic = _topic(ctx)
    notes = [n for n in ctx.review_notes if isinstance(n, str) and n.strip()]

    def attempt(provider: str) -> dict[str, Any]:
        writer = get_writer({"provider": provider}, ctx)
        name = getattr(writer, "label", None) or getattr(writer, "name", type(writer).__name__)
        ctx.progress(0.2, f"writing with {name}" + (f", {len(notes)} operator notes" if notes else ""))
        script = writer.write(topic, ctx.theme, notes)
        ctx.progress(0.8, "checking the script against the contract")
        validate_script(script)
        return script

    names = provider_names(ctx, "template")
    if len(names) == 1:  # no chain: the writer's own error, hint and retry_after reach the orchestrator
        script, report = attempt(names[0]), {"provider": names[0], "failures": []}
    else:
        script, report = run_chain(ctx, names, attempt)

    (ctx.work_dir / "script.txt").write_text(_narration_text(script), encoding="utf-8")
    seconds = script["word_count"] / script["words_per_second"]
    message = f"{len(script['segments'])} segments, {script['word_count']} words (~{seconds:.0f} s)"
    if seconds < script["target_seconds"] * 0.6:
        # Not an error: the writer does not pad a thin topic (no summary) with invented facts.
        message += f"; short of the {script['target_seconds']} s target, the topic has little material"
        ctx.logger.warning("job %s: %s", ctx.job_id, message)
    ctx.progress(1.0, message)
    output = {
        **script,
        "provider": report["provider"],
        "provider_failures": report["failures"],
        "prompt_version": PROMPT_VERSION if report["provider"] in NETWORK_WRITERS else None,
    }
    (ctx.work_dir / "script.json").write_text(json.dumps(output, ensure_ascii=False, indent=2), encoding="utf-8")
    return StageResult(
        output=output,
        artifacts=[
            ArtifactSpec(path="script.json", kind="json", label="Script"),
            ArtifactSpec(path="script.txt", kind="text", label="Narration"),
        ],
    )
