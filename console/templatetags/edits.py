"""``{% edit_panel as panel %}`` and ``{% edit_history as edits %}``: what the edit partials show,
from the page's own context (``job``, ``checkpoints``, ``request``)."""

from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def edit_panel(context) -> dict:
    from console.editing import panel

    return panel(context["request"], context["job"], context.get("checkpoints") or {})


@register.simple_tag(takes_context=True)
def edit_history(context) -> list:
    from console.editing import history

    return history(context["job"])
