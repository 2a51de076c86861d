"""An optional second factor (TOTP, django-otp) for the admin, the console and the API's session use.

A user who has confirmed an authenticator app (a ``TOTPDevice``) must give its current code at the
admin login; a session that logged in without one is sent back to the login page. With
``TRENDREEL_REQUIRE_2FA`` on, staff who may review (``jobs.review_job``; superusers have every
permission) need a confirmed device too: without one, the console sends them to
``console:two_factor`` to set one up. API bearer tokens are a separate credential and are not
affected. README, "Two-factor authentication", says how to set it up and what to do when a phone is lost.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django_otp import devices_for_user, user_has_device


def _user_state(request: HttpRequest) -> tuple[bool, bool]:
    """(has a confirmed device, must have one), once per request: the admin asks several times."""
    cached = getattr(request, "_trendreel_2fa", None)
    if cached is None:
        user = request.user
        has_device = user.is_authenticated and user_has_device(user)
        must = bool(has_device) or bool(
            settings.TRENDREEL_REQUIRE_2FA
            and user.is_authenticated
            and user.is_staff
            and user.has_perm("jobs.review_job")
        )
        cached = request._trendreel_2fa = (bool(has_device), must)  # type: ignore[attr-defined]
    return cached


def satisfied(request: HttpRequest) -> bool:
    """True when the user needs no second factor or this session was verified with one."""
    _, must = _user_state(request)
    return not must or bool(getattr(request.user, "is_verified", lambda: False)())


def needs_setup(request: HttpRequest) -> bool:
    """The user must have a second factor and has none yet."""
    has_device, must = _user_state(request)
    return must and not has_device


def challenge(request: HttpRequest) -> HttpResponse:
    """Where an unverified session goes: setting up a device, or the login page to give its code."""
    if needs_setup(request):
        return redirect(reverse("console:two_factor") + "?" + urlencode({"next": request.get_full_path()}))
    return redirect_to_login(request.get_full_path(), reverse("admin:login"))


class LoginForm(AdminAuthenticationForm):
    """The admin login with an optional authentication code, required from users with a confirmed device."""

    otp_token = forms.CharField(
        label="Authentication code",
        required=False,
        max_length=10,
        strip=True,
        help_text="Only if you set up an authenticator app: the code it shows now.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "token_required": "This account has two-factor authentication: enter the code from your authenticator app.",
        "invalid_token": "That authentication code is not right (or was already used): enter the current one.",
    }

    def confirm_login_allowed(self, user) -> None:
        """After the password: a user with a confirmed device must give a code it accepts.

        A wrong code counts as a failed login for django-axes, like a wrong password. The device
        found is kept on the user; django-otp stores it in the session at login (``is_verified``).
        """
        super().confirm_login_allowed(user)
        if not user_has_device(user):
            return
        token = self.cleaned_data.get("otp_token") or ""
        if not token:
            raise forms.ValidationError(self.error_messages["token_required"], code="token_required")
        with transaction.atomic():  # devices are locked: one code cannot verify two logins
            device = next((d for d in devices_for_user(user, for_verify=True) if d.verify_token(token)), None)
        if device is None:
            user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=self.request)
            raise forms.ValidationError(self.error_messages["invalid_token"], code="invalid_token")
        user.otp_device = device
