"""Login throttling with django-axes: the admin login and API bearer tokens share one failure count.

Axes counts failures per client address and per username (``lockout_parameters``); after
``AXES_FAILURE_LIMIT`` of them (``TRENDREEL_LOGIN_FAILURES``) the address, or the account, is refused
for ``AXES_COOLOFF_TIME`` (``TRENDREEL_LOCKOUT_MINUTES``) after its last failure, the right password
included. Administrators unlock early with ``manage.py axes_reset_username NAME`` /
``axes_reset_ip ADDRESS`` (README, "Login throttling").

A wrong API token is a failed login without a username: it counts against the address only, so
one client guessing tokens cannot lock every token user out.
"""

from __future__ import annotations

import contextlib
import math

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.template.response import TemplateResponse


def client_ip(request: HttpRequest) -> str | None:
    """The client's address. Behind our reverse proxy (``BEHIND_PROXY``, which sets
    ``SECURE_PROXY_SSL_HEADER``) it is the right-most ``X-Forwarded-For`` entry: the one the proxy
    appended. Entries to its left come from the client and prove nothing."""
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR")


def lockout_parameters(request, credentials: dict | None) -> list:
    """Lock an address after too many failures, and an account too when the attempt named one."""
    username = (credentials or {}).get("username") if credentials else None
    return ["ip_address", "username"] if username else ["ip_address"]


def retry_after() -> int:
    cool_off = get_cool_off()
    return max(1, math.ceil(cool_off.total_seconds())) if cool_off else 3600


def lockout_message() -> str:
    minutes = math.ceil(retry_after() / 60)
    return (
        f"Too many failed logins: this address or account is locked for {minutes} minutes after the last "
        "failure. An administrator can unlock it sooner (manage.py axes_reset_username / axes_reset_ip)."
    )


def lockout_response(request: HttpRequest, original_response=None, credentials: dict | None = None) -> HttpResponse:
    """429 with Retry-After: JSON for the API (as its other errors), a page for the admin login."""
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": lockout_message()}, status=429)
    else:
        response = TemplateResponse(
            request,
            "admin/lockout.html",
            {"title": "Too many failed logins", "message": lockout_message(), "site_header": "Trendreel"},
            status=429,
        )
        response.render()
    response["Retry-After"] = str(retry_after())
    return response


# a token attempt names no user (lockout_parameters: the address only)
TOKEN_CREDENTIALS: dict = {"username": None}


def _forms_readable(request: HttpRequest) -> HttpRequest:
    """axes reads ``request.POST``; an API body is JSON, and a malformed multipart one must not make
    that a 500: after one failed parse Django marks the body unreadable and POST reads as empty."""
    with contextlib.suppress(MultiPartParserError, TooManyFilesSent):
        request.POST  # noqa: B018
    return request


def token_allowed(request: HttpRequest) -> bool:
    """False while the client's address is locked out (checked before a token is looked up)."""
    return AxesProxyHandler.is_allowed(_forms_readable(request), TOKEN_CREDENTIALS)


def token_failed(request: HttpRequest) -> None:
    """Count a wrong, revoked or unknown token as a failed login of this address."""
    user_login_failed.send(sender=__name__, credentials=TOKEN_CREDENTIALS, request=_forms_readable(request))
