"""Counting what an attempt consumes on the network, for the cost ledger (``Usage`` in ``stages.base``).

The runner makes the attempt's ``ctx.usage`` current (``metering(usage)``) around the stage call;
every httpx client made meanwhile (``stages.http.new_client``, the only way one is made) keeps it,
and its transport counts each request it sends - retries and redirect hops included, threads of a
pool too - as one ``api_calls`` of the client's provider, and the request body as ``upload_bytes``
(publish uploads, in practice). Stages need not count calls themselves; providers add what only
they can read (LLM tokens, TTS characters).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import httpx

from stages.base import Usage

_current: ContextVar[Usage | None] = ContextVar("trendreel_usage", default=None)


@contextlib.contextmanager
def metering(usage: Usage) -> Iterator[Usage]:
    """``usage`` is the current attempt's while the block runs (clients made in it count into it)."""
    token = _current.set(usage)
    try:
        yield usage
    finally:
        _current.reset(token)


def current() -> Usage | None:
    return _current.get()


def count_request(usage: Usage | None, provider: str, request: httpx.Request) -> None:
    """One request sent: an API call of ``provider``, and its body's bytes."""
    if usage is None:
        return
    sent = request.headers.get("content-length", "")
    body = int(sent) if sent.isdigit() else 0
    if body:
        usage.add(provider, api_calls=1, upload_bytes=body)
    else:
        usage.add(provider, api_calls=1)
