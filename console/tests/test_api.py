"""The JSON API: jobs through the orchestrator, tokens, permissions, idempotency, hostile input."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client
from django.utils import timezone

from console.api import MASK, MAX_BODY
from console.models import ApiToken, IdempotencyKey, hash_token
from jobs import orchestrator
from jobs.models import Artifact, Job
from jobs.tests.conftest import params

pytestmark = pytest.mark.django_db(transaction=True)

ALL_PERMS = ("view_job", "add_job", "change_job", "review_job", "view_theme")


def make_user(name: str = "robot", *codenames: str, staff: bool = False) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def auth(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def token(db) -> str:
    _, raw = ApiToken.issue(make_user("robot", *ALL_PERMS), "tests")
    return raw


def post(client: Client, url: str, body, raw: str | None = None, **headers):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(
        url, data=data, content_type="application/json", headers={**(auth(raw) if raw else {}), **headers}
    )


@pytest.fixture
def done_job(engine, theme, call_log, tmp_path) -> Job:
    """A job run to review, in this process."""
    return orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)


def test_it_generates_polls_and_lists_a_job(client, token, theme, engine, call_log, tmp_path):
    resp = post(client, "/api/generate", {"theme": "test", "params": params(call_log, tmp_path)}, token)
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["status"] == "pending" and body["poll_url"] == f"http://testserver/api/jobs/{body['job_id']}"
    job = Job.objects.get(pk=body["job_id"])
    assert job.created_by.username == "robot"

    orchestrator.run_inline(job.pk)
    detail = client.get(f"/api/jobs/{job.pk}", headers=auth(token)).json()
    assert detail["status"] == "awaiting_review" and detail["current_stage"] == "review"
    stages = [run["stage"] for run in detail["runs"]]
    assert stages[:6] == [
        "trend_collection",
        "trend_analysis",
        "script_generation",
        "scene_generation",
        "voiceover",
        "composition",
    ]
    first = detail["runs"][0]
    assert first["attempt"] == 1 and first["duration_seconds"] is not None and first["error_kind"] == ""
    art = Artifact.objects.filter(job=job).first()
    urls = [a["url"] for run in detail["runs"] for a in run["artifacts"]]
    assert f"http://testserver/console/jobs/{job.pk}/media/{art.pk}/" in urls

    listing = client.get("/api/jobs?status=awaiting_review&theme=test&stage=review", headers=auth(token)).json()
    assert listing["count"] == 1 and listing["items"][0]["id"] == job.pk
    assert client.get("/api/jobs?status=failed", headers=auth(token)).json()["count"] == 0
    assert client.get("/api/jobs?theme=nope", headers=auth(token)).json()["count"] == 0


def test_it_paginates_with_a_maximum_of_100(client, token, theme):
    for _ in range(3):
        orchestrator.start_job(theme)
    page = client.get("/api/jobs?limit=2&offset=1", headers=auth(token)).json()
    assert page["count"] == 3 and page["limit"] == 2 and page["offset"] == 1 and len(page["items"]) == 2
    resp = client.get("/api/jobs?limit=101", headers=auth(token))
    assert resp.status_code == 422 and "limit" in resp.json()["detail"]


def test_it_returns_the_same_job_for_the_same_idempotency_key(client, token, theme):
    first = post(client, "/api/generate", {"theme": "test"}, token, **{"Idempotency-Key": "abc-1"})
    again = post(client, "/api/generate", {"theme": "test"}, token, **{"Idempotency-Key": "abc-1"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["job_id"] == again.json()["job_id"]
    # the same request in other words (key order, spacing) is the same request
    same = post(client, "/api/generate", '{ "params": {},"theme":"test" }', token, **{"Idempotency-Key": "abc-1"})
    assert same.status_code == 200 and same.json()["job_id"] == first.json()["job_id"]
    other = post(client, "/api/generate", {"theme": "test", "params": {"x": 1}}, token, **{"Idempotency-Key": "abc-1"})
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
    assert Job.objects.count() == 1
    assert IdempotencyKey.objects.get().job_id == first.json()["job_id"]


def test_idempotency_keys_belong_to_their_user(client, token, theme):
    mine = post(client, "/api/generate", {"theme": "test"}, token, **{"Idempotency-Key": "daily"})
    other = ApiToken.issue(make_user("someone-else", *ALL_PERMS), "theirs")[1]
    theirs = post(client, "/api/generate", {"theme": "test"}, other, **{"Idempotency-Key": "daily"})
    assert mine.status_code == 202 and theirs.status_code == 202  # not another user's job
    assert mine.json()["job_id"] != theirs.json()["job_id"]
    assert Job.objects.get(pk=theirs.json()["job_id"]).created_by.username == "someone-else"


def race(requests: list) -> list:
    """Run each request in its own thread, released together by a barrier; their responses in order."""
    barrier = threading.Barrier(len(requests))
    results: list = [None] * len(requests)

    def run(i: int, request) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = request()
        except Exception as exc:  # reported by the assertion below, not lost in the thread
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.mark.parametrize("same_body", [True, False])
def test_concurrent_requests_with_one_key_start_one_job(token, theme, same_body):
    for round_ in range(3):
        key = f"race-{same_body}-{round_}"
        bodies = [{"theme": "test", "params": {} if same_body else {"n": i}} for i in range(4)]
        responses = race(
            [lambda b=b, k=key: post(Client(), "/api/generate", b, token, **{"Idempotency-Key": k}) for b in bodies]
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == ([200, 200, 200, 202] if same_body else [202, 409, 409, 409]), responses
        assert len({r.json()["job_id"] for r in responses if r.status_code < 300}) == 1
        assert IdempotencyKey.objects.filter(key=key).count() == 1
    assert Job.objects.count() == 3


def test_it_retries_cancels_and_reviews_with_the_right_codes(client, token, done_job):
    url = f"/api/jobs/{done_job.pk}"
    # resume needs a failed/cancelled job: 409
    resp = post(client, f"{url}/retry", {}, token)
    assert resp.status_code == 409 and "only failed or cancelled" in resp.json()["detail"]
    resp = post(client, f"{url}/retry", {"from_stage": "bogus"}, token)
    assert resp.status_code == 422 and "from_stage" in resp.json()["detail"]
    # request changes needs notes: 422, nothing decided
    resp = post(client, f"{url}/review", {"decision": "request_changes", "from_stage": "script_generation"}, token)
    assert resp.status_code == 422 and "notes" in resp.json()["detail"]
    resp = post(client, f"{url}/review", {"decision": "approve", "notes": "ship it"}, token)
    assert resp.status_code == 200 and resp.json()["status"] == "publishing"
    assert resp.json()["reviews"][0]["decided_by"] == "robot"
    # approving again: not in review any more
    resp = post(client, f"{url}/review", {"decision": "approve"}, token)
    assert resp.status_code == 409
    # retry of a running (publishing) job re-run from a stage: 409
    resp = post(client, f"{url}/retry", {"from_stage": "voiceover"}, token)
    assert resp.status_code == 409
    resp = post(client, f"{url}/cancel", None, token)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert post(client, f"{url}/cancel", None, token).status_code == 409
    resp = post(client, f"{url}/retry", None, token)
    assert resp.status_code == 200 and resp.json()["status"] == "publishing"
    assert post(client, "/api/jobs/999999/cancel", None, token).status_code == 404
    assert client.get("/api/jobs/999999", headers=auth(token)).json() == {"detail": "no job with id 999999"}


def test_it_starts_a_batch_and_lists_themes_with_secrets_masked(client, token, theme):
    theme.settings = {
        "voiceover": {"api_key": "sk-live-123456", "speed": 1.1, "keywords": ["a"]},
        "providers": {"auth_token": "tok-abcdef", "password": "hunter22"},
    }
    theme.sources = [{"name": "x", "url": "https://feeds.example/rss?apikey=SECRET9&lang=en"}]
    theme.save()
    resp = post(client, "/api/batches", {"theme": "test", "count": 3}, token)
    assert resp.status_code == 202 and len(resp.json()["jobs"]) == 3
    assert Job.objects.count() == 3
    text = client.get("/api/themes", headers=auth(token)).content.decode()
    for secret in ("sk-live-123456", "tok-abcdef", "hunter22", "SECRET9"):
        assert secret not in text
    data = json.loads(text)[0]
    assert data["settings"]["voiceover"] == {"api_key": MASK, "speed": 1.1, "keywords": ["a"]}
    assert "lang=en" in data["sources"][0]["url"]
    for bad in (21, 0, -5):
        resp = post(client, "/api/batches", {"theme": "test", "count": bad}, token)
        assert resp.status_code == 422 and "a batch is 1 to 20 jobs" in resp.json()["detail"]
    assert Job.objects.count() == 3


def test_it_scrubs_provider_keys_from_job_errors(client, token, theme):
    theme.settings = {"voiceover": {"api_key": "sk-live-abcdef"}}
    theme.save()
    job = orchestrator.start_job(theme, params={"token": "tk-999999"})
    Job.objects.filter(pk=job.pk).update(
        status="failed", error_message="401 from https://x/?key=sk-live-abcdef", error_hint="check tk-999999"
    )
    text = client.get(f"/api/jobs/{job.pk}", headers=auth(token)).content.decode()
    assert "sk-live-abcdef" not in text and "tk-999999" not in text and MASK in text


@pytest.mark.parametrize(
    ("url", "body", "code", "words"),
    [
        ("/api/generate", "{not json", 400, "Cannot parse"),
        ("/api/generate", "[1, 2]", 422, "body"),
        ("/api/generate", {"theme": "nope"}, 404, "unknown theme"),
        ("/api/generate", {"theme": "../etc"}, 422, "theme"),
        ("/api/generate", {"theme": 12}, 422, "theme"),
        ("/api/generate", {"theme": "test", "params": "x"}, 422, "params"),
        (
            "/api/generate",
            {"theme": "test", "params": {"a": "nul\u0000"}},
            422,
            "body.params.a: text may not contain NUL",
        ),
        ("/api/generate", {"theme": "test", "params": {"a": ["\udc00"]}}, 422, "Unicode"),
        ("/api/generate", {"theme": "test", "extra": 1}, 422, "extra"),
        ("/api/generate", {}, 422, "theme"),
        ("/api/batches", {"theme": "test", "count": "many"}, 422, "count"),
        ("/api/batches", {"theme": "nope", "count": 2}, 404, "unknown theme"),
    ],
)
def test_it_refuses_bad_input_and_writes_nothing(client, token, theme, url, body, code, words):
    before = Job.objects.count()
    resp = post(client, url, body, token)
    assert resp.status_code == code, resp.content
    assert resp["Content-Type"].startswith("application/json")
    assert words in resp.json()["detail"]
    assert Job.objects.count() == before


@pytest.mark.parametrize(
    "body",
    [
        '{"theme": "test", "params": {"x": NaN}}',
        '{"theme": "test", "params": {"x": [Infinity]}}',
        '{"theme": "test", "params": {"x": -Infinity}}',
    ],
)
def test_it_refuses_nan_and_infinity_with_a_clear_400(client, token, theme, body):
    resp = post(client, "/api/generate", body, token)
    assert resp.status_code == 400, resp.content
    detail = resp.json()["detail"]
    assert "not valid JSON" in detail and body.split(": ")[-1].strip("[]{} ") in detail
    assert Job.objects.count() == 0


def test_it_says_where_a_json_body_breaks(client, token, theme):
    resp = post(client, "/api/batches", '{"theme": "test", "count": 2,}', token)
    assert resp.status_code == 400
    assert resp.json()["detail"].startswith("Cannot parse request body: ") and "line 1" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"api_key": "sk-live-1"}, "params.api_key"),
        ({"voice": {"elevenlabs": {"token": "t-2"}}}, "params.voice.elevenlabs.token"),
        ({"hooks": ["https://bot:pw-3@hooks.example/x"]}, "params.hooks.0"),
        ({"feed": "https://feeds.example/rss?apikey=k-4"}, "params.feed"),
    ],
)
def test_it_refuses_secrets_in_job_params(client, token, theme, params, where):
    resp = post(client, "/api/generate", {"theme": "test", "params": params}, token)
    assert resp.status_code == 422, resp.content
    detail = resp.json()["detail"]
    assert where in detail and "secret" in detail
    assert "sk-live-1" not in detail and "pw-3" not in detail and "k-4" not in detail
    assert Job.objects.count() == 0


def test_params_that_only_look_near_secrets_are_fine(client, token, theme):
    params = {"keywords": ["ai"], "topic_rank": 1, "source": "https://feeds.example/rss?lang=en", "api_key": ""}
    assert post(client, "/api/generate", {"theme": "test", "params": params}, token).status_code == 202


def test_it_refuses_bad_review_input(client, token, done_job):
    url = f"/api/jobs/{done_job.pk}/review"
    for body in (
        {"decision": "maybe"},
        {"decision": "request_changes", "from_stage": "nowhere", "notes": "x"},
        {"decision": "request_changes", "from_stage": "publish", "notes": "x"},
        {"decision": "approve", "notes": 5},
    ):
        resp = post(client, url, body, token)
        assert resp.status_code == 422, body
    done_job.refresh_from_db()
    assert done_job.status == Job.Status.AWAITING_REVIEW and not done_job.reviews.exists()


def test_it_refuses_oversized_bodies_with_413(client, token, theme):
    big = {"theme": "test", "params": {"blob": "x" * (MAX_BODY + 1)}}
    resp = post(client, "/api/generate", big, token)
    assert resp.status_code == 413 and "too large" in resp.json()["detail"]
    assert Job.objects.count() == 0


def test_tokens_authenticate_and_are_stored_as_hashes(client, theme):
    user = make_user("tok", "view_job")
    api_token, raw = ApiToken.issue(user, "ci")
    assert api_token.prefix == raw[:8] and api_token.token_hash == hash_token(raw) and raw not in api_token.token_hash
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs", headers=auth("wrong")).status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": f"Token {raw}"}).status_code == 401
    assert client.get("/api/jobs", headers=auth(raw)).status_code == 200
    api_token.refresh_from_db()
    first_use = api_token.last_used
    assert first_use is not None
    client.get("/api/jobs", headers=auth(raw))
    api_token.refresh_from_db()
    assert api_token.last_used == first_use  # throttled: once a minute
    ApiToken.objects.filter(pk=api_token.pk).update(last_used=timezone.now() - timedelta(minutes=2))
    client.get("/api/jobs", headers=auth(raw))
    api_token.refresh_from_db()
    assert api_token.last_used > first_use

    assert client.get("/api/themes", headers=auth(raw)).status_code == 403  # no view_theme
    assert post(client, "/api/generate", {"theme": "test"}, raw).status_code == 403
    assert Job.objects.count() == 0
    api_token.revoke()
    resp = client.get("/api/jobs", headers=auth(raw))
    assert resp.status_code == 401 and raw not in resp.content.decode()
    api_token2, raw2 = ApiToken.issue(user, "other")
    user.is_active = False
    user.save()
    assert client.get("/api/jobs", headers=auth(raw2)).status_code == 401


def test_permissions_match_the_console(client, done_job):
    users = {perm: make_user(f"u-{perm}", perm) for perm in ALL_PERMS}
    raw = {perm: ApiToken.issue(user, perm)[1] for perm, user in users.items()}
    job = f"/api/jobs/{done_job.pk}"
    checks = [
        ("get", "/api/jobs", None, "view_job"),
        ("get", job, None, "view_job"),
        ("post", f"{job}/cancel", None, "change_job"),
        ("post", f"{job}/retry", {"from_stage": "voiceover"}, "change_job"),
        ("post", "/api/generate", {"theme": "test"}, "add_job"),
        ("post", "/api/batches", {"theme": "test", "count": 1}, "add_job"),
        ("post", f"{job}/review", {"decision": "reject"}, "review_job"),
        ("get", "/api/themes", None, "view_theme"),
    ]
    for method, url, body, needed in checks:
        for perm in ALL_PERMS:
            if perm == needed:
                continue
            resp = client.get(url, headers=auth(raw[perm])) if method == "get" else post(client, url, body, raw[perm])
            assert resp.status_code == 403, (url, perm)
            assert needed in resp.json()["detail"]
    assert Job.objects.count() == 1
    done_job.refresh_from_db()
    assert done_job.status == Job.Status.AWAITING_REVIEW
    # health: any authenticated user
    assert client.get("/api/health", headers=auth(raw["view_theme"])).status_code == 200
    assert client.get("/api/health").status_code == 401


def test_session_auth_needs_staff_and_csrf(theme):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(make_user("clerk", *ALL_PERMS))
    assert csrf_client.get("/api/jobs").status_code == 403  # not staff
    op = make_user("op", *ALL_PERMS, staff=True)
    csrf_client.force_login(op)
    assert csrf_client.get("/api/jobs").status_code == 200
    resp = csrf_client.post("/api/generate", data=json.dumps({"theme": "test"}), content_type="application/json")
    assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
    assert Job.objects.count() == 0
    csrf_client.get("/console/")  # the console page sets the CSRF cookie
    token = csrf_client.cookies["csrftoken"].value
    resp = csrf_client.post(
        "/api/generate",
        data=json.dumps({"theme": "test"}),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert resp.status_code == 202
    # a request with a (bad) token never falls back to the session
    assert csrf_client.get("/api/jobs", headers=auth("bad")).status_code == 401


def test_health_reports_database_broker_and_workers(client, token, theme):
    body = client.get("/api/health", headers=auth(token)).json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["broker"]["ok"]
    assert body["workers"]["alive"] is False and body["workers"]["last_seen"] is None
    job = orchestrator.start_job(theme)
    job.runs.update(heartbeat_at=timezone.now())
    body = client.get("/api/health", headers=auth(token)).json()
    assert body["workers"]["alive"] is True and body["workers"]["evidence"] == "stage heartbeat"
    assert body["workers"]["queued_tasks"] >= 1


def test_admin_shows_a_new_token_once_and_revokes(admin_client):
    user = User.objects.get(username="admin")
    resp = admin_client.post("/admin/console/apitoken/add/", {"user": user.pk, "name": "deploy"}, follow=True)
    assert resp.status_code == 200
    token = ApiToken.objects.get()
    shown = [str(m) for m in resp.context["messages"]]
    raw = next(m.split(": ", 1)[1].split(" ")[0] for m in shown if "API token" in m)
    assert hash_token(raw) == token.token_hash and raw.startswith(token.prefix)
    listing = admin_client.get("/admin/console/apitoken/").content.decode()
    change = admin_client.get(f"/admin/console/apitoken/{token.pk}/change/").content.decode()
    for page in (listing, change):
        assert token.token_hash not in page and raw not in page
    assert token.prefix in listing
    admin_client.post("/admin/console/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.is_revoked
    assert ApiToken.authenticate(raw) is None


def test_each_user_gets_a_request_budget_then_429_with_retry_after(client, token, settings):
    settings.TRENDREEL_API_RATE = (3, 60)
    other = ApiToken.issue(make_user("other-robot", *ALL_PERMS), "tests")[1]
    codes = [client.get("/api/jobs", headers=auth(token)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    over = client.get("/api/jobs", headers=auth(token))
    assert over.status_code == 429 and over.json()["detail"] == "Too many requests."
    assert 1 <= int(over["Retry-After"]) <= 60
    assert client.get("/api/jobs", headers=auth(other)).status_code == 200  # a budget per user
    assert client.get("/api/jobs").status_code == 401  # no identity, no budget spent: auth first
    settings.TRENDREEL_API_RATE = None  # off
    assert client.get("/api/jobs", headers=auth(token)).status_code == 200


def test_a_token_made_in_the_admin_is_shown_once_and_never_travels_in_a_cookie(admin_client, admin_user):
    response = admin_client.post("/admin/console/apitoken/add/", {"user": admin_user.pk, "name": "ci"})
    assert response.status_code == 302
    token = ApiToken.objects.get(name="ci")
    # the message waits server-side, in the session: a signed cookie is readable by anyone who sees it
    assert not response.cookies.get("messages", None) or not response.cookies["messages"].value
    page = admin_client.get(response["Location"]).content.decode()
    shown = page.split("API token for ", 1)[1].split(": ", 1)[1].split(" ", 1)[0]
    assert hash_token(shown) == token.token_hash  # the real token, once
    assert shown not in admin_client.get(response["Location"]).content.decode()
