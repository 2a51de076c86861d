"""Targeted edits: validate an edit list, merge it into a job's overrides, plan what runs again.

One index space: scene n, voice sentence n, caption n and script line n all mean segment n of the
job's current script (``script_generation`` output ``segments``), numbered from 1 as the console
shows it. The kinds (API, ``manage.py edit_job``, the console's form)::

    {"kind": "script_line", "index": n, "text": "new narration", "headline": "optional card headline"}
    {"kind": "caption",     "index": n, "text": "words shown on screen for segment n"}
    {"kind": "voice",       "index": n, "voice": "optional voice id"}   # re-voice one segment
    {"kind": "voice",       "voice": "voice id"}                         # the whole voice
    {"kind": "scene",       "index": n, "text": "re-render the card with this text"}
    {"kind": "scene",       "index": n, "upload": "<upload id>"}         # stages.uploads
    {"kind": "scene",       "index": n, "pick": "next"}                  # another stock pick / variant

``validate`` returns the clean list or raises ``EditError`` with one entry per problem (which edit,
which field, why); ``merge`` folds edits into ``Job.overrides`` (the cumulative state every stage
sees as ``ctx.overrides``); ``plan`` says which stages run again and what they redo. Stage order is
``stages.pipeline``'s.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from stages import pipeline
from stages.text import plain_text

KINDS = ("script_line", "caption", "voice", "scene")
MAX_EDITS = 20
MAX_NARRATION = 600  # characters of one segment's narration
MAX_HEADLINE = 80
MAX_CAPTION = 300
MAX_SCENE_TEXT = 120
MAX_NOTES = 5000
# No stage keeps a list of every voice (cloud voices are account ids): a voice id is one token of
# letters, digits and ``_.:+-`` ("en_US-joe-medium", "piper:en_US-amy-low", "alloy", "21m00Tcm4TlvDq8ikWAM")
VOICE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,79}$")
FIELDS = {
    "script_line": {"kind", "index", "text", "headline"},
    "caption": {"kind", "index", "text"},
    "voice": {"kind", "index", "voice"},
    "scene": {"kind", "index", "text", "upload", "pick"},
}
SCENE_SOURCES = ("text", "upload", "pick")

SCRIPT, SCENES, VOICE, COMPOSITION = "script_generation", "scene_generation", "voiceover", pipeline.REVIEWED


class EditError(ValueError):
    """Invalid edits: ``errors`` is a list of ``{"edit": n (1-based), "field": name, "message": why}``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(
                f"edit {e['edit']}" + (f" {e['field']}" if e.get("field") else "") + f": {e['message']}" for e in errors
            )
        )


def _text(value: Any, limit: int) -> tuple[str | None, str | None]:
    """(clean text, None) or (None, why)."""
    if not isinstance(value, str):
        return None, "must be text"
    if len(value) > limit * 4:
        return None, f"is {len(value)} characters; at most {limit}"
    clean = plain_text(value)
    if not clean:
        return None, "is empty (after removing markup and invisible characters)"
    if len(clean) > limit:
        return None, f"is {len(clean)} characters; at most {limit}"
    return clean, None


def validate(
    edits: Any,
    *,
    segments: int,
    upload_exists: Callable[[str], bool] = lambda upload: False,
) -> list[dict[str, Any]]:
    """The edit list, cleaned, for a script of ``segments`` segments; ``EditError`` listing every problem.

    ``upload_exists(upload_id)`` says whether an upload of THIS job with that id is stored
    (``stages.uploads.exists`` bound to the job).
    """
    if not isinstance(edits, list) or not edits:
        raise EditError([{"edit": 0, "field": "edits", "message": "give at least one edit (a list)"}])
    if len(edits) > MAX_EDITS:
        raise EditError([{"edit": 0, "field": "edits", "message": f"{len(edits)} edits; at most {MAX_EDITS} at once"}])
    errors: list[dict[str, Any]] = []
    clean: list[dict[str, Any]] = []
    for n, edit in enumerate(edits, start=1):

        def bad(field: str, message: str, n: int = n) -> None:
            errors.append({"edit": n, "field": field, "message": message})

        if not isinstance(edit, dict):
            bad("", "must be an object with a kind")
            continue
        kind = edit.get("kind")
        if kind not in KINDS:
            bad("kind", f"must be one of {', '.join(KINDS)}")
            continue
        before = len(errors)
        for extra in sorted(set(edit) - FIELDS[kind], key=str):
            bad(str(extra), f"is not a field of a {kind} edit")
        out: dict[str, Any] = {"kind": kind}
        index = edit.get("index")
        if index is None and kind == "voice":
            pass  # the whole voice
        elif isinstance(index, bool) or not isinstance(index, int):
            bad("index", "must be a segment number (1 for the first)")
        elif not 1 <= index <= segments:
            bad(
                "index", f"is {index}; the script has segments 1 to {segments}" if segments else "the job has no script"
            )
        else:
            out["index"] = index
        if kind in ("script_line", "caption"):
            limit = MAX_NARRATION if kind == "script_line" else MAX_CAPTION
            text, why = _text(edit.get("text"), limit)
            if why:
                bad("text", why)
            else:
                out["text"] = text
            if kind == "script_line" and edit.get("headline") not in (None, ""):
                headline, why = _text(edit.get("headline"), MAX_HEADLINE)
                if why:
                    bad("headline", why)
                else:
                    out["headline"] = headline
        elif kind == "voice":
            voice = edit.get("voice")
            if voice in (None, "") and index is None:
                bad("voice", "name the voice for the whole video (or give an index to re-voice one segment)")
            elif voice not in (None, ""):
                if not isinstance(voice, str) or not VOICE_PATTERN.match(voice):
                    bad("voice", "is not a voice id (letters, digits and _.:+- only, at most 80)")
                else:
                    out["voice"] = voice
        else:  # scene
            given = [k for k in SCENE_SOURCES if edit.get(k) not in (None, "")]
            if len(given) != 1:
                bad("", "a scene edit takes exactly one of text, upload or pick")
            elif given[0] == "text":
                text, why = _text(edit["text"], MAX_SCENE_TEXT)
                if why:
                    bad("text", why)
                else:
                    out["text"] = text
            elif given[0] == "upload":
                upload = edit["upload"]
                if not isinstance(upload, str) or not upload_exists(upload):
                    bad("upload", "is not an upload of this job (upload the file first: POST /api/jobs/{id}/uploads)")
                else:
                    out["upload"] = upload
            elif edit["pick"] != "next":
                bad("pick", 'must be "next"')
            else:
                out["pick"] = "next"
        if len(errors) == before:
            clean.append(out)
    if errors:
        raise EditError(errors)
    return clean


