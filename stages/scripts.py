"""The script contract and the rules every writer follows (template, LLM, a theme's own class).

Why a module of its own: ``stages.script_generation`` checks scripts against this contract, the
offline template writer (``stages.providers.template``) and the LLM writer (``stages.providers.llm``)
both write to it and read the operator's "request changes" notes the same way, so the limits and
the notes grammar live here once.

Text rules, decided once here so every writer behaves alike:

* narration and on-screen headlines carry no emoji (TTS reads them as "grinning face", and the
  card font has no glyphs for them) and no URLs; accents and other scripts are kept;
* the title keeps emoji (platform titles show them) but is cut to 100 characters;
* hashtags are ``#`` + letters/digits/underscore only (emoji break a tag on every platform);
* the description keeps the original wording, emoji included, and lists the source links.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from stages.base import PermanentStageError
from stages.text import clean_text, count_words, is_emoji, shorten, strip_emoji, tidy

WORDS_PER_SECOND = 2.9  # measured: Piper joe-medium speaks 2.7-2.8 words/s with our pauses (77 words -> 27.8 s); aim just over the target
HOOK_MAX_WORDS = 6  # the hook must land in the first ~2 seconds
OPERATOR_HOOK_MAX_WORDS = 8  # an operator's own hook may run a little longer (~3 s), no more
HEADLINE_MAX_WORDS = 7
HEADLINE_MAX_CHARS = 40
TITLE_MAX_CHARS = 100  # YouTube's limit; the strictest of the platforms we publish to
MIN_BEATS, MAX_BEATS = 3, 6
HASHTAGS_DEFAULT, HASHTAGS_MORE = 5, 10
LENGTH_STEP = 0.75  # one "shorter" note = 75 % of the length; "longer" divides by it
LENGTH_FACTOR_RANGE = (0.5, 1.5)
TONES = ("neutral", "casual", "serious")
MIN_TARGET_SECONDS = 15  # a hook, three beats and a call to action do not fit in less

_TITLE_PREFIX_RE = re.compile(r"^\s*(?:show|ask|tell|launch)\s+hn\s*[:\-–—]\s*", re.IGNORECASE)
_TITLE_SUFFIX_RE = re.compile(r"\s*(?:\[(?:video|pdf|audio)\]|\((?:19|20)\d\d\))\s*$", re.IGNORECASE)
_BREAK_WORDS = {
    "with", "and", "for", "to", "in", "on", "at", "by", "from", "while", "as", "after", "amid",
    "that", "which", "but", "because", "despite", "over", "into", "via", "than", "when", "where",
}  # fmt: skip


def headline_from(text: str) -> str:
    """On-screen card text: at most 7 words / 40 characters, no emoji, no closing full stop.

    A sentence that does not fit is cut before a joining word ("…launches | with a built-in…"),
    which reads like a headline, and loses a leading article.
    """
    text = strip_emoji(clean_text(text))
    fits = shorten(text, HEADLINE_MAX_WORDS, HEADLINE_MAX_CHARS)
    if fits != " ".join(text.split()):
        tokens = text.split()
        kept = fits.split()
        for j in range(min(len(kept), len(tokens) - 1), 2, -1):
            if tokens[j].lower().strip(",;:") in _BREAK_WORDS:
                fits = " ".join(tokens[:j])
                break
        first, _, rest = fits.partition(" ")
        if first.lower() in {"the", "a", "an"} and count_words(rest) >= 2:
            fits = rest[:1].upper() + rest[1:]
    fits = fits.rstrip(".,;:-–— ")
    return fits[:1].upper() + fits[1:]


def clean_title(raw: Any) -> str:
    """The topic title without forum prefixes ("Show HN:") or "[video]"/"(2023)" suffixes."""
    text = clean_text(raw)
    text = _TITLE_PREFIX_RE.sub("", text)
    return _TITLE_SUFFIX_RE.sub("", text).strip()


def hashtag(raw: str) -> str:
    """``#CamelCase`` from a keyword or tag; empty when nothing taggable is left (emoji only)."""
    text = strip_emoji(clean_text(raw)).lstrip("#")
    parts = re.findall(r"\w+", text)
    if not parts:
        return ""
    if len(parts) == 1:
        word = parts[0]
        return "#" + (word if any(c.isupper() for c in word) else word[:1].upper() + word[1:])
    return "#" + "".join(p if any(c.isupper() for c in p) else p[:1].upper() + p[1:] for p in parts)


def topic_seed(title: str) -> int:
    """A stable seed for a topic: every choice a writer or renderer makes hangs off it."""
    return int.from_bytes(hashlib.sha256(title.strip().lower().encode("utf-8")).digest()[:8], "big")


# --- operator notes -------------------------------------------------------------------------

