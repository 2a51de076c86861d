"""Login throttling (django-axes) for the admin login and API tokens, and the optional second factor."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from console.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


def admin_login(client: Client, username: str, password: str, **extra):
    return client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/", **extra})


def test_wrong_passwords_then_the_right_one_is_refused(client, settings):
    User.objects.create_user("alice", password="right-horse-battery", is_staff=True)
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        resp = admin_login(client, "alice", "wrong")
        assert resp.status_code == 200 and "correct username and password" in resp.content.decode()
    resp = admin_login(client, "alice", "wrong")  # the last allowed failure locks
    assert resp.status_code == 429
    resp = admin_login(client, "alice", "right-horse-battery")
    assert resp.status_code == 429 and "_auth_user_id" not in client.session
    page = resp.content.decode()
    assert "Too many failed logins" in page and "15 minutes" in page
    # another address may still log in as alice? No: the account itself is locked too
    other = Client(REMOTE_ADDR="203.0.113.9")
    assert admin_login(other, "alice", "right-horse-battery").status_code == 429
    # an administrator unlocks it
    call_command("axes_reset_username", "alice")
    resp = admin_login(client, "alice", "right-horse-battery")
    assert resp.status_code == 302 and client.session["_auth_user_id"] == str(User.objects.get(username="alice").pk)


def test_an_address_guessing_many_usernames_is_locked_out(client, settings):
    User.objects.create_user("bob", password="bobs-long-password", is_staff=True)
    for i in range(settings.AXES_FAILURE_LIMIT):
        admin_login(client, f"guess-{i}", "wrong")
    assert admin_login(client, "bob", "bobs-long-password").status_code == 429
    assert admin_login(Client(REMOTE_ADDR="203.0.113.10"), "bob", "bobs-long-password").status_code == 302


def test_token_guessing_is_throttled(client, settings):
    user = User.objects.create_user("robot")
    raw = ApiToken.issue(user, "ci")[1]
    codes = [
        client.get("/api/jobs", headers={"Authorization": f"Bearer guess-{i}"}).status_code
        for i in range(settings.AXES_FAILURE_LIMIT + 2)
    ]
    assert codes[: settings.AXES_FAILURE_LIMIT - 1] == [401] * (settings.AXES_FAILURE_LIMIT - 1)
    assert codes[-2:] == [429, 429]
    resp = client.get("/api/jobs", headers={"Authorization": f"Bearer {raw}"})  # even a good token, from here
    assert resp.status_code == 429 and "failed" in resp.json()["detail"] and int(resp["Retry-After"]) > 0
    other = Client(REMOTE_ADDR="203.0.113.11")
    assert other.get("/api/health", headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    call_command("axes_reset_ip", "127.0.0.1")
    assert client.get("/api/health", headers={"Authorization": f"Bearer {raw}"}).status_code == 200


def test_behind_a_proxy_the_forwarded_address_is_the_client(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # BEHIND_PROXY=1
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.get("/api/jobs", headers={"Authorization": "Bearer nope", "X-Forwarded-For": "198.51.100.7"})
    locked = client.get("/api/health", headers={"Authorization": "Bearer nope", "X-Forwarded-For": "198.51.100.7"})
    assert locked.status_code == 429
    # another client behind the same proxy is not locked out with it; a spoofed left-most entry changes nothing
    fine = client.get("/api/health", headers={"Authorization": "Bearer nope", "X-Forwarded-For": "198.51.100.8"})
    assert fine.status_code == 401
    spoof = client.get(
        "/api/health", headers={"Authorization": "Bearer nope", "X-Forwarded-For": "10.0.0.1, 198.51.100.7"}
    )
    assert spoof.status_code == 429


# --- second factor (django-otp TOTP) ---------------------------------------------------------


def current_code(device) -> str:
    """The code an authenticator app shows now for this device's key (RFC 6238)."""
    from django_otp.oath import TOTP

    return str(TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()).zfill(device.digits)


