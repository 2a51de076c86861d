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
