"""What the social platforms' publishers share (TikTok, Instagram; YouTube keeps its title and tags
in ``stages.providers.youtube``): a client base (``PlatformClient``: URL settings, a token got once
a run, the platform's error hook), a post caption fitted to a platform's limits *before* anything
is sent, a per-platform check of the video against the platform's limits, and waiting for a
platform's processing with a deadline (cancel checked while waiting).

Why fit rather than refuse: the caption is machine-written from the script (title, hook,
description, hashtags); a platform limit is a property of the platform, not an operator mistake,
so the publisher trims what it made (words first, hashtags last) and the output says what went
out. What cannot be fitted (no text at all, a video longer than the account may post) is a
permanent error with a hint, raised before the upload starts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from stages import egress, http
from stages.base import PermanentStageError, StageContext, TransientStageError
from stages.payload import as_float
from stages.publish import CAPTION_STYLES
from stages.text import plain_text, split_sentences

T = TypeVar("T")
_TAG_WORD = re.compile(r"\w+", re.UNICODE)
_MENTION = re.compile(r"(?<![\w@])@(?=\w)")


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units: how TikTok counts a title ("2200 UTF-16 runes")."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Limits:
    """A platform's caption limits (cited where each platform module defines its own)."""

    platform: str
    max_chars: int
    max_hashtags: int
    max_mentions: int | None = None
    length: Callable[[str], int] = len


@dataclass(frozen=True)
class Caption:
    text: str
    hashtags: list[str]
    style: str
    trimmed: bool  # words or hashtags were dropped to fit


def hashtag(raw: Any) -> str:
    """``"#Open Source"`` -> ``"#OpenSource"``: a platform tag is one run of letters, digits and _."""
    words = _TAG_WORD.findall(plain_text(raw) if isinstance(raw, str) else "")
    return "#" + "".join(words) if words else ""


def opening(metadata: dict[str, Any], style: str) -> str:
    """The caption's first line for a caption style: the spoken hook, the title or the description's
    first sentence (``stages.publish.CAPTION_STYLES``); the title when the style has nothing."""
    title = plain_text(metadata.get("title"))
    if style == "hook":
        text = plain_text(metadata.get("hook"))
    elif style == "summary":
        sentences = split_sentences(plain_text(metadata.get("description"), keep_lines=True))
        text = sentences[0] if sentences else ""
    else:
        text = title
    return text or title


def caption(metadata: dict[str, Any], limits: Limits) -> Caption:
    """The post caption: the opening line for ``metadata["caption_style"]``, then the hashtags,
    fitted to ``limits`` (hashtags beyond the count dropped, then words of the opening line, then
    hashtags from the end); @mentions beyond the platform's count lose their @."""
    style = metadata.get("caption_style") if metadata.get("caption_style") in CAPTION_STYLES else "title"
    text = opening(metadata, style)
    tags: list[str] = []
    for raw in metadata.get("hashtags") or []:
        tag = hashtag(raw)
        if len(tag) > 1 and tag.lower() not in {t.lower() for t in tags}:
            tags.append(tag)
    trimmed = len(tags) > limits.max_hashtags
    tags = tags[: limits.max_hashtags]
    if limits.max_mentions is not None:
        seen = 0

        def unmention(match: re.Match[str]) -> str:
            nonlocal seen
            seen += 1
            return "@" if seen <= limits.max_mentions else ""

        text = _MENTION.sub(unmention, text)

    full = text.split()

    def render(words: list[str]) -> str:
        if words and len(words) < len(full):  # a cut opening line ends in an ellipsis
            words = [*words[:-1], words[-1].rstrip(",;:.") + "…"]
        return "\n\n".join(p for p in (" ".join(words), " ".join(tags)) if p)

    words = list(full)
    while tags and limits.length(" ".join(tags)) > limits.max_chars // 2:
        tags.pop()  # hashtags never take more than half the caption
        trimmed = True
    while words and limits.length(render(words)) > limits.max_chars:
        words.pop()
        trimmed = True
    while tags and limits.length(render(words)) > limits.max_chars:
        tags.pop()
        trimmed = True
    result = render(words)
    if not result.strip():
        raise PermanentStageError(
            f"{limits.platform}: nothing to put in the caption (no title, hook or hashtags)",
            hint="re-run from script_generation: the script has no title",
        )
    return Caption(text=result, hashtags=tags, style=style, trimmed=trimmed)


