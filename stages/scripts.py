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
from stages.text import (
    STOPWORDS,
    as_sentence,
    clean_text,
    count_words,
    is_emoji,
    shorten,
    split_sentences,
    strip_emoji,
    tidy,
)

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


_CLAUSE_END = re.compile(r"[,;:]$|^[-–—]$")


def clause_fit(sentence: str, max_words: int, min_words: int = 5) -> str:
    """``sentence`` if it has at most ``max_words`` words, else its longest opening that ends at a
    clause boundary (a comma, semicolon, colon or dash) and still has ``min_words``, as a sentence;
    "" when there is none. Never cuts inside a phrase ("...under the Apache 2.0." was such a cut)."""
    sentence = " ".join(sentence.split())
    if count_words(sentence) <= max_words:
        return sentence
    tokens = sentence.split()
    best = ""
    words = 0
    for i, token in enumerate(tokens):
        words += 1 if any(ch.isalnum() for ch in token) else 0
        if words > max_words:
            break
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if (_CLAUSE_END.search(token) or _CLAUSE_END.search(nxt)) and words >= min_words:
            best = " ".join(tokens[: i + 1]).rstrip(",;:-–— ")
    return as_sentence(best) if best else ""


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


# --- on-screen text: the card carries a key phrase, the captions the spoken words -----------
DUPLICATE_RUN = 4  # a card may repeat at most 3 spoken words in a row
_WORD_RE = re.compile(r"[\w$€£%]+(?:[.'’-][\w]+)*")
_NUMBER_RE = re.compile(
    r"(?<![\w.-])([$€£]?\d[\d,]*(?:\.\d+)?(?:\s?(?:%|×|[kKmMbB]\b|bn\b))?)(?:\s?([A-Za-z]{2,12})\b)?(?:\s+per\s+([A-Za-z]{3,10}))?"
)
_UNIT_SHORT = {"second": "s", "minute": "min", "hour": "h", "day": "day", "year": "yr", "month": "mo"}


def spoken_words(text: str) -> list[str]:
    """Lower-cased words for comparing what is drawn with what is said (punctuation ignored)."""
    return [w.lower().strip(".'’-") for w in _WORD_RE.findall(text or "")]


def shared_run(headline: str, narration: str) -> int:
    """The longest run of consecutive words the headline shares with the narration."""
    a, b = spoken_words(headline), spoken_words(narration)
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def duplicates(headline: str, narration: str) -> bool:
    """Does the card's text repeat what the voice (and so the caption) says?

    Yes when it shares ``DUPLICATE_RUN`` (4) or more words in a row with the narration, or is a
    whole spoken sentence ("Share this." read out and drawn). Key phrases such as "Raspberry Pi 5"
    or "9 tokens/s" are not duplicates: the card shows the fact, the caption the sentence.
    """
    words = spoken_words(headline)
    if len(words) >= 2 and any(words == spoken_words(s) for s in split_sentences(narration)):
        return True
    return shared_run(headline, narration) >= DUPLICATE_RUN


def facts(narration: str) -> list[str]:
    """Short facts in a narration, the most telling first: numbers with their unit ("9 tokens/s",
    "8 GB", "$80") and names with digits ("Fjord-2B", "Apache 2.0"), then other names; each at most
    3 words."""
    found: list[tuple[int, int, str]] = []  # (rank, position, text)
    numbers: list[tuple[int, int]] = []
    for m in _NUMBER_RE.finditer(narration):
        number, unit, per = m.group(1).strip(), m.group(2) or "", m.group(3) or ""
        if unit.lower() in STOPWORDS or unit.lower() in {"and", "or"}:
            unit, per = "", ""
        text = f"{number} {unit}".strip()
        if per:
            text += "/" + _UNIT_SHORT.get(per.lower().rstrip("s"), per)
        before = narration[: m.start()].split()
        if (
            before
            and before[-1][:1].isupper()
            and before[-1][-1].isalnum()
            and before[-1].lower() not in STOPWORDS
            and number[:1] not in "$€£"
        ):
            continue  # a version after a name ("Pi 5", "Apache 2.0"): part of the name
        end = m.start() + len(m.group(0)) if unit else m.start() + len(m.group(1))
        numbers.append((m.start(), end))
        if len(text) > 1 and (unit or not text.replace(".", "").isdigit() or len(text) > 2):
            found.append((0, m.start(), text))

    def close(run: list[re.Match[str]], offset: int) -> None:
        text = " ".join(t.group(0).rstrip(".,;:") for t in run)
        rank = 0 if any(ch.isdigit() for ch in text) else (1 if len(run) > 1 else 2)
        found.append((rank, offset + run[0].start(), text))

    for sentence in split_sentences(narration):
        offset = narration.find(sentence)
        tokens = [t for t in re.finditer(r"[\w][\w'’.+&-]*", sentence)]
        run: list[re.Match[str]] = []
        for i, tok in enumerate([*tokens, None]):
            word = tok.group(0).rstrip(".") if tok is not None else ""
            inside = tok is not None and any(a <= offset + tok.start() < b for a, b in numbers)
            following = tokens[i + 1].group(0) if tok is not None and i + 1 < len(tokens) else ""
            if run and tok is not None and sentence[run[-1].end() : tok.start()].strip():
                close(run, offset)  # punctuation ends a name
                run = []
            version = bool(run) and word.replace(".", "").isdigit()
            name = (
                tok is not None
                and (not inside or version)
                and word.lower() not in STOPWORDS
                and (version or word[:1].isupper())
                and (  # not the first word of a sentence or of a clause after a colon
                    (i > 0 and not tokens[i - 1].group(0).endswith(":") and sentence[tokens[i - 1].end()] != ":")
                    or following[:1].isupper()
                    or following[:1].isdigit()
                )
                and (len(word) > 1 or bool(run))  # a lone "C" is no name
            )
            if name and len(run) < 3:
                run.append(tok)
                continue
            if run:
                close(run, offset)
            run = [tok] if name else []
    kept: list[tuple[int, int, str]] = []
    for item in sorted(found):
        if not any(item[2].lower() in k[2].lower() or k[2].lower() in item[2].lower() for k in kept):
            kept.append(item)
    return [text for _, _, text in kept]


def key_phrase(narration: str, avoid: str = "") -> str:
    """A card's text for a narration: one or two of its facts ("Fjord-2B · 9 tokens/s"), at most
    ``HEADLINE_MAX_CHARS``, never a duplicate of the narration; "" when it has no fact to show."""
    facts_found = [f for f in facts(narration) if f.lower() not in (avoid or "").lower()]
    order = {fact: narration.find(fact.split("/")[0]) for fact in facts_found}
    for count in (2, 1):
        for start in range(len(facts_found) - count + 1):
            chosen = sorted(facts_found[start : start + count], key=lambda f: order[f])  # as spoken
            phrase = " · ".join(chosen)
            if len(phrase) <= HEADLINE_MAX_CHARS and not duplicates(phrase, narration):
                return phrase
    return ""


def card_text(segment: dict[str, Any]) -> str:
    """What a segment's card shows: its headline unless that repeats the narration, else a key
    phrase from the narration, else nothing (a picture-only card; the captions carry the words)."""
    headline = str(segment.get("headline") or "").strip()
    narration = str(segment.get("narration") or "")
    if headline and not duplicates(headline, narration):
        return headline
    return key_phrase(narration)
