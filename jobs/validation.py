"""Input rules the console's forms, the JSON API, the admin and the orchestrator share, so all refuse
the same input the same way."""

from __future__ import annotations

from typing import Any

BATCH_MAX = 20  # jobs per batch: one per top topic, and a batch is started in one transaction


def batch_count(raw: Any) -> int:
    """A batch size from a form field or a JSON number: a whole number from 1 to ``BATCH_MAX``.

    Raises ``ValueError`` with a message fit for the user (the console shows it, the API answers 422).
    """
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError(f"a batch is 1 to {BATCH_MAX} jobs, not {raw!r}")
    try:
        count = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"a batch is 1 to {BATCH_MAX} jobs, not {raw!r}") from None
    if not 1 <= count <= BATCH_MAX:
        raise ValueError(f"a batch is 1 to {BATCH_MAX} jobs, not {count}")
    return count
