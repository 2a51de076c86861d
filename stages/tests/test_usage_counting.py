"""What providers count into an attempt's usage (the cost ledger): an LLM's tokens from its
answer's ``usage``, TTS characters, and every request as an API call of its provider."""

from __future__ import annotations

import pytest

from stages import script_generation, voiceover
from stages.metering import metering
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.test_cloud_tts import EL_PATH, OA_PATH, SENTENCES, el_reply, oa_reply
from stages.tests.test_cloud_tts import ctx_for as tts_ctx
from stages.tests.test_llm import GOOD, PATH, chat
from stages.tests.test_llm import ctx_for as llm_ctx


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "TRENDREEL_LLM_MODEL",
        "ELEVENLABS_API_KEY",
        "ELEVENLABS_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def with_usage(reply: Reply, prompt: int, completion: int) -> Reply:
    reply.json["usage"] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return reply


def test_a_local_llm_servers_token_usage_is_counted_under_its_host_and_model(tmp_path):
    with FakeServer() as srv:
        # an invalid first answer costs a repair round: both answers' tokens count
        srv.route("POST", PATH, [with_usage(chat("not json"), 900, 12), with_usage(chat(GOOD), 1100, 350)])
        ctx = llm_ctx(tmp_path, srv)
        with metering(ctx.usage):
            script_generation.run(ctx)
        host = srv.url("").split("://")[1].rstrip("/")
    assert ctx.usage.as_dict() == {
        f"{host}/test-model": {"llm_tokens_in": 2000, "llm_tokens_out": 362},  # self-hosted: its own key, no price
        "openai": {"api_calls": 2, "upload_bytes": pytest.approx(sum(len(r.body) for r in srv.requests))},
    }


def test_hostile_usage_numbers_are_ignored_or_clamped(tmp_path):
    reply = chat(GOOD)
    reply.json["usage"] = {"prompt_tokens": "lots", "completion_tokens": 1e30}
    with FakeServer() as srv:
        srv.route("POST", PATH, reply)
        ctx = llm_ctx(tmp_path, srv)
        script_generation.run(ctx)
    (counts,) = [v for k, v in ctx.usage.as_dict().items() if k.endswith("/test-model")]
    assert counts == {"llm_tokens_in": 0, "llm_tokens_out": 10**9}


def test_elevenlabs_characters_are_counted_per_sentence_sent(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", EL_PATH, [el_reply(s) for s in SENTENCES])
        ctx = tts_ctx(tmp_path, srv)
        with metering(ctx.usage):
            voiceover.run(ctx)
        host = srv.url("").split("://")[1].rstrip("/")
    usage = ctx.usage.as_dict()
    assert usage[host] == {"tts_characters": sum(len(s) for s in SENTENCES)}
    assert usage["elevenlabs"]["api_calls"] == len(SENTENCES)


def test_openai_speech_characters_are_counted_under_its_model(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", OA_PATH, [oa_reply(s) for s in SENTENCES])
        ctx = tts_ctx(tmp_path, srv, providers=("openai",))
        voiceover.run(ctx)  # no metering: the provider's own count still holds, calls are not counted
        host = srv.url("").split("://")[1].rstrip("/")
    assert ctx.usage.as_dict() == {f"{host}/tts-1": {"tts_characters": sum(len(s) for s in SENTENCES)}}


def test_a_hosted_provider_is_keyed_by_its_own_name():
    from stages.http import usage_key

    assert usage_key("openai", "https://api.openai.com/v1", "api.openai.com", "gpt-4o-mini") == "openai/gpt-4o-mini"
    assert usage_key("openai", "http://localhost:11434/v1", "api.openai.com", "llama3.1:8b") == (
        "localhost:11434/llama3.1:8b"
    )
    assert usage_key("elevenlabs", "https://api.elevenlabs.io", "api.elevenlabs.io") == "elevenlabs"
