"""The price table of the cost ledger: what one unit of each usage metric costs, per provider.

Plain Python (no models): ``console/settings.py`` validates ``TRENDREEL_PRICES`` with ``parse`` at
start-up, and the runner prices an attempt's usage with ``cost_of`` when it records the attempt.

A table is ``{provider: {metric: price}}`` in US dollars, each price per the metric's ``UNITS``
(per 1M tokens, per 1M characters, per call, per GB, per CPU hour). A usage key is matched to
the longest table key equal to it or a prefix of it ending before ``/``, ``:`` or ``-``: the
price of ``openai/gpt-4o-mini`` also prices ``openai/gpt-4o-mini-2024-07-18``. A metric with no
price costs nothing (the job page shows it as "no price"), so a self-hosted model or a new
provider is free until the table says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from stages.base import Usage

# One price is for this many of the metric's units.
UNITS: dict[str, tuple[Decimal, str]] = {
    "llm_tokens_in": (Decimal(1_000_000), "per 1M tokens"),
    "llm_tokens_out": (Decimal(1_000_000), "per 1M tokens"),
    "tts_characters": (Decimal(1_000_000), "per 1M characters"),
    "api_calls": (Decimal(1), "per call"),
    "upload_bytes": (Decimal(1_000_000_000), "per GB"),
    "render_cpu_seconds": (Decimal(3600), "per CPU hour"),
}
assert set(UNITS) == set(Usage.METRICS)
# Money is kept to a millionth of a dollar (a few tokens of a cheap model still count).
QUANTUM = Decimal("0.000001")
MAX_PRICE = Decimal(1_000_000)
_BOUNDARY = re.compile(r"[/:-]")

Table = dict[str, dict[str, Decimal]]


class PriceError(ValueError):
    """A malformed price table (the settings turn it into ImproperlyConfigured)."""


def _price(raw: Any, where: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise PriceError(f"{where} must be a number, got {type(raw).__name__}")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise PriceError(f"{where} must be a number, got {str(raw)[:40]!r}") from None
    if not value.is_finite() or value < 0 or value > MAX_PRICE:
        raise PriceError(f"{where} must be between 0 and {MAX_PRICE}, got {raw!r}")
    return value


def parse(raw: Any, *, base: Mapping[str, Mapping[str, Any]] | None = None) -> Table:
    """A validated table: ``raw`` merged over ``base`` metric by metric; ``PriceError`` says what is wrong."""
    if not isinstance(raw, Mapping):
        raise PriceError(f"the price table must be a JSON object of providers, got {type(raw).__name__}")
    table: Table = {}
    for source in (base or {}, raw):
        for provider, prices in source.items():
            if not isinstance(provider, str) or not provider.strip():
                raise PriceError(f"provider names must be non-empty strings, got {provider!r}")
            if not isinstance(prices, Mapping):
                raise PriceError(f"[{provider!r}] must be an object of metric prices, got {type(prices).__name__}")
            row = table.setdefault(provider, {})
            for metric, price in prices.items():
                if metric not in UNITS:
                    raise PriceError(
                        f"[{provider!r}][{metric!r}] is not a usage metric; metrics are: {', '.join(UNITS)}"
                    )
                row[metric] = _price(price, f"[{provider!r}][{metric!r}]")
    return table


_parsed: dict[int, tuple[Any, Table]] = {}


def table() -> Table:
    """The current ``settings.TRENDREEL_PRICES``, parsed once per object (tests may swap it)."""
    from django.conf import settings

    raw = getattr(settings, "TRENDREEL_PRICES", {}) or {}
    cached = _parsed.get(id(raw))
    if cached is None or cached[0] is not raw:
        cached = _parsed[id(raw)] = (raw, parse(raw))
    return cached[1]


def price_row(provider: str, prices: Table) -> dict[str, Decimal]:
    """The prices of a usage key: the longest table key equal to it or a prefix at a boundary."""
    row = prices.get(provider)
    if row is not None:
        return row
    best = ""
    for key in prices:
        if len(key) > len(best) and provider.startswith(key) and _BOUNDARY.match(provider, len(key)):
            best = key
    return prices.get(best, {}) if best else {}


def unit_price(provider: str, metric: str, prices: Table | None = None) -> Decimal | None:
    """What one unit of ``metric`` of ``provider`` costs (None: no price in the table)."""
    per = price_row(provider, table() if prices is None else prices).get(metric)
    return None if per is None else per / UNITS[metric][0]


def line_cost(provider: str, metric: str, amount: Any, prices: Table | None = None) -> Decimal | None:
    price = unit_price(provider, metric, prices)
    if price is None:
        return None
    try:
        quantity = Decimal(str(amount))
    except InvalidOperation:
        return Decimal(0)
    return (price * quantity).quantize(QUANTUM) if quantity.is_finite() else Decimal(0)


def cost_of(usage: Mapping[str, Mapping[str, Any]], prices: Table | None = None) -> Decimal:
    """The money ``usage`` (``Usage.as_dict()``) cost at ``prices`` (default: the settings' table)."""
    prices = table() if prices is None else prices
    total = Decimal(0)
    for provider, counts in usage.items():
        for metric, amount in counts.items():
            cost = line_cost(provider, metric, amount, prices)
            if cost is not None:
                total += cost
    return total.quantize(QUANTUM)


def money(value: Any) -> str:
    """US dollars for people: ``$12.50``, ``$0.0042`` (small amounts keep their significant digits)."""
    amount = Decimal(str(value or 0))
    if amount == 0 or abs(amount) >= 1:
        return f"${amount:,.2f}"
    return "$" + f"{amount:.6f}".rstrip("0").rstrip(".") if abs(amount) < Decimal("0.01") else f"${amount:.2f}"
