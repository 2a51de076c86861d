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
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from stages.base import ArtifactSpec, PermanentStageError, StageContext, StageResult
from stages.chain import Registry, run_chain
from stages.scripts import validate_script

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


def run(ctx: StageContext) -> StageResult:
    ctx.progress(0.05, "reading the analysed topic")
    theme, topic = steer(ctx, _topic(ctx))
    notes = [n for n in ctx.review_notes if isinstance(n, str) and n.strip()]

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
        "prompt_version": getattr(writers[report["provider"]], "prompt_version", None),
        # what the video is made with, for the feedback loop (None: the writer does not say)
        "patterns": {
            "hook": getattr(writers[report["provider"]], "hook_style", None),
            "length": script["target_seconds"],
        },
    }
    (ctx.work_dir / "script.json").write_text(json.dumps(output, ensure_ascii=False, indent=2), encoding="utf-8")
    return StageResult(
        output=output,
        artifacts=[
            ArtifactSpec(path="script.json", kind="json", label="Script"),
            ArtifactSpec(path="script.txt", kind="text", label="Narration"),
        ],
    )