def merge(
    overrides: dict[str, Any] | None,
    edits: list[dict[str, Any]],
    *,
    upload: Callable[[str], tuple[str, str]] = lambda upload_id: (upload_id, "image"),
) -> dict[str, Any]:
    """``overrides`` with ``edits`` (validated) folded in: a new dict, the old one untouched.

    Takes count: every re-voice bumps the segment's ``voice_take``, every scene edit its scene's
    ``take`` (so a content-keyed reuse never mistakes the new take for the old). ``upload(id)``
    gives an upload's (path relative to MEDIA_ROOT, "image" | "video").
    """
    out = copy.deepcopy(overrides) if isinstance(overrides, dict) else {}
    segments: dict[str, dict[str, Any]] = out.setdefault("segments", {})
    for edit in edits:
        kind, index = edit["kind"], edit.get("index")
        if index is None:  # the whole voice
            out["voice"] = edit["voice"]
            continue
        seg = segments.setdefault(str(index), {})
        if kind == "script_line":
            seg["narration"] = edit["text"]
            if "headline" in edit:
                seg["headline"] = edit["headline"]
        elif kind == "caption":
            seg["caption"] = edit["text"]
        elif kind == "voice":
            seg["voice_take"] = int(seg.get("voice_take") or 0) + 1
            if "voice" in edit:
                seg["voice"] = edit["voice"]
        else:
            old = seg.get("scene") or {}
            scene: dict[str, Any] = {"take": int(old.get("take") or 0) + 1}
            if "text" in edit:
                scene["text"] = edit["text"]
            elif "upload" in edit:
                scene["upload"], scene["media"] = upload(edit["upload"])
            else:
                scene["pick"] = int(old.get("pick") or 0) + 1
            seg["scene"] = scene
    if not segments:
        out.pop("segments")
    return out


def plan(edits: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(the stages to run again, in pipeline order; what they redo, for people), composition always."""
    stages = {COMPOSITION}
    items: list[str] = []
    for edit in edits:
        kind, index = edit["kind"], edit.get("index")
        if kind == "script_line":
            stages |= {SCRIPT, VOICE}
            items.append(f"script line {index}")
            if "headline" in edit:
                stages.add(SCENES)
                items.append(f"scene {index}")
            items.append(f"voice {index}")
        elif kind == "caption":
            items.append(f"caption {index}")
        elif kind == "voice":
            stages.add(VOICE)
            items.append(f"voice {index}" if index is not None else "the whole voice")
        else:
            stages.add(SCENES)
            items.append(f"scene {index}")
    items.append(COMPOSITION)
    return [k for k in pipeline.STAGE_KEYS if k in stages], list(dict.fromkeys(items))


def skipped(stages: list[str]) -> list[str]:
    """The stages between the plan's first and the reviewed one that it leaves alone."""
    first, last = pipeline.index(stages[0]), pipeline.index(COMPOSITION)
    return [k for k in pipeline.STAGE_KEYS[first:last] if k not in stages]


def describe(edit: dict[str, Any]) -> str:
    """One line for people: 'scene 3: upload 1a2b…', 'caption 2: "…"'."""
    kind, index = edit.get("kind", "?"), edit.get("index")
    where = f"{kind.replace('_', ' ')} {index}" if index is not None else "whole voice"
    if "text" in edit:
        what = f'"{edit["text"]}"'
        if edit.get("headline"):
            what += f' (headline "{edit["headline"]}")'
    elif "upload" in edit:
        what = f"upload {edit['upload']}"
    elif "pick" in edit:
        what = "next pick"
    elif "voice" in edit:
        what = f"voice {edit['voice']}"
    else:
        what = "new take"
    return f"{where}: {what}"
