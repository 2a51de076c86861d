"""Secrets in user-supplied configuration (theme settings, sources, job params).

Values under secret-looking keys (key, token, secret, password, credential, authorization) and
credentials inside URLs are masked wherever configuration is shown: the API, the admin and the
console; known secret values are scrubbed from every message a job shows (``job_secrets``,
``masked``). The admin's theme form shows the masked form and puts the stored value back when the
mask comes back unchanged, so editing a theme never needs (or leaks) its keys, unless the URL the
key is sent to moved to another host (``unbind_moved_secrets``): then the key is dropped.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "********"

_SECRET_NAME = re.compile(r"key(?!words?\b)|token|secret|passw|credential|authorization", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(str(name)))


def _mask_url(value: str, found: set[str]) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.scheme or not parts.netloc:
        return value
    netloc = parts.netloc
    if parts.password:
        found.add(parts.password)
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(is_secret_name(k) for k, _ in query):
        found.update(v for k, v in query if is_secret_name(k) and v)
        masked = urlencode([(k, MASK if is_secret_name(k) and v else v) for k, v in query], safe="*")
        return urlunsplit(parts._replace(netloc=netloc, query=masked))
    return urlunsplit(parts._replace(netloc=netloc)) if netloc != parts.netloc else value


def mask_secrets(value: Any, found: set[str] | None = None) -> Any:
    """A copy of ``value`` with secret-named keys masked (and URL credentials); ``found`` collects the values."""
    found = found if found is not None else set()
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if is_secret_name(k) and v not in (None, "", [], {}):
                _collect(v, found)
                out[k] = MASK
            else:
                out[k] = mask_secrets(v, found)
        return out
    if isinstance(value, list):
        return [mask_secrets(v, found) for v in value]
    if isinstance(value, str) and "://" in value:
        return _mask_url(value, found)
    return value


def _collect(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _collect(v, found)
    elif isinstance(value, list):
        for v in value:
            _collect(v, found)
    elif value is not None and len(str(value)) >= 4:
        found.add(str(value))


def scrub(text: str, secrets: set[str]) -> str:
    """``text`` with every known secret value replaced (a provider error may quote its key)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def restore_secrets(new: Any, old: Any) -> Any:
    """``new`` (as submitted from a masked form) with every still-masked value taken from ``old``."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: (old[k] if v == MASK and k in old else restore_secrets(v, old.get(k))) for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list):
        return [restore_secrets(v, old[i] if i < len(old) else None) for i, v in enumerate(new)]
    if isinstance(new, str) and MASK in new and isinstance(old, str) and mask_secrets(old) == new:
        return old
    return new


def job_secrets(job) -> set[str]:
    """Every secret value a job's messages could quote: its theme's keys and its own params'."""
    found: set[str] = set()
    mask_secrets(job.theme.settings or {}, found)
    mask_secrets(job.theme.sources or [], found)
    mask_secrets(job.params or {}, found)
    return found


# Settings that name where a provider's requests (and so its keys) go.
URL_KEYS = ("base_url", "url", "token_url")
MOVED_KEYS_HELP = (
    "Changing a provider's base_url (or url, token_url) to another host clears its stored keys: "
    "enter them again for the new host."
)


def _host(value: Any) -> tuple[str, int | None] | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parts = urlsplit(value.strip())
        return (parts.hostname or "", parts.port)
    except ValueError:
        return (value.strip(), None)  # unparsable: only the very same text counts as the same host


def unbind_moved_secrets(new: Any, old: Any) -> tuple[Any, list[str]]:
    """``new`` (as submitted from a masked form) without the stored keys that would follow a moved URL.

    A key is bound to the host it was entered for. When a dict's ``base_url``/``url``/``token_url``
    names another host than the stored one (or appears, or goes back to the provider's default),
    its secret-named values still sent as the mask are dropped instead of being restored: an
    editor must not be able to send someone else's key to a server of their choosing. A key
    typed in with the new URL is kept. Returns the cleaned value and, for each key cleared,
    ``"<path>: <new host>"``.
    """
    cleared: list[str] = []

    def walk(new: Any, old: Any, path: str) -> Any:
        if isinstance(new, dict) and isinstance(old, dict):
            moved = [k for k in URL_KEYS if (k in new or k in old) and _host(new.get(k)) != _host(old.get(k))]
            out = {}
            for k, v in new.items():
                if moved and v == MASK and is_secret_name(k):
                    host = _host(new.get(moved[0]))
                    cleared.append(f"{path}{k}: {host[0] if host else 'the default host'}")
                    continue
                out[k] = walk(v, old.get(k), f"{path}{k}.")
            return out
        if isinstance(new, list) and isinstance(old, list):
            return [walk(v, old[i] if i < len(old) else None, f"{path}{i}.") for i, v in enumerate(new)]
        return new

    return walk(new, old, ""), cleared


def secret_paths(value: Any, path: str = "") -> list[str]:
    """Where ``value`` holds something ``mask_secrets`` would mask: ``["voice.token", "hooks.0"]``."""
    if isinstance(value, dict):
        found = []
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if is_secret_name(k) and v not in (None, "", [], {}):
                found.append(here)
            else:
                found += secret_paths(v, here)
        return found
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in secret_paths(v, f"{path}.{i}" if path else str(i))]
    if isinstance(value, str) and "://" in value and _mask_url(value, set()) != value:
        return [path]
    return []


def masked(value: Any, secrets: set[str]) -> Any:
    """``value`` (JSON or text) as it may be shown: secret-named keys masked and every known secret
    value replaced wherever it appears (a stage output or a log may quote one)."""
    value = mask_secrets(value)
    if isinstance(value, dict):
        return {k: masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, secrets) for v in value]
    return scrub(value, secrets) if isinstance(value, str) else value
