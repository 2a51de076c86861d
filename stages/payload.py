"""Reading what the network (or a feed file) hands us, assuming it is hostile.

Every parser of a response - feeds, LLM answers, TTS alignments, Pexels listings, YouTube and
webhook answers - reads values through these helpers, so a wrong type, an absurd number or a
pathological document costs at most that value (or that item), never the stage:

* ``loads``: JSON with a size cap, a nesting cap (checked without recursion; the C decoder's own
  recursion limit is caught too), ``NaN``/``Infinity`` and numbers too large to be real turned into
  ``None``/infinities that the number readers clamp, and Python's int-digit limit never reached;
* ``as_int`` / ``as_float``: finite numbers only, clamped to a range; ``True`` is not 1, "12" is 12,
  ``1e999`` is the top of the range, ``NaN`` is nothing;
* ``as_http_url``: an absolute http(s) URL (relative ones resolved against a base) or "";
* ``as_list`` / ``as_dict``: a list is a list (a Reddit ``children`` of ``5`` is no listing);
* ``json_safe``: a value that may be stored as JSON on every database (no NUL characters, no
  non-finite numbers, bounded depth and size);
* ``Skips``: bad items are skipped and counted with their reason, so the output says what was lost.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_DEPTH = 64  # no feed, listing or API answer we read nests deeper than a handful of levels
MAX_JSON_BYTES = 10 * 1024 * 1024
_MAX_INT_DIGITS = 30  # a 30-digit engagement count is an attack, not a number


class PayloadError(ValueError):
    """The document cannot be read as what it claims to be (the caller names the source)."""


def _int(text: str) -> int | float:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def _float(text: str) -> float:
    return float(text)  # "1e999" -> inf: the number readers clamp it


def _constant(name: str) -> None:
    return None  # NaN, Infinity, -Infinity: not JSON, and not a number anyone meant


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a decoded JSON value, without recursion; stops counting past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def decode(content: bytes) -> str:
    """JSON text from bytes: UTF-8 (a BOM tolerated), or UTF-16/32 by their BOM."""
    if content[:3] == b"\xef\xbb\xbf":
        return content[3:].decode("utf-8")
    if content[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        return content.decode("utf-32")
    if content[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return content.decode("utf-16")
    return content.decode("utf-8")


def loads(content: bytes | str, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Decode a JSON document within limits; ``PayloadError`` says what is wrong."""
    if len(content) > max_bytes:
        raise PayloadError(f"the document is larger than {max_bytes // 1024} KiB")
    try:
        text = decode(content) if isinstance(content, bytes) else content
    except UnicodeDecodeError as exc:
        raise PayloadError(f"the document is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise PayloadError(f"the document nests deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, and anything a hostile number could still raise
        raise PayloadError(f"not valid JSON ({exc})") from None
    if depth(value, max_depth) > max_depth:
        raise PayloadError(f"the document nests deeper than {max_depth} levels")
    return value


# -- values --------------------------------------------------------------------------------------
def as_float(value: Any, *, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A finite number clamped to [low, high]; numeric strings count; booleans, NaN and the rest do not."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        if not text or len(text) > 40:
            return None
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, int):
        if value > high:
            return high
        if value < low:
            return low
        try:
            return float(value)
        except OverflowError:  # a whole number beyond any float, in an unbounded range
            return math.inf if value > 0 else -math.inf
    if not isinstance(value, float) or math.isnan(value):
        return None
    return min(high, max(low, value))


def as_int(value: Any, *, low: int = 0, high: int = 2**31 - 1, default: int | None = None) -> int | None:
    """A whole number clamped to [low, high] (``1e999`` is ``high``); ``default`` when there is none."""
    number = as_float(value, low=low, high=high)
    if number is None:
        return default
    if math.isinf(number):
        return high if number > 0 else low
    return int(number)


def as_http_url(value: Any, base: str | None = None, *, max_length: int = 2000) -> str:
    """An absolute http(s) URL from a payload value, resolved against ``base``; "" if there is none."""
    if not isinstance(value, str):
        return ""
    url = value.strip()
    if not url or len(url) > max_length or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return ""
    try:
        if base and not urlsplit(url).scheme:
            url = urljoin(base, url)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return ""
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return ""
    return url if len(url) <= max_length else ""


def as_list(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def as_dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def json_safe(value: Any, *, max_depth: int = 8, max_items: int = 200, max_text: int = 2000) -> Any:
    """A copy of ``value`` every database stores as JSON: text without NUL, finite numbers, bounded.

    Deeper or longer parts are cut; anything that is not JSON (bytes, objects) becomes its type name.
    """

    def clean(node: Any, level: int) -> Any:
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, int):
            return max(-(2**53), min(2**53, node))
        if isinstance(node, float):
            return node if math.isfinite(node) else None
        if isinstance(node, str):
            return node.replace("\x00", "")[:max_text]
        if level >= max_depth:
            return None
        if isinstance(node, dict):
            return {str(k).replace("\x00", "")[:200]: clean(v, level + 1) for k, v in list(node.items())[:max_items]}
        if isinstance(node, (list, tuple)):
            return [clean(v, level + 1) for v in list(node)[:max_items]]
        return type(node).__name__

    return clean(value, 0)


class Skips(Counter):
    """Items a parser left out, by reason ("title is not text": 3)."""

    def add(self, reason: str) -> None:
        self[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.values())

    def summary(self, limit: int = 4) -> str:
        parts = [f"{reason} ({count})" for reason, count in self.most_common(limit)]
        if len(self) > limit:
            parts.append("...")
        return ", ".join(parts)
