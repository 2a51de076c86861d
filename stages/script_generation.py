"""Stage: script_generation. Write the narrated script for the analysed topic.

Steps: read ``trend_analysis``'s topic, pick the writers (``PROVIDERS`` below, chosen by
``theme.settings.script_generation.providers``, a fallback chain such as ``["openai", "template"]``,
or one ``provider``: ``"template"``, the offline default (``stages.providers.template``),
``"openai"``, any OpenAI-compatible chat endpoint (``stages.providers.llm``), or a dotted path to a
``ScriptWriter`` class), write with the operator's "request changes" notes, validate the result
against the output contract (``stages.scripts.validate_script``; an invalid script moves the chain
on), and save it as ``script.json`` (plus ``script.txt``, the narration as a reader would check it).

Output (every later stage relies on it)::

    {"title": str, "hook": str,
     "segments": [{"id": "hook" | "beat1".."beatN" | "cta", "narration": str, "headline": str}],
     "cta": str, "hashtags": [str], "description": str, "target_seconds": int,
     "word_count": int, "words_per_second": float, "notes_applied": [str], "writer": str,
     "provider": str, "provider_failures": [...], "prompt_version": str | None,
     "patterns": {"hook": "subject" | "plain" | "operator" | None, "length": int}}

``provider``/``provider_failures`` record which writer of the chain produced the script and why the
ones before it did not; ``prompt_version`` is the LLM prompt's version (None for the template);
``patterns`` what the video is made with (the hook's pool, the target length), which the feedback
loop learns from (``stages.feedback``): trend analysis's chosen ``patterns`` steer the writer
(the length becomes the target; the template writer opens with the chosen hook style).
``validate_script`` checks the writer's script before these three are added.

Segments are in speaking order: hook first, 3-6 beats, cta last.

Targeted edits (issue 14): ``ctx.overrides["segments"]["<n>"]`` may replace segment n's
``narration`` and/or ``headline`` (n counts from 1, as the console shows segments). Overrides
apply on every run, after the writer. A re-run after an edit (a base checkpoint, overrides, and
the writer's inputs unchanged: same topic, theme settings and operator notes, ``writer_inputs``)
does not call the writer again: the base script is kept word for word (no LLM tokens spent, the
operator's other lines unchanged) and only the overrides are applied. The edited script is checked
against the contract again (an edit that breaks it fails the stage permanently, naming the
segment), ``hook``/``cta`` follow segments 1 and N, ``word_count`` and ``script.txt`` are
recomputed. The output adds::

    "overrides_applied": [{"index": n, "segment": "beat2", "fields": ["narration", "headline"]}],
    "writer_inputs": "<sha256 of what the writer saw>", "base_reused": bool
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Protocol

from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult
from stages.chain import Registry, run_chain
from stages.scripts import FIELDS, validate_script
from stages.text import count_words

__all__ = ["PROVIDERS", "ScriptWriter", "run", "validate_script"]


class ScriptWriter(Protocol):
    """Writes a script dict in the output shape above; ``validate_script`` checks it."""

    name: str

    def write(self, topic: dict[str, Any], theme: dict[str, Any], notes: list[str]) -> dict[str, Any]: ...


PROVIDERS = Registry(
    "script_generation",
    {
        "template": "stages.providers.template.TemplateWriter",  # offline, the default
        "openai": "stages.providers.llm.OpenAIWriter",  # OpenAI-compatible chat (OpenAI, OpenRouter, Ollama, vLLM...)
    },
    default="template",
    method="write",
    aliases={"offline": "template"},
    plug_ins=True,
)


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


def steer(ctx: StageContext, topic: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The theme and topic a writer sees, with the patterns trend analysis chose from past videos'
    results (``stages.feedback``): the length as the target, the hook style on the topic."""
    chosen = ((ctx.upstream.get("trend_analysis") or {}).get("patterns") or {}).get("chosen") or {}
    theme, topic = dict(ctx.theme), dict(topic)
    length = chosen.get("length")
    if isinstance(length, int) and not isinstance(length, bool) and 5 <= length <= 180:
        theme["target_seconds"] = length
    if chosen.get("hook") in ("subject", "plain"):
        topic["hook_style"] = chosen["hook"]
    return theme, topic


