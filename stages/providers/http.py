"""HTTP for network providers: one place that maps responses to the engine's error kinds.

* timeouts, connection errors, 429 and 5xx are transient; a short in-call retry (tenacity,
  exponential with jitter, a small total budget well inside the stage's time limit) absorbs
  blips, then ``TransientStageError`` carries ``Retry-After`` to the orchestrator's backoff;
* 400/401/403/404/422 and quota exhaustion are permanent, with a hint naming the setting to fix;
* secrets (keys, tokens) never appear in messages: ``masked`` scrubs them from any text.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay

from stages.base import PermanentStageError, StageContext, TransientStageError

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
USER_AGENT = "Trendreel/1.0 (+short-video console)"
T = TypeVar("T")
_QUOTA = re.compile(
    r"quota|insufficient_quota|billing|credits? (?:exhausted|exceeded)|limit exceeded for the month", re.I
)


def masked(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, secret[:2] + "…")
    return text


def provider_setting(
    ctx: StageContext, provider: str, name: str, env: str | None = None, *, required: bool = False, default: Any = None
) -> Any:
    """``theme.settings[stage][provider][name]``, else the environment variable, else ``default``.

    A missing required value (a credential, a URL) is a permanent error naming both places to set it.
    """
    block = ctx.stage_settings.get(provider)
    value = block.get(name) if isinstance(block, dict) else None
    if value in (None, "") and env:
        value = os.environ.get(env)
    if value in (None, ""):
        if required:
            raise PermanentStageError(
                f"{provider}: missing {name}", hint=f"set {setting_path(ctx, provider, name, env)}"
            )
        return default
    return value


def setting_path(ctx: StageContext, provider: str, name: str, env: str | None = None) -> str:
    return f'theme.settings["{ctx.stage}"]["{provider}"]["{name}"]' + (
        f" or the {env} environment variable" if env else ""
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_after_seconds(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def _body_excerpt(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable body
        return ""
    return " ".join(text.split())[:300]


def check(
    response: httpx.Response, *, provider: str, hint_setting: str, secrets: Iterable[str | None] = ()
) -> httpx.Response:
    """Raise the engine's error for a failed response; return it unchanged when it succeeded."""
    status = response.status_code
    if status < 400:
        return response
    secrets = list(secrets)
    detail = masked(_body_excerpt(response), secrets)
    what = f"{provider} answered HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429 and _QUOTA.search(detail):
        raise PermanentStageError(
            what, hint=f"the {provider} account is out of quota; top it up or change {hint_setting}"
        )
    if status == 429 or status >= 500 or status == 408:
        raise TransientStageError(what, retry_after=retry_after_seconds(response))
    if status in (401, 403):
        raise PermanentStageError(what, hint=f"check the {provider} credentials ({hint_setting})")
    if status == 404:
        raise PermanentStageError(what, hint=f"check the {provider} URL or model/voice name ({hint_setting})")
    raise PermanentStageError(what, hint=f"the {provider} request was refused; check {hint_setting}")


def final(exc: TransientStageError) -> TransientStageError:
    """Mark a transient error as not worth an in-call retry (the stage's own retry still applies),
    e.g. a timeout after the full read timeout was already spent."""
    exc.final = True  # type: ignore[attr-defined]
    return exc


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientStageError) and not getattr(exc, "final", False)


def retrying(
    call: Callable[[], T],
    *,
    ctx: StageContext | None = None,
    attempts: int = 3,
    budget: float = 20.0,
    max_wait: float = 5.0,
) -> T:
    """``call()`` with the providers' in-call retry policy.

    A ``TransientStageError`` (not marked ``final``) is retried up to ``attempts`` times within
    ``budget`` seconds, after the error's Retry-After or a full-jitter exponential pause of at most
    ``max_wait``. A Retry-After longer than ``max_wait`` is not waited for here: the error goes to
    the orchestrator at once, which schedules the next attempt no earlier than it. Cancel is
    checked before every try.
    """

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return after
        return random.uniform(0, min(max_wait, 0.25 * 2**state.attempt_number))

    def give_up_early(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        return after is not None and after > max_wait

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger = ctx.logger if ctx is not None else logging.getLogger("trendreel.http")
        logger.info("%s; retrying in %.1fs", getattr(exc, "message", exc), state.upcoming_sleep)

    for attempt in Retrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(max(1, attempts)) | stop_after_delay(budget) | give_up_early,
        wait=wait,
        before_sleep=log_retry,
        reraise=True,
    ):
        with attempt:
            if ctx is not None:
                ctx.check_cancelled()
            return call()
    raise AssertionError("unreachable")  # pragma: no cover


def request(
    ctx: StageContext | None,
    method: str,
    url: str,
    *,
    provider: str,
    hint_setting: str,
    secrets: Iterable[str | None] = (),
    client: httpx.Client | None = None,
    attempts: int = 3,
    budget: float = 20.0,
    max_wait: float = 5.0,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call with short in-call retries; errors mapped to the engine's kinds.

    A Retry-After longer than ``max_wait`` is not waited for here: the stage fails transient and
    the orchestrator schedules the next attempt no earlier than it.
    """
    secrets = list(secrets)
    own = client is None
    client = client or httpx.Client(timeout=DEFAULT_TIMEOUT, headers={"User-Agent": USER_AGENT}, follow_redirects=True)

    def once() -> httpx.Response:
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientStageError(f"{provider} timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientStageError(masked(f"{provider} unreachable: {exc}", secrets)) from None
        return check(response, provider=provider, hint_setting=hint_setting, secrets=secrets)

    try:
        return retrying(once, ctx=ctx, attempts=attempts, budget=budget, max_wait=max_wait)
    finally:
        if own:
            client.close()
