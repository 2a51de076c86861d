"""The cost ledger and lineage in templates: each partial loads its own data, so the pages that
include it need one ``{% include %}`` line and no change to their views."""

from __future__ import annotations

from typing import Any

from django import template

from console import costs
from jobs import prices

register = template.Library()


@register.filter
def money(value: Any) -> str:
    return prices.money(value)


@register.simple_tag
def job_cost(job) -> dict[str, Any]:
    return costs.job_cost(job)


@register.simple_tag
def cost_chart() -> dict[str, Any]:
    return costs.cost_chart()


@register.simple_tag
def job_lineage(job) -> dict[str, Any]:
    from jobs import lineage

    return lineage.for_job(job)