# -- targeted edits ---------------------------------------------------------------------------------
EDITABLE = ("narration", "headline")
_SEGMENT_IN_ERROR = re.compile(r"segments\[(\d+)\]")


def segment_overrides(ctx: StageContext) -> dict[int, dict[str, str]]:
    """``{n: {"narration": ..., "headline": ...}}`` from ``ctx.overrides["segments"]`` (1-based),
    only the fields this stage applies, whitespace collapsed, in segment order."""
    raw = (ctx.overrides or {}).get("segments") or {}
    if not isinstance(raw, dict):
        raise PermanentStageError("job overrides: segments must be an object keyed by segment number")
    found: dict[int, dict[str, str]] = {}
    for key, edit in raw.items():
        try:
            number = int(key)
        except (TypeError, ValueError):
            raise PermanentStageError(f"job overrides: segment key {key!r} is not a number") from None
        if not isinstance(edit, dict):
            continue
        fields = {f: " ".join(edit[f].split()) for f in EDITABLE if isinstance(edit.get(f), str) and edit[f].strip()}
        if fields:
            found[number] = fields
    return dict(sorted(found.items()))


def apply_overrides(
    script: dict[str, Any], edits: dict[int, dict[str, str]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``script`` with the operator's lines in place, checked against the contract again.

    Returns (new script, ``overrides_applied`` records). An edit that names a segment the script
    does not have, or that breaks the contract (a headline too long for a card, a hook over 8
    words, narration far over the word budget...), raises ``PermanentStageError`` naming it.
    """
    script = {**script, "segments": [dict(seg) for seg in script["segments"]]}
    segments = script["segments"]
    applied: list[dict[str, Any]] = []
    for number, fields in edits.items():
        if not 1 <= number <= len(segments):
            raise PermanentStageError(
                f"the edit of segment {number} names a segment the script does not have (it has {len(segments)})",
                hint="edit a segment from 1 to " + str(len(segments)),
            )
        segments[number - 1].update(fields)
        applied.append({"index": number, "segment": segments[number - 1]["id"], "fields": sorted(fields)})
    if not edits:
        return script, applied
    script["hook"] = segments[0]["narration"]
    script["cta"] = segments[-1]["narration"]
    script["word_count"] = sum(count_words(seg["narration"]) for seg in segments)
    try:
        validate_script({name: script[name] for name in FIELDS if name in script})
    except PermanentStageError as exc:
        named = _SEGMENT_IN_ERROR.search(exc.message)
        if named:
            culprits = [int(named.group(1)) + 1]
        elif exc.message.startswith("script is invalid: hook"):
            culprits = [1]
        elif exc.message.startswith("script is invalid: cta"):
            culprits = [len(segments)]
        else:
            culprits = list(edits)
        culprits = [n for n in culprits if n in edits] or list(edits)
        names = ", ".join(f"{n} ({segments[n - 1]['id']})" for n in culprits)
        raise PermanentStageError(
            f"the edit of segment {names} breaks the script: {exc.message.removeprefix('script is invalid: ')}",
            hint="shorten or reword that line (headlines: at most 7 words / 40 characters; the hook at most "
            "8 words; no emoji) and edit it again",
        ) from exc
    return script, applied


def writer_inputs(topic: dict[str, Any], theme: dict[str, Any], notes: list[str]) -> str:
    """A fingerprint of everything a writer reads: a base script written from the same inputs can
    be kept as it is."""
    seen = {
        "topic": topic,
        "notes": notes,
        "name": theme.get("name"),
        "keywords": theme.get("keywords"),
        "target_seconds": theme.get("target_seconds"),
        "settings": (theme.get("settings") or {}).get("script_generation"),
    }
    return hashlib.sha256(json.dumps(seen, sort_keys=True, default=str).encode()).hexdigest()


def reusable_base(ctx: StageContext, fingerprint: str, notes: list[str]) -> dict[str, Any] | None:
    """The base checkpoint's script when this run is a re-run after an edit whose writer inputs
    are unchanged; None when the writer must write (first run, new notes, another topic...)."""
    base = ctx.base_output
    if not base or not ctx.overrides or not isinstance(base.get("segments"), list):
        return None
    recorded = base.get("writer_inputs")
    if recorded is None and notes:  # a checkpoint from before edits: only safe when no notes ask for changes
        return None
    if recorded is not None and recorded != fingerprint:
        return None
    try:
        validate_script({name: base.get(name) for name in FIELDS})
    except PermanentStageError:
        return None
    return base


def finish(ctx: StageContext, output: dict[str, Any]) -> StageResult:
    """Write script.json and script.txt for ``output`` and return the stage's result."""
    (ctx.work_dir / "script.txt").write_text(_narration_text(output), encoding="utf-8")
    (ctx.work_dir / "script.json").write_text(json.dumps(output, ensure_ascii=False, indent=2), encoding="utf-8")
    return StageResult(
        output=output,
        artifacts=[
            ArtifactSpec(path="script.json", kind="json", label="Script"),
            ArtifactSpec(path="script.txt", kind="text", label="Narration"),
        ],
    )


def run(ctx: StageContext) -> StageResult:
    ctx.progress(0.05, "reading the analysed topic")
    theme, topic = steer(ctx, _topic(ctx))
    notes = [n for n in ctx.review_notes if isinstance(n, str) and n.strip()]
    edits = segment_overrides(ctx)
    fingerprint = writer_inputs(topic, theme, notes)

    base = reusable_base(ctx, fingerprint, notes)
    if base is not None:
        ctx.progress(0.3, f"keeping the script, applying {len(edits)} edited lines")
        script, applied = apply_overrides(base, edits)
        ctx.progress(1.0, f"{len(applied)} edited segments, {script['word_count']} words")
        return finish(ctx, {**script, "overrides_applied": applied, "writer_inputs": fingerprint, "base_reused": True})

    writers: dict[str, ScriptWriter] = {}

    def attempt(provider: str) -> dict[str, Any]:
        writer: ScriptWriter = PROVIDERS.resolve(ctx, provider)
        writers[provider] = writer
        name = getattr(writer, "label", None) or getattr(writer, "name", type(writer).__name__)
        ctx.progress(0.2, f"writing with {name}" + (f", {len(notes)} operator notes" if notes else ""))
        script = writer.write(topic, theme, notes)
        ctx.progress(0.8, "checking the script against the contract")
        validate_script(script)
        return script

    script, report = run_chain(ctx, PROVIDERS.names(ctx), attempt)
    script, applied = apply_overrides(script, edits)

    seconds = script["word_count"] / script["words_per_second"]
    message = f"{len(script['segments'])} segments, {script['word_count']} words (~{seconds:.0f} s)"
    if seconds < script["target_seconds"] * 0.6:
        # Not an error: the writer does not pad a thin topic (no summary) with invented facts.
        message += f"; short of the {script['target_seconds']} s target, the topic has little material"
        ctx.logger.warning("job %s: %s", ctx.job_id, message)
    if applied:
        message += f"; {len(applied)} edited segments"
    ctx.progress(1.0, message)
    output = {
        **script,
        "provider": report["provider"],
        "provider_failures": report["failures"],
        "prompt_version": getattr(writers[report["provider"]], "prompt_version", None),
        # what the video is made with, for the feedback loop (None: the writer does not say)
        "patterns": {
            "hook": getattr(writers[report["provider"]], "hook_style", None),
            "length": script["target_seconds"],
        },
        "overrides_applied": applied,
        "writer_inputs": fingerprint,
        "base_reused": False,
    }
    return finish(ctx, output)
