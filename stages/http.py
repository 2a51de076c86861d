"""HTTP for every network provider and the feed reader: one client, one error mapping, one base class.

* ``new_client()`` is the only way an httpx client is made: on ``stages.egress``'s guarded transport
  (public addresses only, unless ``TRENDREEL_FETCH_ALLOW`` says otherwise; bound credentials never
  leave their hosts), with a User-Agent and timeouts;
* timeouts, connection errors, 429 and 5xx are transient; a short in-call retry (tenacity,
  exponential with jitter, a small total budget well inside the stage's time limit) absorbs
  blips, then ``TransientStageError`` carries ``Retry-After`` to the orchestrator's backoff;
* 400/401/403/404/422 and quota exhaustion are permanent, with a hint naming the setting to fix;
* a response body is read up to a cap (``MAX_BODY``), never whole whatever its size, and its JSON
  through ``stages.payload.loads`` (size, depth, hostile numbers);
* secrets (keys, tokens) never appear in messages: ``masked`` scrubs them from any text;
* ``HttpProvider`` is the base every vendor client shares (healthchecks' ``Transport``): its
  settings, its credentials (``provider_secret``: an environment key stays on its hosts), its
  client and its calls.
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

from stages import egress
from stages.base import PermanentStageError, StageContext, TransientStageError
from stages.payload import PayloadError, as_float, loads

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
USER_AGENT = "Trendreel/1.0 (+short-video console)"
MAX_BODY = 32 * 1024 * 1024  # an API answer (JSON, one sentence of audio) is far smaller
T = TypeVar("T")
_QUOTA = re.compile(
    r"quota|insufficient_quota|billing|credits? (?:exhausted|exceeded)|limit exceeded for the month", re.I
)


def usage_key(provider: str, base_url: str, home: str, model: str = "") -> str:
    """Who bills a provider's usage in the cost ledger (``jobs.prices``): ``provider`` on its own
    ``home`` host, else the host it was pointed at (a self-hosted server, a gateway), then
    ``/model``: ``openai/gpt-4o-mini``, ``localhost:11434/llama3.1:8b``."""
    host = (httpx.URL(base_url).netloc.decode("ascii", "replace") or "").lower()
    who = provider if host in ("", home) else host
    return f"{who}/{model}" if model else who


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


def float_setting(ctx: StageContext, provider: str, name: str, default: float) -> float:
    """A positive number setting (timeouts, rates), or a permanent error naming where to fix it."""
    raw = provider_setting(ctx, provider, name, default=default)
    value = as_float(raw)
    if value is None:
        raise PermanentStageError(
            f"{provider}: {name} must be a number, got {str(raw)[:40]!r}",
            hint=f"fix {setting_path(ctx, provider, name)}",
        )
    if not 0 < value < math.inf:
        raise PermanentStageError(
            f"{provider}: {name} must be positive", hint=f"fix {setting_path(ctx, provider, name)}"
        )
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


def new_client(
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    *,
    follow_redirects: bool = True,
    max_redirects: int = 5,
    secrets: Iterable[egress.Secret | None] = (),
    provider: str = "",
    headers: dict[str, str] | None = None,
    event_hooks: dict[str, list[Callable[..., Any]]] | None = None,
) -> httpx.Client:
    """An httpx client on the guarded transport (see ``stages.egress``).

    ``secrets`` are the bound credentials this client will carry: a request that would take one
    to a host it is not bound to is refused by the transport, redirects included.
    """
    if not isinstance(timeout, httpx.Timeout):
        timeout = httpx.Timeout(timeout, connect=min(5.0, timeout))
    return httpx.Client(
        timeout=timeout,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        event_hooks=event_hooks,
        # A list is shared, not copied: a credential the provider learns later (a refreshed token) is
        # guarded too.
        transport=egress.GuardedTransport(
            secrets=secrets if isinstance(secrets, list) else list(secrets), provider=provider
        ),
    )


def read_capped(response: httpx.Response, max_bytes: int, *, what: str) -> bytes:
    """The body of a streamed response, or ``PermanentStageError`` once it passes ``max_bytes``."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PermanentStageError(f"{what} answered with {int(declared) // 1024} KiB, over {max_bytes // 1024} KiB")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise PermanentStageError(f"{what} answered with more than {max_bytes // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


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
    max_bytes: int = MAX_BODY,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call with short in-call retries; errors mapped to the engine's kinds; the body read
    up to ``max_bytes``.

    A Retry-After longer than ``max_wait`` is not waited for here: the stage fails transient and
    the orchestrator schedules the next attempt no earlier than it.
    """
    secrets = list(secrets)
    own = client is None
    client = client or new_client(provider=provider)

    def once() -> httpx.Response:
        try:
            sent = client.send(client.build_request(method, url, **kwargs), stream=True)
            try:
                body = read_capped(sent, max_bytes, what=provider)
            finally:
                sent.close()
        except httpx.TimeoutException as exc:
            raise TransientStageError(f"{provider} timed out ({type(exc).__name__})") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise PermanentStageError(
                masked(f"{provider}: cannot use the URL ({exc})", secrets), hint=f"check {hint_setting}"
            ) from None
        except httpx.TooManyRedirects:
            raise PermanentStageError(
                f"{provider}: the URL redirects in a loop", hint=f"check {hint_setting}"
            ) from None
        except httpx.TransportError as exc:
            raise TransientStageError(masked(f"{provider} unreachable: {exc}", secrets)) from None
        except httpx.HTTPError as exc:  # a broken compressed body and the like
            raise TransientStageError(masked(f"{provider}: reading the answer failed: {exc}", secrets)) from None
        response = httpx.Response(sent.status_code, headers=sent.headers, content=body, request=sent.request)
        return check(response, provider=provider, hint_setting=hint_setting, secrets=secrets)

    try:
        return retrying(once, ctx=ctx, attempts=attempts, budget=budget, max_wait=max_wait)
    finally:
        if own:
            client.close()


def read_json(response: httpx.Response, *, provider: str, what: str = "the answer", hint: str = "") -> Any:
    """A response's JSON, read through ``stages.payload.loads`` (size, depth, hostile numbers)."""
    try:
        return loads(response.content)
    except PayloadError as exc:
        raise PermanentStageError(
            f"{provider}: {what} is not JSON ({exc}; HTTP {response.status_code}, {len(response.content)} bytes)",
            hint=hint,
        ) from None


# -- credentials ---------------------------------------------------------------------------------
def provider_secret(
    ctx: StageContext,
    provider: str,
    name: str,
    env: str,
    *,
    url: str,
    hosts: Iterable[str | None] = (),
    required: bool = False,
    refuse: bool | None = None,
) -> egress.Secret | None:
    """A credential: ``theme.settings[stage][provider][name]`` (goes where the theme says), else the
    environment variable ``env``, bound to ``hosts`` (the provider's default endpoints, and base
    URLs that came from the environment too) and ``TRENDREEL_PROVIDER_HOSTS``.

    An environment key that ``url`` is not bound to is never sent there: a provider that needs it
    (``required``, or ``refuse``) fails with a permanent error naming ``TRENDREEL_PROVIDER_HOSTS``;
    one that can work without (a self-hosted OpenAI-compatible server) goes on without it, and the
    log says so.
    """
    block = ctx.stage_settings.get(provider)
    value = block.get(name) if isinstance(block, dict) else None
    if value not in (None, ""):
        return egress.Secret(value=str(value), setting=setting_path(ctx, provider, name))
    raw = os.environ.get(env, "")
    if not raw:
        if required:
            raise PermanentStageError(
                f"{provider}: missing {name}", hint=f"set {setting_path(ctx, provider, name, env)}"
            )
        return None
    secret = egress.bind(raw, env, *hosts)
    if secret.allows(url):
        return secret
    if required if refuse is None else refuse:
        raise secret.refusal(url, provider)
    ctx.logger.warning(
        "%s: %s from the environment is not sent to %s (not one of its hosts; see %s)",
        provider,
        env,
        httpx.URL(url).host,
        egress.PROVIDER_HOSTS_SETTING,
    )
    return None


class HttpProvider:
    """The base of every network provider (healthchecks' ``Transport``): one way to read its
    settings and credentials, make its client and call it.

    Subclasses set ``name`` (the provider's name in the theme's settings) and ``hint_setting``
    (what a 401/404 hint names) and call ``self.request``; ``self.secrets`` collects the
    credentials ``self.secret`` read, so every message is scrubbed of them and the client refuses
    to carry a bound one anywhere else.
    """

    name: str = ""
    hint_setting: str = ""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.secrets: list[egress.Secret] = []

    def setting(self, name: str, env: str | None = None, *, required: bool = False, default: Any = None) -> Any:
        return provider_setting(self.ctx, self.name, name, env, required=required, default=default)

    def secret(
        self,
        name: str,
        env: str,
        *,
        url: str,
        hosts: Iterable[str | None] = (),
        required: bool = False,
        refuse: bool | None = None,
    ) -> str | None:
        found = provider_secret(self.ctx, self.name, name, env, url=url, hosts=hosts, required=required, refuse=refuse)
        if found is None:
            return None
        self.secrets.append(found)
        return found.value

    @property
    def secret_values(self) -> list[str]:
        return [s.value for s in self.secrets]

    def new_client(self, timeout: float, *, follow_redirects: bool = True, **kwargs: Any) -> httpx.Client:
        return new_client(
            timeout, follow_redirects=follow_redirects, secrets=self.secrets, provider=self.name, **kwargs
        )

    def request(self, method: str, url: str, *, client: httpx.Client, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("hint_setting", self.hint_setting)
        return request(self.ctx, method, url, provider=self.name, secrets=self.secret_values, client=client, **kwargs)

    def json(self, response: httpx.Response, what: str = "the answer", hint: str = "") -> Any:
        return read_json(response, provider=self.name, what=what, hint=hint)
