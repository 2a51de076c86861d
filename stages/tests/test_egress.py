"""The outbound guard: where feeds, providers and webhooks may connect, and where keys may go."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from jobs.models import Trend
from stages import egress, http, publish, script_generation, trend_collection, voiceover
from stages.base import PermanentStageError
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context

FEEDS = Path(trend_collection.__file__).resolve().parent / "assets" / "feeds"
RSS = (FEEDS / "technews.xml").read_bytes()


@pytest.fixture
def nothing_allowed(settings):
    settings.TRENDREEL_FETCH_ALLOW = []
    settings.TRENDREEL_PROVIDER_HOSTS = []


@pytest.fixture
def srv():
    with FakeServer() as server:
        server.route("GET", "/x", Reply(200, json={"ok": True}))
        yield server


def get(url: str, **kwargs):
    return http.request(None, "GET", url, provider="acme", hint_setting="ACME_URL", attempts=1, **kwargs)


# -- addresses ---------------------------------------------------------------------------------------
REFUSED_HOSTS = [
    ("127.0.0.1", "loopback"),
    ("localhost", "loopback"),
    ("127.1", "loopback"),
    ("2130706433", "loopback"),  # decimal
    ("0x7f000001", "loopback"),  # hex
    ("[::1]", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped IPv6
    ("[::ffff:7f00:1]", "loopback"),
    ("[64:ff9b::7f00:1]", "loopback"),  # NAT64
    ("[2002:7f00:1::]", "loopback"),  # 6to4
    ("0.0.0.0", "unspecified"),
    ("[::]", "unspecified"),
    ("169.254.169.254", "metadata"),
    ("[fd00:ec2::254]", "metadata"),
    ("[::ffff:169.254.169.254]", "metadata"),
    ("100.100.100.200", "metadata"),
    ("169.254.1.1", "link-local"),
    ("[fe80::1]", "link-local"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("[fc00::1]", "private"),
    ("100.64.0.1", "not a public"),  # carrier-grade NAT
    ("192.0.2.1", "not a public"),  # documentation
    ("224.0.0.1", "multicast"),
]


@pytest.mark.usefixtures("nothing_allowed")
@pytest.mark.parametrize(("host", "why"), REFUSED_HOSTS)
def test_it_refuses_addresses_that_are_not_public(srv, host, why):
    port = srv.httpd.server_address[1]
    with pytest.raises(egress.OutboundRefused) as exc:
        get(f"http://{host}:{port}/x")
    assert why in exc.value.message and "refused to connect" in exc.value.message
    assert "TRENDREEL_FETCH_ALLOW" in exc.value.hint
    assert srv.requests == []


@pytest.mark.usefixtures("nothing_allowed")
def test_an_octal_spelling_never_reaches_the_machine(srv):
    port = srv.httpd.server_address[1]
    with pytest.raises(PermanentStageError):
        get(f"http://0177.0.0.1:{port}/x")
    assert srv.requests == []


def test_it_allows_what_trendreel_fetch_allow_lists(srv, settings):
    port = srv.httpd.server_address[1]
    for allowed in (["127.0.0.0/8"], ["localhost"], ["*.localhost", "localhost"], ["10.0.0.0/8", "127.0.0.1"]):
        settings.TRENDREEL_FETCH_ALLOW = allowed
        host = "localhost" if "localhost" in allowed else "127.0.0.1"
        assert get(f"http://{host}:{port}/x").json() == {"ok": True}
    settings.TRENDREEL_FETCH_ALLOW = ["10.0.0.0/8"]
    with pytest.raises(egress.OutboundRefused):
        get(f"http://127.0.0.1:{port}/x")


def test_every_redirect_is_checked_again(srv, settings):
    """A public feed that redirects to an inside address is refused at the hop."""
    port = srv.httpd.server_address[1]
    settings.TRENDREEL_FETCH_ALLOW = ["127.0.0.1"]  # the "public" first server
    srv.route("GET", "/feed", Reply(302, headers={"Location": f"http://127.0.0.2:{port}/x"}))
    with pytest.raises(egress.OutboundRefused, match="127.0.0.2"):
        get(f"http://127.0.0.1:{port}/feed")
    srv.route("GET", "/meta", Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}))
    with pytest.raises(egress.OutboundRefused, match="metadata"):
        get(f"http://127.0.0.1:{port}/meta")
    assert [r.path for r in srv.requests] == ["/feed", "/meta"]


def test_the_connection_goes_to_the_address_that_was_checked(srv, settings):
    """DNS rebinding: the name resolves once; a second answer (here: a refused one) is never used,
    and the request still carries the name for the Host header."""
    settings.TRENDREEL_FETCH_ALLOW = ["127.0.0.1"]
    port = srv.httpd.server_address[1]
    answers = iter([["127.0.0.1"], ["127.0.0.2"], ["127.0.0.2"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    transport = egress.GuardedTransport(resolver=rebinding)
    with httpx.Client(transport=transport) as client:
        assert client.get(f"http://rebind.example:{port}/x").json() == {"ok": True}
    assert calls == ["rebind.example"]
    assert srv.requests[0].headers["host"] == f"rebind.example:{port}"


def test_a_name_with_one_refused_address_is_refused(srv, settings):
    settings.TRENDREEL_FETCH_ALLOW = ["127.0.0.1"]
    port = srv.httpd.server_address[1]
    transport = egress.GuardedTransport(resolver=lambda host, port: ["127.0.0.1", "10.0.0.7"])
    with httpx.Client(transport=transport) as client, pytest.raises(egress.OutboundRefused, match="10.0.0.7"):
        client.get(f"http://mixed.example:{port}/x")
    assert srv.requests == []


def test_a_bad_allow_list_stops_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from console.settings import _host_list

    monkeypatch.setenv("TRENDREEL_FETCH_ALLOW", "10.0.0.0/8, not a host!")
    with pytest.raises(ImproperlyConfigured, match="TRENDREEL_FETCH_ALLOW"):
        _host_list("TRENDREEL_FETCH_ALLOW")


@pytest.mark.django_db
@pytest.mark.usefixtures("nothing_allowed")
def test_a_refused_feed_is_that_sources_error(tmp_path, srv, settings):
    settings.VAR_DIR = tmp_path / "var"
    port = srv.httpd.server_address[1]
    srv.route("GET", "/feed.xml", Reply(200, body=RSS))
    ctx = make_context(
        tmp_path,
        "trend_collection",
        theme={
            "sources": [
                {"name": "inside", "url": f"http://127.0.0.1:{port}/feed.xml"},
                {"name": "circuit", "path": "feeds/technews.xml"},
            ]
        },
    )
    out = trend_collection.run(ctx).output
    inside, circuit = out["sources"]
    assert inside["error_kind"] == "permanent" and "loopback" in inside["error"]
    assert circuit["error"] is None and circuit["items"] == 10
    assert srv.requests == [] and Trend.objects.filter(source="inside").count() == 0


# -- credentials ---------------------------------------------------------------------------------
def test_a_bound_key_is_never_carried_to_another_host(srv, settings):
    """Not even by a redirect: httpx keeps custom headers (xi-api-key) across hosts."""
    settings.TRENDREEL_FETCH_ALLOW = ["127.0.0.1", "localhost"]
    port = srv.httpd.server_address[1]
    key = egress.bind("env-secret-123", "ELEVENLABS_API_KEY", f"http://127.0.0.1:{port}")
    srv.route("GET", "/hop", Reply(307, headers={"Location": f"http://localhost:{port}/x"}))
    with http.new_client(5.0, secrets=[key], provider="elevenlabs") as client:
        assert client.get(f"http://127.0.0.1:{port}/x", headers={"xi-api-key": key.value}).status_code == 200
        with pytest.raises(egress.OutboundRefused, match="ELEVENLABS_API_KEY from the environment"):
            client.get(f"http://127.0.0.1:{port}/hop", headers={"xi-api-key": key.value})
        with pytest.raises(egress.OutboundRefused):  # in a small body too (a token refresh form)
            client.post(f"http://localhost:{port}/x", data={"refresh_token": key.value})
    assert [r.path for r in srv.requests] == ["/x", "/hop"]


TOPIC = {"title": "Raspberry Pi 6 launches with an NPU", "summary": "It costs 80 dollars. It ships in March."}


def llm_ctx(tmp_path, base_url: str | None = None):
    block = {"model": "m", "base_url": base_url} if base_url else {"model": "m"}
    return make_context(
        tmp_path,
        "script_generation",
        theme={"settings": {"script_generation": {"provider": "openai", "openai": block}}},
        upstream={"trend_analysis": {"topic": TOPIC}},
    )


def test_an_environment_key_for_a_hosted_api_is_refused_for_a_theme_host(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-4242")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(PermanentStageError) as exc:
        script_generation.run(llm_ctx(tmp_path, "https://openrouter.ai/api/v1"))
    assert "OPENAI_API_KEY from the environment is only sent to api.openai.com" in exc.value.message
    assert "openrouter.ai" in exc.value.message and "TRENDREEL_PROVIDER_HOSTS" in exc.value.hint
    assert "sk-env" not in exc.value.message + exc.value.hint


def test_an_environment_key_is_not_sent_to_a_self_hosted_server_the_theme_names(tmp_path, monkeypatch, settings):
    from stages.tests.test_llm import GOOD, chat

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-4242")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat(GOOD))
        script_generation.run(llm_ctx(tmp_path, server.url("/v1")))
        assert "authorization" not in server.requests[0].headers  # a local model needs no key: it gets none
        settings.TRENDREEL_PROVIDER_HOSTS = ["127.0.0.1"]
        script_generation.run(llm_ctx(tmp_path / "listed", server.url("/v1")))
        assert server.requests[1].headers["authorization"] == "Bearer sk-env-key-4242"


def test_elevenlabs_refuses_to_send_the_environment_key_to_a_theme_host(tmp_path, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "xi-env-key-777")
    with FakeServer() as server:
        ctx = make_context(
            tmp_path,
            "voiceover",
            theme={"settings": {"voiceover": {"provider": "elevenlabs", "elevenlabs": {"base_url": server.url()}}}},
            upstream={"script_generation": {"segments": [{"id": "hook", "narration": "Hi there.", "headline": "x"}]}},
        )
        with pytest.raises(PermanentStageError, match="ELEVENLABS_API_KEY from the environment") as exc:
            voiceover.run(ctx)
    assert server.requests == [] and "TRENDREEL_PROVIDER_HOSTS" in exc.value.hint


@pytest.mark.django_db
def test_the_webhook_secret_from_the_environment_signs_only_for_its_own_url(tmp_path, job, composed, monkeypatch):
    from stages.tests.test_webhook import publish_ctx

    monkeypatch.setenv("TRENDREEL_WEBHOOK_URL", "https://hooks.example/in")
    monkeypatch.setenv("TRENDREEL_WEBHOOK_SECRET", "whsec-env-31337")
    with FakeServer() as server:
        server.route("POST", "/in", Reply(204))
        settings = {"destinations": ["webhook"], "webhook": {"url": server.url("/in")}}
        with pytest.raises(PermanentStageError, match="TRENDREEL_WEBHOOK_SECRET from the environment") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, settings))
    assert server.requests == [] and "whsec" not in exc.value.message


@pytest.mark.django_db
def test_youtube_tokens_from_the_environment_stay_with_google(tmp_path, job, composed, monkeypatch):
    from stages.tests.test_webhook import publish_ctx

    monkeypatch.setenv("YOUTUBE_ACCESS_TOKEN", "ya29.env-token")
    with FakeServer() as server:
        settings = {"destinations": ["youtube"], "youtube": {"base_url": server.url()}}
        with pytest.raises(PermanentStageError, match="YOUTUBE_ACCESS_TOKEN from the environment") as exc:
            publish.run(publish_ctx(tmp_path, job, composed, settings))
    assert server.requests == [] and "ya29" not in json.dumps([exc.value.message, exc.value.hint])


# -- local paths ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_path_source_reads_only_allowed_folders(tmp_path, settings):
    settings.VAR_DIR = tmp_path / "var"
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "feed.xml").write_bytes(RSS)
    (allowed / "link.xml").symlink_to(outside / "feed.xml")
    (allowed / "big.xml").write_bytes(b"<rss>" + b" " * (10 * 1024 * 1024 + 10))
    settings.TRENDREEL_SOURCE_DIRS = [allowed]
    sources = [
        {"name": "passwd", "path": "/etc/passwd"},
        {"name": "dotdot", "path": str(allowed / ".." / "outside" / "feed.xml")},
        {"name": "symlink", "path": str(allowed / "link.xml")},
        {"name": "assets-escape", "path": "../../console/settings.py"},
        {"name": "big", "path": str(allowed / "big.xml")},
        {"name": "bundled", "path": "feeds/technews.xml"},
    ]
    out = trend_collection.run(make_context(tmp_path, "trend_collection", theme={"sources": sources})).output
    reports = {r["name"]: r for r in out["sources"]}
    for name in ("passwd", "dotdot", "symlink", "assets-escape"):
        assert "outside the folders sources may read" in reports[name]["error"], name
        assert reports[name]["error_kind"] == "permanent"
    assert "larger than 10 MB" in reports["big"]["error"]
    assert reports["bundled"]["error"] is None and reports["bundled"]["items"] == 10
    assert out["failed_sources"] == 5