_KEY_RE = re.compile(r"^\s*(hook|title|cta|call to action|tone)\s*[:=]\s*(.+?)\s*$", re.IGNORECASE)
_SHORTER_RE = re.compile(r"\b(shorter|too long|more concise|tighter|tighten|trim it|cut it down)\b", re.IGNORECASE)
_LONGER_RE = re.compile(r"\b(longer|too short|more detail|expand it)\b", re.IGNORECASE)
_NO_TAGS_RE = re.compile(r"\b(?:no|without|drop|remove)\s+(?:the\s+|any\s+)?hash\s?tags?\b", re.IGNORECASE)
_MORE_TAGS_RE = re.compile(r"\bmore\s+hash\s?tags?\b", re.IGNORECASE)
_TONE_RE = re.compile(
    r"\b(?:more\s+|be\s+|make\s+it\s+|sound\s+)(casual|serious)\b|\b(casual|serious)\s+tone\b", re.IGNORECASE
)
_AVOID_RE = re.compile(
    r"\b(?:avoid|don'?t\s+say|do\s+not\s+say|never\s+say)\s+(?:the\s+words?\s+)?"
    r"(?:\"([^\"]+)\"|“([^”]+)”|'([^']+)'|‘([^’]+)’|([\w’'-]+))",
    re.IGNORECASE,
)


@dataclass
class Directives:
    """What the operator's notes ask for, after reading all of them oldest first (latest wins)."""

    length_factor: float = 1.0
    hashtags: str = "default"  # default | none | more
    hook: str | None = None
    title: str | None = None
    cta: str | None = None
    tone: str | None = None
    avoid: list[str] = field(default_factory=list)
    understood: list[str] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)


def parse_notes(notes: list[str]) -> Directives:
    """Read "request changes" notes into directives.

    One directive per line or per ``;``-separated clause. ``hook:``/``title:``/``cta:``/``tone:``
    take the rest of the clause verbatim; the other directives are found anywhere in a clause
    ("please make it shorter, no hashtags"). Repeated "shorter" notes compound: each review round
    asks for shorter than the last.
    """
    d = Directives()
    lo, hi = LENGTH_FACTOR_RANGE
    for note in notes:
        if not isinstance(note, str):
            continue
        for clause in re.split(r"[\n;]+", note):
            clause = clause.strip()
            if not clause:
                continue
            matched = False
            key = _KEY_RE.match(clause)
            if key:
                name, value = key.group(1).lower(), key.group(2).strip().strip("\"“”'‘’")
                if name == "tone":
                    tone = value.lower().split()[0] if value else ""
                    if tone in TONES:
                        d.tone = tone
                        matched = True
                elif value:
                    setattr(d, "cta" if name == "call to action" else name, value)
                    matched = True
                if matched:
                    d.understood.append(clause)
                else:
                    d.not_understood.append(clause)
                continue
            if _SHORTER_RE.search(clause):
                d.length_factor = max(lo, d.length_factor * LENGTH_STEP)
                matched = True
            if _LONGER_RE.search(clause):
                d.length_factor = min(hi, d.length_factor / LENGTH_STEP)
                matched = True
            if _NO_TAGS_RE.search(clause):
                d.hashtags = "none"
                matched = True
            elif _MORE_TAGS_RE.search(clause):
                d.hashtags = "more"
                matched = True
            tone = _TONE_RE.search(clause)
            if tone:
                d.tone = (tone.group(1) or tone.group(2)).lower()
                matched = True
            for m in _AVOID_RE.finditer(clause):
                word = next(g for g in m.groups() if g).strip()
                if word and word.lower() not in {w.lower() for w in d.avoid}:
                    d.avoid.append(word)
                matched = True
            (d.understood if matched else d.not_understood).append(clause)
    return d


def avoid_pattern(words: list[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?:['’]s)?(?!\w)", re.IGNORECASE)


def scrub(text: str, pattern: re.Pattern[str] | None) -> tuple[str, int]:
    """Remove avoided words from prose (URLs untouched); returns the text and how many went."""
    if pattern is None or not text:
        return text, 0
    total = 0
    parts = re.split(r"((?:https?://|www\.)\S+)", text)
    for i in range(0, len(parts), 2):  # even indexes are prose, odd ones are URLs
        lines = []
        for line in parts[i].split("\n"):
            new, n = pattern.subn("", line)
            total += n
            if n:  # tidy the middle, keep the edges that join this prose to its URLs
                lead, core, trail = re.match(r"^(\s*)(.*?)(\s*)$", new, re.DOTALL).groups()
                lead = lead if i > 0 else ""
                trail = trail if i < len(parts) - 1 else ""
                new = lead + tidy(core) + trail if core.strip() else lead + trail
                new = re.sub(r" {2,}", " ", new)
            lines.append(new)
        parts[i] = "\n".join(lines)
    return "".join(parts), total


# --- the contract ---------------------------------------------------------------------------
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
