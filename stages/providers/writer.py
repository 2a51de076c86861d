"""Script writers: turn the analysed topic into a short narrated script for a vertical video.

The offline ``TemplateWriter`` is a real writer, not a stub: it builds a hook, 3-6 beats and a call
to action from the topic (title, summary sentences, angle, related coverage, keywords), picks its
templates deterministically from a hash of the topic title (same topic, same script), sizes the
narration to the theme's target length with a words-per-second budget and applies the operator's
"request changes" notes as explicit directives.

Text rules, decided once here so every writer behaves alike:

* narration and on-screen headlines carry no emoji (TTS reads them as "grinning face", and the
  card font has no glyphs for them) and no URLs; accents and other scripts are kept;
* the title keeps emoji (platform titles show them) but is cut to 100 characters;
* hashtags are ``#`` + letters/digits/underscore only (emoji break a tag on every platform);
* the description keeps the original wording, emoji included, and lists the source links.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Protocol

WORDS_PER_SECOND = 2.9  # measured: Piper joe-medium speaks 2.7-2.8 words/s with our pauses (77 words -> 27.8 s); aim just over the target
HOOK_MAX_WORDS = 6  # the hook must land in the first ~2 seconds
OPERATOR_HOOK_MAX_WORDS = 8  # an operator's own hook may run a little longer (~3 s), no more
HEADLINE_MAX_WORDS = 7
HEADLINE_MAX_CHARS = 40
TITLE_MAX_CHARS = 100  # YouTube's limit; the strictest of the platforms we publish to
DESCRIPTION_MAX_CHARS = 2000
MIN_BEATS, MAX_BEATS = 3, 6
HASHTAGS_DEFAULT, HASHTAGS_MORE = 5, 10
INPUT_MAX_CHARS = 20_000  # a feed's summary can be a whole article; nothing past this is read
LENGTH_STEP = 0.75  # one "shorter" note = 75 % of the length; "longer" divides by it
LENGTH_FACTOR_RANGE = (0.5, 1.5)
TONES = ("neutral", "casual", "serious")
MIN_TARGET_SECONDS = 15  # a hook, three beats and a call to action do not fit in less


class ScriptWriter(Protocol):
    """Writes a script dict in the script_generation output shape (see ``stages.script_generation``)."""

    name: str

    def write(self, topic: dict[str, Any], theme: dict[str, Any], notes: list[str]) -> dict[str, Any]: ...


# --- text helpers ---------------------------------------------------------------------------

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_SPACE_RE = re.compile(r"[ \t\r\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLOCK_TAGS = {"p", "br", "li", "div", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "blockquote", "pre", "ul", "ol"}
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "inc", "ltd", "co", "corp",
    "e.g", "i.e", "u.s", "u.k", "no", "fig", "approx", "jan", "feb", "mar", "apr", "jun", "jul",
    "aug", "sep", "sept", "oct", "nov", "dec", "mio", "mrd", "nr", "ca", "bzw",
}  # fmt: skip
STOPWORDS = {
    "a", "an", "the", "and", "or", "but", "nor", "so", "yet", "of", "to", "in", "on", "at", "by",
    "for", "with", "from", "into", "onto", "over", "under", "about", "as", "than", "that", "which",
    "who", "whom", "whose", "this", "these", "those", "is", "are", "was", "were", "be", "been", "its",
    "their", "his", "her", "our", "your", "my", "via", "after", "before", "while", "when", "if",
    "because", "amid", "per", "has", "have", "had", "will", "would", "can", "could", "not", "it",
    "they", "we", "you", "he", "she", "i", "how", "why", "what", "where", "new", "says", "just",
}  # fmt: skip
_TITLE_PREFIX_RE = re.compile(r"^\s*(?:show|ask|tell|launch)\s+hn\s*[:\-–—]\s*", re.IGNORECASE)
_TITLE_SUFFIX_RE = re.compile(r"\s*(?:\[(?:video|pdf|audio)\]|\((?:19|20)\d\d\))\s*$", re.IGNORECASE)
# Feed furniture that is not part of the story ("The post X appeared first on Y", "Read more").
_BOILERPLATE_RE = re.compile(
    r"^\W*(?:read more|continue reading|click here|comments?\b|subscribe|sign up|source:|image:|photo:)"
    r"|appeared first on|\bcomments?\s*$|all rights reserved",
    re.IGNORECASE,
)
_EMOJI_EXTRA = {"\u200d", "\ufe0e", "\ufe0f", "\u20e3"}  # ZWJ, variation selectors, keycap


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment; block tags become line breaks (sentence boundaries)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"}:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def clean_text(raw: Any, *, keep_lines: bool = False) -> str:
    """Plain text from a feed field: HTML removed, entities decoded, URLs dropped, spaces collapsed.

    Bounded work: at most ``INPUT_MAX_CHARS`` are read, whatever the feed sent.
    """
    if not isinstance(raw, str) or not raw:
        return ""
    text = raw[:INPUT_MAX_CHARS]
    if "<" in text and ">" in text:
        parser = _TextExtractor()
        try:
            parser.feed(text)
            parser.close()
            text = "".join(parser.parts)
        except (AssertionError, ValueError):  # html.parser gives up on some malformed markup ("<![x")
            text = re.sub(r"<[^>]*>", " ", text)
    text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    text = _URL_RE.sub("", text)
    text = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cf"} or ch in _EMOJI_EXTRA
    )
    text = _SPACE_RE.sub(" ", text)
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)  # brackets that only held a link
    lines = [line.strip() for line in text.split("\n")]
    if keep_lines:
        return "\n".join(line for line in lines if line)
    return " ".join(line for line in lines if line)


def is_emoji(ch: str) -> bool:
    """Pictographs, dingbats, flags, skin tones and the joiners that glue emoji sequences together."""
    if ch in _EMOJI_EXTRA:
        return True
    cp = ord(ch)
    if 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:  # skin tones, tag sequences
        return True
    return unicodedata.category(ch) in {"So", "Cs", "Co", "Cn"}


def strip_emoji(text: str) -> str:
    """``text`` without emoji, tidied so no double spaces or orphan punctuation remain."""
    if not text:
        return ""
    out = "".join(ch for ch in text if not is_emoji(ch))
    return tidy(out)


def tidy(text: str) -> str:
    """Collapse spaces and fix the punctuation that removing words or emoji leaves behind."""
    text = _SPACE_RE.sub(" ", text)
    text = re.sub(r"\s+([,.;:!?…])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"[,;:]\s*([.!?…])", r"\1", text)
    text = re.sub(r"^[\s,;:.\-–—]+", "", text)
    return text.strip()


def count_words(text: str) -> int:
    """Spoken words: whitespace tokens that contain a letter or digit (a lone dash is not a word)."""
    return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))


def split_sentences(text: str) -> list[str]:
    """Sentences of plain text; line breaks always end a sentence; common abbreviations do not."""
    sentences: list[str] = []
    for line in text.split("\n"):
        pieces = re.split(r"(?<=[.!?…])[\"”’)\]]?\s+", line.strip())
        buffer = ""
        for piece in pieces:
            if not piece:
                continue
            buffer = f"{buffer} {piece}".strip() if buffer else piece
            last = buffer.rsplit(" ", 1)[-1].rstrip(".").lower()
            if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last):
                continue
            sentences.append(buffer)
            buffer = ""
        if buffer:
            sentences.append(buffer)
    return [s.strip() for s in sentences if count_words(s) >= 1]


def _hard_cut(token: str, max_chars: int) -> str:
    return token[: max(1, max_chars - 1)] + "…"


def shorten(text: str, max_words: int, max_chars: int | None = None) -> str:
    """Cut ``text`` at a word boundary to fit, preferring a clause break and never ending on "and".

    Returns the text unchanged when it fits. A single token longer than ``max_chars`` (a 2,000
    character title without spaces) is cut hard with an ellipsis.
    """
    tokens = text.split()
    joined = " ".join(tokens)
    if count_words(joined) <= max_words and (max_chars is None or len(joined) <= max_chars):
        return joined
    cut: list[str] = []
    words = 0
    for token in tokens:
        counted = 1 if any(ch.isalnum() for ch in token) else 0
        if words + counted > max_words:
            break
        if max_chars is not None and len(" ".join([*cut, token])) > max_chars:
            break
        cut.append(token)
        words += counted
    if not cut:
        return _hard_cut(tokens[0], max_chars or 40) if tokens else ""
    # Prefer ending at a clause boundary when it keeps most of the words.
    for i in range(len(cut) - 1, max(0, int(len(cut) * 0.5)) - 1, -1):
        if cut[i].endswith((",", ";", ":")) or (i + 1 < len(cut) and cut[i + 1] in {"-", "–", "—"}):
            cut = cut[: i + 1]
            break
    while len(cut) > 1 and (
        cut[-1].lower().strip(",;:.-–—\"'“”") in STOPWORDS or not any(c.isalnum() for c in cut[-1])
    ):
        cut.pop()
    return " ".join(cut).rstrip(",;:-–— ")


def as_sentence(text: str) -> str:
    """Capitalised, ending in terminal punctuation, so TTS pauses where a reader would."""
    text = text.strip().rstrip(",;:-–— ")
    if not text:
        return ""
    if text[0].islower():
        text = text[0].upper() + text[1:]
    if not text.endswith((".", "!", "?", "…", '."', '!"', '?"', ".”", "!”", "?”")):
        text += "."
    return text


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


def _avoid_pattern(words: list[str]) -> re.Pattern[str] | None:
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


# --- templates ------------------------------------------------------------------------------
# Hooks must stay within HOOK_MAX_WORDS once {s} (a 1-3 word subject) is filled in.
HOOKS: dict[str, dict[str, list[str]]] = {
    "neutral": {
        "subject": [
            "{s} just made a big move.",
            "Big news for {s} today.",
            "Everyone's talking about {s}.",
            "This {s} story matters.",
        ],
        "plain": [
            "Nobody saw this coming.",
            "Here's today's big story.",
            "This story is moving fast.",
            "You'll want to hear this.",
        ],
    },
    "casual": {
        "subject": [
            "Wait, {s} did what?",
            "Okay, {s} just got wild.",
            "Big {s} news, real quick.",
            "You missed this {s} news.",
        ],
        "plain": [
            "Okay, this one is wild.",
            "Wait, you need this one.",
            "Stop scrolling, this is big.",
            "Nobody saw this coming.",
        ],
    },
    "serious": {
        "subject": [
            "{s}: here is what changed.",
            "An important {s} update.",
            "What this {s} news means.",
            "{s} just shifted. Here's how.",
        ],
        "plain": [
            "Here is what changed today.",
            "An important update, briefly.",
            "This matters. Here is why.",
            "One story worth your time.",
        ],
    },
}

# Openers per beat role. "" means the beat starts with its material directly.
OPENERS: dict[str, dict[str, list[str]]] = {
    "what": {
        "neutral": ["Here's what happened.", "Quick recap.", "The news:"],
        "casual": ["So here's the deal.", "Okay, so.", "Here's the thing."],
        "serious": ["Here is what happened.", "The facts first.", "The headline:"],
    },
    "detail": {
        "neutral": ["", "On top of that,", "Also,", "And"],
        "casual": ["", "Plus,", "And get this:", "Oh, and"],
        "serious": ["", "In addition,", "Notably,", "Further,"],
    },
    "why": {
        "neutral": ["Why it matters:", "The big picture:", "Why this is a big deal:"],
        "casual": ["Why should you care?", "Here's why it's a big deal.", "The real story?"],
        "serious": ["Why it matters:", "The significance:", "The wider context:"],
    },
    "next": {
        "neutral": ["What's next?", "Keep an eye on this.", "Where does it go from here?"],
        "casual": ["So what now?", "Watch this space.", "And it's not over."],
        "serious": ["What comes next?", "Looking ahead.", "The story continues."],
    },
}

# Used only when the topic has too little material to fill its role (no summary, no related).
FILLERS: dict[str, dict[str, list[str]]] = {
    "why": {
        "neutral": [
            "It touches {kw}, which a lot of people are watching closely.",
            "Stories like this shape what happens next in {kw}.",
        ],
        "casual": ["If you follow {kw}, this one is worth knowing.", "This could change how people think about {kw}."],
        "serious": [
            "It bears directly on {kw}, an area under close scrutiny.",
            "It is likely to shape decisions around {kw}.",
        ],
    },
    "next": {
        "neutral": [
            "Details are still coming in, so expect updates soon.",
            "Reactions are still rolling in, and more details should follow.",
        ],
        "casual": ["Details are still dropping, so stay tuned.", "People are still digging in, so expect more soon."],
        "serious": [
            "Further details are expected in the coming days.",
            "More information should follow as the story develops.",
        ],
    },
    "detail": {
        "neutral": [
            "It is picking up attention quickly across the web.",
            "It is one of the most shared stories today.",
        ],
        "casual": ["People online are already all over it.", "Honestly, everyone's sharing this one today."],
        "serious": ["The story is drawing wide attention.", "It is among the most discussed stories today."],
    },
}

CTAS: dict[str, list[tuple[str, str]]] = {  # (spoken, card headline)
    "neutral": [
        ("Follow for more stories like this.", "Follow for more"),
        ("What do you think? Tell us in the comments.", "What do you think?"),
        ("Share this with someone who needs to know.", "Share this"),
    ],
    "casual": [
        ("Hit follow so you don't miss the next one.", "Hit follow"),
        ("Would you use it? Drop it in the comments.", "Would you use it?"),
        ("Send this to a friend who'd love it.", "Send this to a friend"),
    ],
    "serious": [
        ("Follow for a clear daily briefing.", "Follow for daily briefings"),
        ("The sources are linked in the description.", "Sources in the description"),
        ("Follow to stay informed on this story.", "Follow for updates"),
    ],
}

GENERIC_TAGS = ["#Shorts", "#News", "#Trending", "#Explained", "#TodayILearned"]

_ROLE_PLANS = {
    3: ["what", "detail", "why"],
    4: ["what", "detail", "why", "next"],
    5: ["what", "detail", "detail", "why", "next"],
    6: ["what", "detail", "detail", "detail", "why", "next"],
}
_CASUAL_LOWERCASE = {
    "the",
    "a",
    "an",
    "it",
    "this",
    "that",
    "these",
    "those",
    "they",
    "its",
    "there",
    "some",
    "many",
    "most",
}


def _joinable(sentence: str, opener: str) -> str:
    """``sentence`` after a connective opener ("Also,"): its first word lower-cased if it is common."""
    if not opener or opener.endswith((".", "?", "!", ":")):
        return sentence
    first, _, rest = sentence.partition(" ")
    if first.lower() in _CASUAL_LOWERCASE:
        return f"{first.lower()} {rest}".strip()
    return sentence


@dataclass
class _Beat:
    role: str
    opener: str
    body: list[str]  # sentences
    headline_hint: str = ""

    def narration(self) -> str:
        if not self.body:
            return self.opener
        first = _joinable(self.body[0], self.opener)
        return " ".join(p for p in [self.opener, first, *self.body[1:]] if p)

    def words(self) -> int:
        return count_words(self.narration())


@dataclass
class _Material:
    details: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    nexts: list[str] = field(default_factory=list)
    headlines: dict[str, str] = field(default_factory=dict)  # sentence -> better card text for it


def _connects(sentence: str, corpus: str) -> bool:
    """Can ``sentence`` follow a connective ("Also, ...")? Yes when its first word can be lower-cased
    or is a name (the story capitalises it mid-sentence too)."""
    first = sentence.split(" ", 1)[0].strip("\"“‘'(")
    if not first or first.lower() in _CASUAL_LOWERCASE or not first[:1].isupper():
        return True
    if first.isupper() or any(ch.isdigit() for ch in first):
        return True  # "NASA", "5G"
    return re.search(rf"[\w,;] +{re.escape(first)}(?!\w)", corpus) is not None


def _similar(a: str, b: str) -> bool:
    """True when two sentences share most of their content words (the summary repeating the title)."""
    wa = {w for w in re.findall(r"\w+", a.lower()) if w not in STOPWORDS}
    wb = {w for w in re.findall(r"\w+", b.lower()) if w not in STOPWORDS}
    if not wa or not wb:
        return False
    return len(wa & wb) / min(len(wa), len(wb)) >= 0.7


class TemplateWriter:
    """The offline writer: deterministic templates filled from the analysed topic."""

    name = "template"

    def __init__(self, *, words_per_second: float | None = None, tone: str | None = None) -> None:
        self.words_per_second = words_per_second
        self.tone = tone

    # -- entry point ----------------------------------------------------------------------------
    def write(self, topic: dict[str, Any], theme: dict[str, Any], notes: list[str]) -> dict[str, Any]:
        """Steps: read the topic, apply directives, plan beats from the duration, fill, size, tag."""
        settings = dict(((theme.get("settings") or {}).get("script_generation")) or {})
        wps = float(self.words_per_second or settings.get("words_per_second") or WORDS_PER_SECOND)
        directives = parse_notes(list(notes or []))
        tone = directives.tone or self.tone or settings.get("tone") or "neutral"
        tone = tone if tone in TONES else "neutral"
        avoid = _avoid_pattern(directives.avoid)
        applied: list[str] = []

        raw_title = clean_title(topic.get("title"))
        seed_title = raw_title or str(topic.get("trend_id") or "")
        rng = random.Random(topic_seed(seed_title))
        title_spoken = strip_emoji(raw_title)
        if not count_words(title_spoken):
            title_spoken = ""  # nothing to say ("🔥🔥🔥", ")["): the beats fall back to the summary
        summary = clean_text(topic.get("summary"), keep_lines=True)
        keywords = [strip_emoji(clean_text(k)) for k in topic.get("keywords") or [] if isinstance(k, str)]
        keywords = [k for k in keywords if count_words(k)]
        angle = strip_emoji(clean_text(topic.get("angle")))
        related = [r for r in topic.get("related") or [] if isinstance(r, dict) and clean_text(r.get("title"))]
        source = clean_text(topic.get("source"))

        theme_target = int(theme.get("target_seconds") or 30)
        target = round(theme_target * directives.length_factor)
        if directives.length_factor != 1.0:
            word = "shorter" if directives.length_factor < 1 else "longer"
            applied.append(f"{word}: target {theme_target} s -> {max(target, MIN_TARGET_SECONDS)} s")
        if target < MIN_TARGET_SECONDS:
            applied.append(
                f"target {target} s raised to {MIN_TARGET_SECONDS} s: the least a hook, 3 beats and a call to action need"
            )
            target = MIN_TARGET_SECONDS
        budget = round(target * wps)
        # beats: the theme may fix the count (settings.script_generation.beats), else one per ~10 s
        n_beats = min(MAX_BEATS, max(MIN_BEATS, int(settings.get("beats") or round(target / 10))))
        if directives.tone:
            applied.append(f"tone: {tone}")

        # Hook
        subject = self._subject(title_spoken, keywords, directives.avoid)
        hook_text = strip_emoji(clean_text(directives.hook or ""))
        if count_words(hook_text):
            hook = as_sentence(shorten(hook_text, OPERATOR_HOOK_MAX_WORDS))
            trimmed = " (trimmed to 8 words)" if count_words(hook_text) > OPERATOR_HOOK_MAX_WORDS else ""
            applied.append(f'hook replaced: "{hook}"{trimmed}')
        else:
            if directives.hook:
                applied.append(f'hook not replaced: nothing speakable in "{directives.hook[:80]}"')
            hook = self._hook(rng, tone, subject, avoid)

        # Call to action
        cta_text = strip_emoji(clean_text(directives.cta or ""))
        if count_words(cta_text):
            cta = as_sentence(shorten(cta_text, 20))
            cta_headline = headline_from(cta)
            applied.append(f'cta replaced: "{cta}"')
        else:
            if directives.cta:
                applied.append(f'cta not replaced: nothing speakable in "{directives.cta[:80]}"')
            cta, cta_headline = self._choose(rng, [c for c in CTAS[tone] if not _hits(avoid, c[0])] or CTAS[tone])

        # Beats: as many as the duration asks for, but no more than the topic has things to say
        # (the title beat, one per piece of material, one filler at most).
        material = self._material(title_spoken, summary, angle, related)
        n_beats = min(n_beats, max(MIN_BEATS, 2 + len(material.details) + len(material.nexts) + len(material.why)))
        beats_budget = max(budget - count_words(hook) - count_words(cta), n_beats * 8)
        per_beat = beats_budget / n_beats
        spoken_keywords = [
            _spelled(k, [title_spoken, summary]) for k in keywords if count_words(k) <= 3 and len(k) <= 30
        ]
        kw_phrase = _kw_phrase([k for k in spoken_keywords if not _hits(avoid, k)] or ([subject] if subject else []))
        beats, spare = self._plan_beats(
            rng, tone, n_beats, per_beat, title_spoken, material, kw_phrase, f"{title_spoken}\n{summary}"
        )
        self._fit(beats, spare, beats_budget, per_beat)

        # Title, hashtags, description
        title = clean_title(directives.title) if directives.title else raw_title
        if directives.title:
            applied.append(f'title replaced: "{shorten(title, 40, TITLE_MAX_CHARS)}"')
        title = (
            shorten(title, 40, TITLE_MAX_CHARS)
            or shorten(title_spoken, 40, TITLE_MAX_CHARS)
            or "Today's trending story"
        )
        hashtags = self._hashtags(
            topic, [_spelled(k, [title_spoken, summary]) for k in keywords], theme, directives.hashtags
        )
        if directives.hashtags == "none":
            applied.append("no hashtags")
        elif directives.hashtags == "more":
            applied.append(f"more hashtags: {len(hashtags)}")
        description = self._description(summary, raw_title, topic, related, source)

        segments = [{"id": "hook", "narration": hook, "headline": headline_from(hook)}]
        for i, beat in enumerate(beats, start=1):
            headline = self._beat_headline(beat, title_spoken)
            segments.append({"id": f"beat{i}", "narration": beat.narration(), "headline": headline})
        segments.append({"id": "cta", "narration": cta, "headline": cta_headline})

        script = {
            "title": title,
            "hook": hook,
            "segments": segments,
            "cta": cta,
            "hashtags": hashtags,
            "description": description,
        }
        if avoid is not None:
            self._apply_avoid(script, avoid, directives.avoid, applied)
        if script["hashtags"]:  # added last, so an avoided word cannot survive inside a tag
            script["description"] += "\n\n" + " ".join(script["hashtags"])
        for clause in directives.not_understood:
            applied.append(f'noted, no automatic rule: "{clause[:200]}"')

        script.update(
            {
                "target_seconds": target,
                "word_count": sum(count_words(s["narration"]) for s in script["segments"]),
                "words_per_second": wps,
                "notes_applied": applied,
                "writer": self.name,
            }
        )
        return script

    # -- pieces -----------------------------------------------------------------------------
    @staticmethod
    def _choose(rng: random.Random, options: list[Any]) -> Any:
        return options[rng.randrange(len(options))]

    @staticmethod
    def _subject(title: str, keywords: list[str], avoid: list[str]) -> str:
        """A 1-3 word name for what the story is about, spelled as the title spells it."""
        avoided = {w.lower() for w in avoid}
        for kw in sorted(keywords, key=lambda k: (-len(k.split()), -len(k))):
            if kw.lower() in avoided or count_words(kw) > 3:
                continue
            m = re.search(rf"(?<!\w){re.escape(kw)}(?!\w)", title, re.IGNORECASE)
            if m and len(m.group(0)) <= 24:
                return m.group(0)
        # A run of capitalised words (a proper name) that is not just the title's first word.
        tokens = re.findall(r"[\w][\w'’.+&-]*", title)
        run: list[str] = []
        for i, tok in enumerate(tokens):
            proper = (tok[:1].isupper() or any(c.isdigit() for c in tok)) and tok.lower() not in STOPWORDS
            if proper and not (i == 0 and tok.lower() in STOPWORDS | {"how", "why", "show", "ask"}):
                if i == 0 and len(tokens) > 1 and not tokens[1][:1].isupper() and tok.isalpha() and tok[1:].islower():
                    continue  # "Scientists discover…": a sentence-initial capital, not a name
                run.append(tok)
                if len(run) == 3:
                    break
            elif run:
                break
        candidate = " ".join(run)
        if candidate and candidate.lower() not in avoided and len(candidate) <= 24:
            return candidate
        return ""

    def _hook(self, rng: random.Random, tone: str, subject: str, avoid: re.Pattern[str] | None) -> str:
        pools = HOOKS[tone]
        if subject:
            options = [t.format(s=subject) for t in pools["subject"]]
            options = [o for o in options if count_words(o) <= HOOK_MAX_WORDS and not _hits(avoid, o)]
            if options and rng.random() < 0.75:
                return as_sentence(self._choose(rng, options))
        plain = [o for o in pools["plain"] if not _hits(avoid, o)] or pools["plain"]
        return self._choose(rng, plain)

    @staticmethod
    def _material(title: str, summary: str, angle: str, related: list[dict[str, Any]]) -> _Material:
        """Sort what the topic offers into roles: details (summary), why (angle), next (coverage)."""
        material = _Material()
        for s in split_sentences(summary):
            if _BOILERPLATE_RE.search(s):
                continue
            s = as_sentence(strip_emoji(s))
            if count_words(s) < 3 or _similar(s, title) or any(_similar(s, d) for d in material.details):
                continue
            material.details.append(s)
            if len(material.details) >= 24:
                break
        if count_words(angle) >= 4:  # a one-word angle ("explainer") is a label, not something to say
            material.why.append(as_sentence(shorten(angle, 30)))
        for r in related[:3]:
            r_title = strip_emoji(clean_title(r.get("title")))
            r_source = strip_emoji(clean_text(r.get("source")))[:60]
            if not r_title or _similar(r_title, title):
                if r_source:
                    material.nexts.append(as_sentence(f"{r_source} is covering the story too"))
                continue
            lead = f"{r_source} is covering it too: " if r_source else "It is in the news elsewhere too: "
            sentence = as_sentence(lead + shorten(r_title, 16))
            material.nexts.append(sentence)
            material.headlines[sentence] = r_title
        return material

    def _plan_beats(
        self,
        rng: random.Random,
        tone: str,
        n: int,
        per_beat: float,
        title: str,
        material: _Material,
        kw_phrase: str,
        corpus: str,
    ) -> tuple[list[_Beat], list[str]]:
        """Give each role its material; a role with nothing to say gets a filler, never twice the same."""
        details, why, nexts = list(material.details), list(material.why), list(material.nexts)
        used: set[str] = set()

        def filler(role: str) -> str:
            pool = FILLERS["next"][tone] if role == "why" and not kw_phrase else FILLERS[role][tone]
            options = [line.format(kw=kw_phrase) for line in pool]
            options = (
                [o for o in options if o not in used]
                or [o for o in (line.format(kw=kw_phrase) for line in FILLERS["next"][tone]) if o not in used]
                or options
            )
            choice = self._choose(rng, options)
            used.add(choice)
            return choice

        beats: list[_Beat] = []
        for role in _ROLE_PLANS[n]:
            fresh = [o for o in OPENERS[role][tone] if not o or o not in used]  # no opener twice
            opener = self._choose(rng, fresh or OPENERS[role][tone])
            used.add(opener)
            if role == "what":
                body = [as_sentence(shorten(title, max(10, int(per_beat))))] if title else []
                if not body:
                    body = [details.pop(0)] if details else [filler("detail")]
            elif role == "detail":
                pool = details or nexts or why
                body = [pool.pop(0)] if pool else [filler("detail")]
            elif role == "why":
                pool = why or (details if len(details) > 1 else [])
                body = [pool.pop(0)] if pool else [filler("why")]
            else:  # next
                pool = nexts or (details if len(details) > 1 else [])
                body = [pool.pop(0)] if pool else [filler("next")]
            if opener and not opener.endswith((".", "?", "!", ":")) and not _connects(body[0], corpus):
                opener = ""  # "Also, Locals love it!": a connective would need a case guess we cannot make
            beats.append(_Beat(role, opener, body, material.headlines.get(body[0], "")))
        # Left-over material extends the beats later (details first, then related coverage); when
        # the topic has too little to say for the target length, unused context lines come last,
        # so a 30 s target does not come out as a 20 s video.
        context = [
            line.format(kw=kw_phrase)
            for role in ("why", "next", "detail")
            for line in FILLERS[role][tone]
            if kw_phrase or "{kw}" not in line
        ]
        return beats, details + nexts + why + [c for c in context if c not in used]

    @staticmethod
    def _fit(beats: list[_Beat], spare: list[str], budget: int, per_beat: float) -> None:
        """Extend short beats with unused sentences, then trim the longest until the total fits."""
        spare = list(spare)
        for beat in beats:  # long single sentences are cut first so one beat cannot eat the budget
            limit = max(8, int(per_beat * 1.4) - count_words(beat.opener))
            beat.body = [as_sentence(shorten(s, limit)) for s in beat.body]
        total = sum(b.words() for b in beats)
        while spare and total < budget * 0.92:
            sentence = spare.pop(0)
            room = budget - total
            if room < 6:
                break
            if count_words(sentence) > room and count_words(shorten(sentence, room)) < max(
                8, count_words(sentence) * 0.6
            ):
                continue  # only a fragment would fit ("Early benchmarks show the NPU running.")
            # Details go to detail beats while they have room, then to whichever beat is shortest.
            fitting = [b for b in beats if b.role == "detail" and b.words() + count_words(sentence) <= per_beat * 1.6]
            target = min(fitting or beats[1:] or beats, key=lambda b: b.words())
            if count_words(sentence) > room:
                sentence = as_sentence(shorten(sentence, room))
            target.body.append(sentence)
            total = sum(b.words() for b in beats)
        guard = 0
        while total > budget and guard < 200:
            guard += 1
            longest = max(beats, key=lambda b: b.words())
            if len(longest.body) > 1:
                longest.body.pop()
            else:
                words = count_words(longest.body[0])
                over = total - budget
                new_len = max(5, words - max(2, over))
                if new_len >= words:
                    break
                longest.body[0] = as_sentence(shorten(longest.body[0], new_len))
            total = sum(b.words() for b in beats)

    @staticmethod
    def _beat_headline(beat: _Beat, title: str) -> str:
        text = beat.headline_hint or (beat.body[0] if beat.body else beat.opener)
        if beat.role == "what" and title:
            text = title
        for candidate in (text, beat.body[0] if beat.body else "", beat.opener):
            headline = headline_from(candidate)
            if count_words(headline):
                return headline
        return "Here's the story"

    @staticmethod
    def _hashtags(topic: dict[str, Any], keywords: list[str], theme: dict[str, Any], mode: str) -> list[str]:
        if mode == "none":
            return []
        limit = HASHTAGS_MORE if mode == "more" else HASHTAGS_DEFAULT
        candidates = [t for t in topic.get("hashtags") or [] if isinstance(t, str)] + keywords
        if mode == "more":
            candidates += [k for k in theme.get("keywords") or [] if isinstance(k, str)] + GENERIC_TAGS
        tags: list[str] = []
        seen: set[str] = set()
        for raw in candidates:
            tag = hashtag(raw)
            if len(tag) < 3 or len(tag) > 40 or tag.lower() in seen:
                continue
            seen.add(tag.lower())
            tags.append(tag)
            if len(tags) >= limit:
                break
        if not tags and mode != "none":
            tags = GENERIC_TAGS[:2]
        return tags

    @staticmethod
    def _description(
        summary: str, title: str, topic: dict[str, Any], related: list[dict[str, Any]], source: str
    ) -> str:
        """Lead paragraph (original wording, emoji kept) and the source links; hashtags come later."""
        lead_sentences = split_sentences(summary)[:2]
        lead = " ".join(lead_sentences) or title
        lead = shorten(lead, 80, 600)
        lines = [lead or "Today's trending story.", "", "Sources:"]
        url = topic.get("url") if isinstance(topic.get("url"), str) else ""
        entries = [(source, title, url)] + [
            (
                clean_text(r.get("source")),
                clean_title(r.get("title")),
                r.get("url") if isinstance(r.get("url"), str) else "",
            )
            for r in related[:4]
        ]
        for src, ttl, link in entries:
            text = " - ".join(p for p in [src, shorten(ttl, 30, 140)] if p)
            line = f"• {text}" + (
                f": {link.strip()}" if link and link.strip().startswith(("http://", "https://")) else ""
            )
            if text or link:
                lines.append(line)
        description = "\n".join(lines)
        if len(description) > DESCRIPTION_MAX_CHARS:
            description = description[: DESCRIPTION_MAX_CHARS - 1].rsplit("\n", 1)[0] + "\n…"
        return description

    @staticmethod
    def _apply_avoid(script: dict[str, Any], pattern: re.Pattern[str], words: list[str], applied: list[str]) -> None:
        """Remove avoided words everywhere the audience sees or hears them."""
        removed = 0
        for key in ("title", "hook", "cta", "description"):
            script[key], n = scrub(script[key], pattern)
            removed += n
        fallbacks = {"hook": "Here's today's big story", "cta": "Follow for more"}
        for seg in script["segments"]:
            seg["narration"], n1 = scrub(seg["narration"], pattern)
            seg["headline"], n2 = scrub(seg["headline"], pattern)
            removed += n1 + n2
            if count_words(seg["narration"]) == 0:
                seg["narration"] = fallbacks.get(seg["id"], "There is more to this story.") + "."
            seg["narration"] = as_sentence(seg["narration"])
            headline = seg["headline"].strip(" ,;:")
            seg["headline"] = headline if count_words(headline) else fallbacks.get(seg["id"], "The story")
        script["hook"] = script["segments"][0]["narration"]
        script["cta"] = script["segments"][-1]["narration"]
        kept = [t for t in script["hashtags"] if not any(w.lower() in t.lower() for w in words)]
        removed += len(script["hashtags"]) - len(kept)
        script["hashtags"] = kept
        script["title"] = script["title"].strip() or "Today's trending story"
        quoted = ", ".join(f'"{w}"' for w in words)
        applied.append(f"avoid {quoted}: {removed} removed")


def _hits(pattern: re.Pattern[str] | None, text: str) -> bool:
    return bool(pattern and pattern.search(text))


def _kw_phrase(keywords: list[str]) -> str:
    words = [k for k in keywords if count_words(k) <= 3][:2]
    if not words:
        return ""
    return words[0] if len(words) == 1 else f"{words[0]} and {words[1]}"


def _spelled(keyword: str, texts: list[str]) -> str:
    """The keyword as the story spells it ("ai" -> "AI"), so TTS and cards get the right case."""
    for text in texts:
        m = re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text, re.IGNORECASE)
        if m:
            return m.group(0)
    return keyword
