"""Text handling every stage shares: cleaning, one sentence splitter, stop words, invisible characters.

Why one module: the writer counts the sentences the voice then speaks, analysis matches the words the
feeds stored, and every one of them must agree on what a sentence, a word and a "clean" title are.
Two splitters with different abbreviation lists once made the script and its voiceover disagree.

* ``strip_invisible``: zero-width characters, the BOM, soft hyphens and bidi controls (U+202E turns a
  title around on screen) go; a zero-width joiner stays only inside an emoji sequence.
* ``plain_text``: any value from a network payload to one line of clean text (HTML removed,
  entities resolved, unresolved entity text such as ``&lol9;`` dropped, double-encoded UTF-8
  repaired with ftfy, control characters gone), cut to a limit; a value that is not text is "".
* ``clean_text``: the same for prose a writer reuses, keeping line breaks (sentence boundaries)
  on request and dropping URLs.
* ``split_sentences``: the one sentence splitter (abbreviations and initials do not end a sentence,
  nor does a full stop followed by a lower-case word; a line break always does).
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser
from typing import Any

import ftfy

INPUT_MAX_CHARS = 20_000  # a feed's summary can be a whole article; nothing past this is read

# -- invisible characters ----------------------------------------------------------------------
ZWJ = "\u200d"
_EMOJI_EXTRA = {ZWJ, "\ufe0e", "\ufe0f", "\u20e3"}  # ZWJ, variation selectors, keycap
# Format (Cf) characters are invisible by definition; these are the ones feeds actually carry.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SPACE_RE = re.compile(r"[ \t\r\f\v\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")


def is_emoji(ch: str) -> bool:
    """Pictographs, dingbats, flags, skin tones and the joiners that glue emoji sequences together."""
    if ch in _EMOJI_EXTRA:
        return True
    cp = ord(ch)
    if 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:  # skin tones, tag sequences
        return True
    return unicodedata.category(ch) in {"So", "Cs", "Co", "Cn"}


def _pictograph(ch: str) -> bool:
    return unicodedata.category(ch) == "So" or 0x1F3FB <= ord(ch) <= 0x1F3FF or ch in "\ufe0e\ufe0f"


def strip_invisible(text: str, *, keep_lines: bool = False) -> str:
    """``text`` without control, format (zero-width, BOM, soft hyphen, bidi) and private characters.

    Tabs become spaces (line breaks too, unless ``keep_lines``). A zero-width joiner survives only
    between two pictographs (👨‍👩‍👧), and emoji tag characters only after one (flag sequences).
    """
    if not text:
        return ""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == "\n":
            out.append("\n" if keep_lines else " ")
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc":
            out.append(" " if ch in "\t\r\x0b\x0c\x85" else "")
        elif cat == "Cf":
            if (
                ch == ZWJ
                and out
                and _pictograph(out[-1])
                and i + 1 < len(text)
                and _pictograph(text[i + 1])
                or 0xE0020 <= ord(ch) <= 0xE007F
                and out
                and (_pictograph(out[-1]) or 0xE0020 <= ord(out[-1]) <= 0xE007F)
            ):
                out.append(ch)
        elif cat in ("Co", "Cs"):
            continue  # private-use and lone surrogates: no glyph anyone shares
        else:
            out.append(ch)
    return "".join(out)


def has_invisible(text: str) -> bool:
    """True when ``text`` holds a character ``strip_invisible`` would remove (tests and checks)."""
    return strip_invisible(text, keep_lines=True) != text


# -- HTML, entities ----------------------------------------------------------------------------
_BLOCK_TAGS = {"p", "br", "li", "div", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "blockquote", "pre", "ul", "ol"}
# What html.unescape leaves behind is not an entity anyone can resolve: "&lol9;", "&#xZZ;".
_UNRESOLVED_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9._-]{0,31}|#[0-9A-Za-z]{1,10});")
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]*>")


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


def html_to_text(raw: str) -> str:
    """The text of an HTML fragment, block elements on their own lines, entities resolved once."""
    text = raw[:INPUT_MAX_CHARS]
    if "<" in text and ">" in text:
        parser = _TextExtractor()
        try:
            parser.feed(text)
            parser.close()
            text = "".join(parser.parts)
        except (AssertionError, ValueError):  # html.parser gives up on some malformed markup ("<![x")
            text = _TAG_RE.sub(" ", text)
    return text


def drop_unresolved_entities(text: str) -> str:
    return _UNRESOLVED_ENTITY.sub("", text) if "&" in text else text


def _lines(text: str, keep_lines: bool) -> str:
    text = _SPACE_RE.sub(" ", text)
    lines = [line.strip() for line in text.split("\n")]
    if keep_lines:
        return "\n".join(line for line in lines if line)
    return " ".join(line for line in lines if line)


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, on a word when one ends in the second half, with "…"."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if " " in head[limit // 2 :]:
        head = head[: head.rfind(" ")]
    return head.rstrip() + "…"


def plain_text(value: Any, limit: int | None = None, *, keep_lines: bool = False) -> str:
    """A payload value as clean text, or "" when it is not text at all.

    Only ``str`` counts: a list, a number or ``True`` in a title field is a broken feed, never a
    title (their Python repr once became a video's topic). HTML is reduced to its text, entities are
    resolved (and what cannot be resolved is dropped), double-encoded UTF-8 ("CafÃ©") is repaired,
    invisible characters are removed and white space collapsed.
    """
    if not isinstance(value, str) or not value:
        return ""
    text = html.unescape(html_to_text(value))
    text = drop_unresolved_entities(text)
    if not text.isascii():
        text = ftfy.fix_encoding(text)
    text = unicodedata.normalize("NFC", strip_invisible(text, keep_lines=keep_lines))
    text = _lines(text, keep_lines)
    return cut(text, limit) if limit is not None else text


def clean_text(raw: Any, *, keep_lines: bool = False) -> str:
    """Plain prose for a writer: HTML removed, entities decoded, URLs dropped, spaces collapsed.

    Bounded work: at most ``INPUT_MAX_CHARS`` are read, whatever the feed sent.
    """
    if not isinstance(raw, str) or not raw:
        return ""
    text = html.unescape(html_to_text(raw))
    text = drop_unresolved_entities(unicodedata.normalize("NFC", text))
    text = _URL_RE.sub("", text)
    text = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cf"} or ch in _EMOJI_EXTRA
    )
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)  # brackets that only held a link
    return _lines(text, keep_lines)


# -- words -------------------------------------------------------------------------------------
# English function words: never a keyword, never the last word of a cut headline.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "amid",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "new",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "onto",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "per",
        "same",
        "says",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "via",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "would",
        "yet",
        "you",
        "your",
        "yours",
    ]
)


def count_words(text: str) -> int:
    """Spoken words: whitespace tokens that contain a letter or digit (a lone dash is not a word)."""
    return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))


def tidy(text: str) -> str:
    """Collapse spaces and fix the punctuation that removing words or emoji leaves behind."""
    text = _SPACE_RE.sub(" ", text)
    text = re.sub(r"\s+([,.;:!?…])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"[,;:]\s*([.!?…])", r"\1", text)
    text = re.sub(r"^[\s,;:.\-–—]+", "", text)
    return text.strip()


def strip_emoji(text: str) -> str:
    """``text`` without emoji, tidied so no double spaces or orphan punctuation remain."""
    if not text:
        return ""
    return tidy("".join(ch for ch in text if not is_emoji(ch)))


# -- sentences ---------------------------------------------------------------------------------
# Words whose trailing period does not end a sentence (English, plus the German ones feeds use).
ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "inc",
        "ltd",
        "co",
        "corp",
        "e.g",
        "i.e",
        "u.s",
        "u.k",
        "u.n",
        "e.u",
        "no",
        "fig",
        "approx",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mio",
        "mrd",
        "nr",
        "ca",
        "bzw",
    ]
)
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")


def split_sentences(text: str) -> list[str]:
    """Sentences of plain text, in order.

    A line break always ends a sentence. ``.``, ``!``, ``?`` and ``…`` (with any closing quote or
    bracket) end one, except: a full stop after a known abbreviation or a single-letter initial
    ("Dr. Smith", "J. K. Rowling", "the U.S. in 2020"), and any stop followed by a lower-case word
    ("Wait... what?", "3 p.m. today"). Pieces without a letter or digit are dropped.
    """
    sentences: list[str] = []
    for line in text.split("\n"):
        line = line.strip()
        start = 0
        for match in _SENTENCE_END.finditer(line):
            following = line[match.end() :].lstrip()[:1]
            if not following:
                break
            if following.islower():
                continue
            before = line[start : match.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            mark = match.group(0).rstrip("\"'”’)]")
            if mark == "." and (last in ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
                continue
            sentences.append(line[start : match.end()].strip())
            start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if any(ch.isalnum() for ch in s)]


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
