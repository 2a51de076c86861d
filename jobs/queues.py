"""Queue names, shared by the settings (the queue a worker process reads) and the orchestrator's
routing (the queue a stage's runs are pushed to). No Django imports: settings load this."""

from __future__ import annotations

import re

CLUSTER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def queue_name(base: str, cluster: str | None) -> str:
    """The default cluster reads ``base``; cluster ``render`` reads ``base-render``."""
    return f"{base}-{cluster}" if cluster else base
