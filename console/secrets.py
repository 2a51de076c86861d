"""Secrets in user-supplied configuration (theme settings, sources, job params).

Values under secret-looking keys (key, token, secret, password, credential, authorization) and
credentials inside URLs are masked wherever configuration is shown: the API and the admin. The
admin's theme form shows the masked form and puts the stored value back when the mask comes back
unchanged, so editing a theme never needs (or leaks) its keys.
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