def check_duration(platform: str, seconds: Any, *, low: float, high: float, hint: str) -> None:
    """A video outside the platform's length range is refused before any byte is sent."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return  # composition did not say; the platform will judge
    if not low <= float(seconds) <= high:
        raise PermanentStageError(
            f"{platform}: the video is {float(seconds):.1f} s; {platform} takes {low:g} to {high:g} s", hint=hint
        )


def check_choice(platform: str, name: str, value: Any, allowed: tuple[str, ...] | list[str], *, setting: str) -> str:
    """A setting that must be one of the platform's values (privacy levels...)."""
    if value not in allowed:
        raise PermanentStageError(
            f"{platform}: {name} {str(value)[:40]!r} is not one of {', '.join(allowed)}",
            hint=f"set {setting}",
        )
    return str(value)


def as_flag(platform: str, name: str, value: Any) -> bool:
    """A boolean setting: true/false (JSON) or "true"/"false"; anything else is a mistake."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise PermanentStageError(
        f"{platform}: {name} must be true or false, got {str(value)[:40]!r}",
        hint=f'set theme.settings["publish"]["{platform}"]["{name}"] to true or false',
    )


def seconds(platform: str, name: str, value: Any) -> float:
    """A wait setting in seconds (0 allowed: tests poll without pausing), at most a day."""
    number = as_float(value, low=0.0, high=86_400.0)
    if number is None or isinstance(value, bool):
        raise PermanentStageError(
            f"{platform}: {name} must be a number of seconds, got {str(value)[:40]!r}",
            hint=f'fix theme.settings["publish"]["{platform}"]["{name}"]',
        )
    return number


def wait_for(
    ctx: StageContext,
    probe: Callable[[], T | None],
    *,
    interval: float,
    timeout: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``probe()`` until it returns something, every ``interval`` seconds, for at most ``timeout``.

    Past the deadline the stage fails transient: the session stays in the Publication row, and
    the next attempt asks the platform where it stands instead of uploading again.
    """
    deadline = clock() + timeout
    while True:
        ctx.check_cancelled()
        found = probe()
        if found is not None:
            return found
        left = deadline - clock()
        if left <= 0:
            raise TransientStageError(
                f"{what}: still processing after {timeout:g} s; the next attempt asks again (nothing is sent twice)",
                retry_after=max(interval, 30.0),
            )
        pause = min(interval, left)
        while pause > 0:  # sleep in slices so a cancel is seen within a quarter second
            ctx.check_cancelled()
            step = min(0.25, pause)
            time.sleep(step)
            pause -= step


class PlatformClient(http.HttpProvider):
    """A platform's API with the job's credentials (TikTok, Instagram): its URL settings checked,
    one access token per run (``adopt``: kept out of every message, and bound to the platform's
    hosts when it was made from an environment credential), and a client that runs the platform's
    error mapping (``classify``) on every answer."""

    hosts: tuple[str, ...] = ()  # the platform's default endpoints: where environment credentials may go
    classify: Callable[[httpx.Response], None] = staticmethod(lambda response: None)
    timeout = 60.0

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx)
        self._token: str | None = None

    @property
    def secret_values(self) -> list[str]:
        return [*super().secret_values, *([self._token] if self._token else [])]

    def url_setting(self, name: str, default: str, *, base: bool = True) -> str:
        """An http(s) URL setting; a ``base`` one without its trailing slash (paths are appended)."""
        url = str(self.setting(name, default=default))
        url = url.rstrip("/") if base else url
        if not url.startswith(("http://", "https://")):
            raise PermanentStageError(
                f"{self.name}: {name} {url[:80]!r} is not http(s)",
                hint=f'leave theme.settings["publish"]["{self.name}"]["{name}"] out',
            )
        return url

    def credential(self, name: str, env: str, url: str, *, required: bool = False) -> str | None:
        return self.secret(name, env, url=url, hosts=self.hosts, refuse=True, required=required)

    def adopt(self, token: str, *, made_from: str | None, label: str) -> str:
        """Use ``token`` (refreshed or exchanged from the credential ``made_from``) for this run."""
        self._token = token
        bound = next((c for c in self.secrets if c.value == made_from and c.hosts is not None), None)
        if bound is not None:  # made from an environment credential: it stays on the platform's hosts too
            self.secrets.append(egress.bind(token, label, *self.hosts))
        return token

    def client(self) -> httpx.Client:
        return self.new_client(self.timeout, follow_redirects=False, event_hooks={"response": [type(self).classify]})
