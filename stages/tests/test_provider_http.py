"""The shared provider HTTP layer and fallback chains, against a local server."""

from __future__ import annotations

import time

import httpx
import pytest

from stages import http
from stages.base import PermanentStageError, TransientStageError
from stages.chain import Registry, run_chain
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context


def call(srv, **kw):
    return http.request(
        None, "GET", srv.url("/x"), provider="acme", hint_setting="ACME_KEY", secrets=["sk-secret-123"], **kw
    )


def test_it_retries_a_500_then_succeeds():
    with FakeServer() as srv:
        srv.route("GET", "/x", [Reply(500), Reply(200, json={"ok": True})])
        assert call(srv).json() == {"ok": True}
        assert len(srv.requests) == 2


def test_a_429_waits_its_retry_after_in_call_when_short():
    with FakeServer() as srv:
        srv.route("GET", "/x", [Reply(429, headers={"Retry-After": "0.3"}), Reply(200, json={})])
        t0 = time.monotonic()
        call(srv)
        assert time.monotonic() - t0 >= 0.3


def test_a_long_retry_after_goes_to_the_orchestrator():
    with FakeServer() as srv:
        srv.route("GET", "/x", Reply(429, headers={"Retry-After": "120"}))
        with pytest.raises(TransientStageError) as exc:
            call(srv)
        assert exc.value.retry_after == 120
        assert len(srv.requests) == 1


def test_a_401_is_permanent_with_a_hint_and_no_secret():
    with FakeServer() as srv:
        srv.route("GET", "/x", Reply(401, json={"error": "bad key sk-secret-123"}))
        with pytest.raises(PermanentStageError) as exc:
            call(srv)
        assert "ACME_KEY" in exc.value.hint
        assert "sk-secret-123" not in exc.value.message
        assert len(srv.requests) == 1


def test_quota_exhaustion_is_permanent():
    with FakeServer() as srv:
        srv.route("GET", "/x", Reply(429, json={"error": {"code": "insufficient_quota"}}))
        with pytest.raises(PermanentStageError, match="429"):
            call(srv)


def test_a_timeout_is_transient():
    with FakeServer() as srv:
        srv.route("GET", "/x", Reply(200, json={}, delay=1.0))
        with pytest.raises(TransientStageError, match="timed out"):
            call(srv, client=httpx.Client(timeout=0.2), attempts=2)


def test_the_chain_moves_on_and_records_who_produced(tmp_path):
    ctx = make_context(tmp_path, "voiceover", theme={"settings": {"voiceover": {"providers": ["a", "b", "c"]}}})

    def attempt(name):
        if name == "a":
            raise TransientStageError("a is down")
        if name == "b":
            raise PermanentStageError("b has no key", hint="set B_KEY")
        return "from c"

    registry = Registry("voiceover", {n: f"x.{n}" for n in "abc"}, default="a", method="speak")
    result, report = run_chain(ctx, registry.names(ctx), attempt)
    assert result == "from c"
    assert report["provider"] == "c"
    assert [f["provider"] for f in report["failures"]] == ["a", "b"]


def test_the_chain_fails_transient_if_any_failure_was_transient(tmp_path):
    ctx = make_context(tmp_path, "voiceover")

    def attempt(name):
        if name == "x":
            raise TransientStageError("x failed", retry_after=30)
        raise PermanentStageError(f"{name} failed")

    with pytest.raises(TransientStageError, match="x: x failed; y: y failed") as exc:
        run_chain(ctx, ["x", "y"], attempt)
    assert exc.value.retry_after == 30  # the orchestrator waits at least as long as the provider asked
    with pytest.raises(PermanentStageError):
        run_chain(ctx, ["y"], attempt)