def with_device(user: User):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def test_an_account_with_an_authenticator_needs_its_code_at_login(client):
    user = User.objects.create_user("carol", password="carols-long-password", is_staff=True, is_superuser=True)
    device = with_device(user)
    resp = admin_login(client, "carol", "carols-long-password")
    assert resp.status_code == 200 and "enter the code from your authenticator app" in resp.content.decode()
    assert "_auth_user_id" not in client.session
    resp = admin_login(client, "carol", "carols-long-password", otp_token=current_code(device))
    assert resp.status_code == 302 and client.session["otp_device_id"] == device.persistent_id
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("console:dashboard")).status_code == 200
    # a wrong code is refused (and counted by django-axes like a wrong password)
    other = Client()
    resp = admin_login(
        other, "carol", "carols-long-password", otp_token="000000" if current_code(device) != "000000" else "111111"
    )
    assert resp.status_code == 200 and "not right" in resp.content.decode() and "_auth_user_id" not in other.session
    from axes.models import AccessAttempt

    assert AccessAttempt.objects.filter(username="carol").exists()


def test_an_account_without_an_authenticator_logs_in_with_its_password(client):
    User.objects.create_user("dave", password="daves-long-password", is_staff=True)
    assert admin_login(client, "dave", "daves-long-password").status_code == 302


def test_a_session_that_never_gave_the_code_is_sent_back(client):
    user = User.objects.create_user("erin", password="pw", is_staff=True, is_superuser=True)
    with_device(user)
    client.force_login(user)  # a password-only session (e.g. from before the device was added)
    assert client.get("/admin/")["Location"].startswith(reverse("admin:login"))
    assert client.get(reverse("console:dashboard"))["Location"].startswith(reverse("admin:login"))
    resp = client.get("/api/jobs")
    assert resp.status_code == 403 and "second factor" in resp.json()["detail"]


def test_require_2fa_sends_reviewers_to_set_one_up(client, settings):
    from django.contrib.auth.models import Permission
    from django_otp.plugins.otp_totp.models import TOTPDevice

    settings.TRENDREEL_REQUIRE_2FA = True
    reviewer = User.objects.create_user("rita", password="ritas-long-password", is_staff=True)
    reviewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_job", "review_job"]))
    operator = User.objects.create_user("otto", password="ottos-long-password", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="view_job"))

    assert admin_login(Client(), "otto", "ottos-long-password").status_code == 302
    otto = Client()
    otto.force_login(operator)
    assert otto.get(reverse("console:dashboard")).status_code == 200  # no review permission: not required

    assert admin_login(client, "rita", "ritas-long-password").status_code == 302  # the password is right...
    resp = client.get(reverse("console:dashboard"))  # ...but the console wants a second factor first
    assert resp.status_code == 302 and resp["Location"].startswith(reverse("console:two_factor"))
    assert client.get("/admin/", follow=True).redirect_chain[-1][0].startswith(reverse("console:two_factor"))
    page = client.get(reverse("console:two_factor")).content.decode()
    assert "two-factor-required" in page and "totp-key" in page
    qr = client.get(reverse("console:two_factor_qr"))
    assert qr.status_code == 200 and qr["Content-Type"] == "image/svg+xml" and b"<svg" in qr.content
    pending = TOTPDevice.objects.get(user=reviewer, confirmed=False)
    resp = client.post(reverse("console:two_factor"), {"otp_token": "12345x", "next": "/console/"}, follow=True)
    assert "not right" in resp.content.decode() and not TOTPDevice.objects.get(pk=pending.pk).confirmed
    pending.refresh_from_db()
    pending.throttle_reset()  # django-otp makes the next try after a wrong code wait (1 s, then 2, 4...)
    resp = client.post(reverse("console:two_factor"), {"otp_token": current_code(pending), "next": "/console/"})
    assert resp.status_code == 302 and resp["Location"] == "/console/"
    assert TOTPDevice.objects.get(pk=pending.pk).confirmed
    assert client.get(reverse("console:dashboard")).status_code == 200  # this session gave the code
    assert client.get(reverse("console:two_factor_qr")).status_code == 404  # the key is never shown again
    assert "two-factor-on" in client.get(reverse("console:two_factor")).content.decode()
    # and from now on the login asks for it
    assert admin_login(Client(), "rita", "ritas-long-password").status_code == 200
