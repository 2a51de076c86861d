"""The OpenAI-compatible script writer against a local FakeServer (never the internet)."""

from __future__ import annotations

import copy
import json

import pytest

from stages import script_generation
from stages.base import PermanentStageError, TransientStageError
from stages.providers import llm
from stages.providers.llm import PROMPT_VERSION, build_script, key_required, parse_json
from stages.scripts import FIELDS
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context

KEY = "sk-test-secret-4242"
PATH = "/v1/chat/completions"
TOPIC = {
    "title": "Raspberry Pi 6 launches with a built-in AI accelerator",
    "summary": "<p>The 8GB model costs $80 and ships in March.</p><p>Early benchmarks show 20 tokens per second.</p>",
    "url": "https://www.raspberrypi.com/news/raspberry-pi-6/",
    "source": "Hacker News",
    "keywords": ["raspberry pi", "ai"],
    "hashtags": ["#RaspberryPi", "#AI"],
    "angle": "Cheap local AI is getting real for hobbyists",
    "related": [
        {"title": "Pi 6 hands-on: the NPU is the story", "url": "https://example.com/a", "source": "The Verge"}
    ],
}
GOOD = {
    "title": "Raspberry Pi 6 brings an AI chip for $80",
    "segments": [
        {"id": "hook", "narration": "Your next Pi can think.", "headline": "The Pi can think"},
        {
            "id": "beat1",
            "narration": "The Raspberry Pi 6 launches with a built-in AI accelerator.",
            "headline": "Pi 6 has an NPU",
        },
        {
            "id": "beat2",
            "narration": "The 8GB model costs eighty dollars and ships in March.",
            "headline": "$80, shipping in March",
        },
        {
            "id": "beat3",
            "narration": "Early benchmarks show twenty tokens per second on small models.",
            "headline": "20 tokens a second",
        },
        {"id": "cta", "narration": "Follow for more tech news!", "headline": "Follow for more"},
    ],
    "hashtags": ["#RaspberryPi", "AI"],
    "description": "The Raspberry Pi 6 ships with a neural processing unit.",
    "notes_applied": [],
}


def chat(answer, finish="stop"):
    content = answer if isinstance(answer, str) else json.dumps(answer)
    return Reply(
        200,
        json={
            "id": "c1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        },
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TRENDREEL_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)


def ctx_for(tmp_path, srv=None, *, providers=("openai",), notes=None, openai=None, key=KEY):
    settings = {"providers": list(providers), "openai": {"model": "test-model", "timeout": 0.5}}
    if srv is not None:
        settings["openai"]["base_url"] = srv.url("/v1")
    if key:
        settings["openai"]["api_key"] = key
    settings["openai"].update(openai or {})
    return make_context(
        tmp_path,
        "script_generation",
        theme={"name": "Tech pulse", "target_seconds": 30, "settings": {"script_generation": settings}},
        upstream={"trend_analysis": {"topic": TOPIC, "candidates": []}},
        review_notes=notes,
    )


def assert_no_key(result_or_exc, tmp_path=None):
    text = (
        json.dumps(result_or_exc.output)
        if hasattr(result_or_exc, "output")
        else f"{result_or_exc.message} {result_or_exc.hint}"
    )
    assert KEY not in text
    if tmp_path is not None:
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert KEY not in path.read_text(errors="replace")


# --- success --------------------------------------------------------------------------------


def test_it_writes_a_valid_script_and_records_provider_and_prompt_version(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, chat(GOOD))
        result = script_generation.run(ctx_for(tmp_path, srv))
    out = result.output
    assert out["provider"] == "openai"
    assert out["provider_failures"] == []
    assert out["prompt_version"] == PROMPT_VERSION
    assert out["writer"] == "openai:test-model"
    assert out["hook"] == "Your next Pi can think."
    assert out["cta"] == "Follow for more tech news!"
    assert out["hashtags"] == ["#RaspberryPi", "#AI"]  # a missing '#' is the one cosmetic repair
    assert out["word_count"] == sum(len(s["narration"].split()) for s in GOOD["segments"])
    assert out["target_seconds"] == 30
    script_generation.validate_script({k: v for k, v in out.items() if k in FIELDS})  # the writer's part
    saved = json.loads((tmp_path / "script_generation" / "attempt-1.partial" / "script.json").read_text())
    assert saved["prompt_version"] == PROMPT_VERSION

    seen = srv.requests[0]
    assert seen.headers["authorization"] == f"Bearer {KEY}"  # the key goes as a header only
    body = seen.json()
    assert KEY not in seen.body.decode()
    assert body["model"] == "test-model"
    assert body["response_format"] == {"type": "json_object"}  # a non-OpenAI host gets the widely supported mode
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert PROMPT_VERSION in system
    assert "30-second" in system
    assert "Raspberry Pi 6 launches" in user and "Target duration: 30 seconds" in user and "Tech pulse" in user
    assert_no_key(result, tmp_path)


def test_operator_notes_are_in_the_prompt(tmp_path):
    notes = ["Mention the $80 price in the hook", "tone: casual"]
    with FakeServer() as srv:
        srv.route("POST", PATH, chat({**GOOD, "notes_applied": ["price in the hook", "casual tone"]}))
        out = script_generation.run(ctx_for(tmp_path, srv, notes=notes)).output
    user = srv.requests[0].json()["messages"][1]["content"]
    assert "Operator notes (apply every one):" in user
    assert "1. Mention the $80 price in the hook" in user
    assert "2. tone: casual" in user
    assert out["notes_applied"] == ["price in the hook", "casual tone"]


@pytest.mark.parametrize("style", ["subject", "plain"])
def test_the_hook_style_chosen_from_past_results_is_asked_for_and_recorded(tmp_path, style):
    """Trend analysis picks a hook style from how past videos did (stages.feedback); the LLM writer
    asks for it, and the script's patterns say which style the video carries."""
    ctx = ctx_for(tmp_path)
    ctx.upstream["trend_analysis"]["patterns"] = {"chosen": {"hook": style}}
    with FakeServer() as srv:
        ctx.theme["settings"]["script_generation"]["openai"]["base_url"] = srv.url("/v1")
        srv.route("POST", PATH, chat(GOOD))
        out = script_generation.run(ctx).output
    user = srv.requests[0].json()["messages"][1]["content"]
    assert f"Hook style: {llm.HOOK_STYLES[style]}" in user
    assert out["patterns"]["hook"] == style
    assert out["prompt_version"] == PROMPT_VERSION


def test_without_a_chosen_style_the_prompt_names_none(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, chat(GOOD))
        out = script_generation.run(ctx_for(tmp_path, srv)).output
    assert "Hook style" not in srv.requests[0].json()["messages"][1]["content"]
    assert out["patterns"]["hook"] is None


def test_a_length_note_moves_the_target_like_the_template_writer(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, chat(GOOD))
        out = script_generation.run(ctx_for(tmp_path, srv, notes=["make it longer"])).output
    assert out["target_seconds"] == 40
    assert "Target duration: 40 seconds" in srv.requests[0].json()["messages"][1]["content"]


def test_json_schema_is_asked_when_configured_and_falls_back_when_refused(tmp_path):
    with FakeServer() as srv:
        srv.route(
            "POST",
            PATH,
            [Reply(400, json={"error": {"message": "response_format json_schema is not supported"}}), chat(GOOD)],
        )
        out = script_generation.run(ctx_for(tmp_path, srv, openai={"response_format": "json_schema"})).output
    assert out["provider"] == "openai"
    first, second = (r.json()["response_format"] for r in srv.requests)
    assert first["type"] == "json_schema" and first["json_schema"]["schema"]["required"][0] == "title"
    assert second == {"type": "json_object"}


def test_a_local_server_needs_no_key_and_gets_no_auth_header(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, chat(GOOD))
        script_generation.run(ctx_for(tmp_path, srv, key=None))
    assert "authorization" not in srv.requests[0].headers


def test_settings_come_from_the_environment(tmp_path, monkeypatch):
    with FakeServer() as srv:
        srv.route("POST", PATH, chat(GOOD))
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url("/v1"))
        monkeypatch.setenv("TRENDREEL_LLM_MODEL", "env-model")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        ctx = make_context(
            tmp_path,
            "script_generation",
            theme={"settings": {"script_generation": {"provider": "openai"}}},
            upstream={"trend_analysis": {"topic": TOPIC}},
        )
        out = script_generation.run(ctx).output
    assert out["writer"] == "openai:env-model"
    assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in json.dumps(out)


def test_a_hosted_api_without_a_key_is_a_permanent_error_naming_the_setting(tmp_path):
    ctx = ctx_for(tmp_path, None, key=None, openai={"base_url": "https://api.openai.com/v1"})
    with pytest.raises(PermanentStageError, match="missing api_key") as exc:
        script_generation.run(ctx)
    assert "OPENAI_API_KEY" in exc.value.hint
    assert key_required("https://openrouter.ai/api/v1") and not key_required("http://localhost:11434/v1")


# --- HTTP failures --------------------------------------------------------------------------


def test_a_429_with_retry_after_is_retried_in_call(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, [Reply(429, headers={"Retry-After": "0.2"}, json={"error": "slow down"}), chat(GOOD)])
        out = script_generation.run(ctx_for(tmp_path, srv)).output
    assert out["provider"] == "openai" and len(srv.requests) == 2


def test_a_long_retry_after_goes_to_the_orchestrator(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, Reply(429, headers={"Retry-After": "90"}, json={"error": "rate limited"}))
        with pytest.raises(TransientStageError) as exc:
            script_generation.run(ctx_for(tmp_path, srv))
    assert exc.value.retry_after == 90


def test_a_500_then_success(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, [Reply(500, json={"error": "boom"}), chat(GOOD)])
        out = script_generation.run(ctx_for(tmp_path, srv)).output
    assert out["writer"] == "openai:test-model" and len(srv.requests) == 2


def test_a_401_is_permanent_with_a_hint_and_no_key(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, Reply(401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}}))
        with pytest.raises(PermanentStageError, match="401") as exc:
            script_generation.run(ctx_for(tmp_path, srv))
    assert "api_key" in exc.value.hint and "OPENAI_API_KEY" in exc.value.hint
    assert_no_key(exc.value)
    assert len(srv.requests) == 1


def test_a_timeout_is_transient(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, Reply(200, json={}, delay=1.0))
        with pytest.raises(TransientStageError, match="timed out"):
            script_generation.run(ctx_for(tmp_path, srv, openai={"timeout": 0.1}))


def test_a_body_that_is_not_json_is_permanent(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, Reply(200, body=b"<html>gateway says hi</html>"))
        with pytest.raises(PermanentStageError, match="not JSON"):
            script_generation.run(ctx_for(tmp_path, srv))


def test_a_body_of_the_wrong_shape_is_permanent(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, Reply(200, json={"object": "list", "data": []}))
        with pytest.raises(PermanentStageError, match=r"no choices\[0\].message"):
            script_generation.run(ctx_for(tmp_path, srv))
    assert len(srv.requests) == 1  # the API's shape is not the model's fault: no repair round


# --- repair ---------------------------------------------------------------------------------


def test_invalid_json_gets_one_repair_that_succeeds(tmp_path):
    with FakeServer() as srv:
        srv.route(
            "POST", PATH, [chat('{"title": "Pi 6", "segments": [ oops'), chat("```json\n" + json.dumps(GOOD) + "\n```")]
        )
        out = script_generation.run(ctx_for(tmp_path, srv)).output
    assert out["provider"] == "openai"
    repair = srv.requests[1].json()["messages"]
    assert repair[2] == {"role": "assistant", "content": '{"title": "Pi 6", "segments": [ oops'}
    assert "not valid JSON" in repair[3]["content"]


def test_a_schema_invalid_script_gets_the_validator_message_back(tmp_path):
    two_beats = copy.deepcopy(GOOD)
    del two_beats["segments"][3]
    with FakeServer() as srv:
        srv.route("POST", PATH, [chat(two_beats), chat(GOOD)])
        out = script_generation.run(ctx_for(tmp_path, srv)).output
    assert len(out["segments"]) == 5
    assert "segments has 2 beats" in srv.requests[1].json()["messages"][3]["content"]


def test_an_over_long_card_headline_is_fitted_without_another_call(tmp_path, caplog):
    """Models often overshoot the card limits; the card text is ours to fit (narration never)."""
    wordy = copy.deepcopy(GOOD)
    wordy["segments"][1]["headline"] = "The brand new Raspberry Pi 6 launches with a built-in AI accelerator chip"
    with FakeServer() as srv:
        srv.route("POST", PATH, [chat(wordy)])
        out = script_generation.run(ctx_for(tmp_path, srv)).output
    assert len(srv.requests) == 1  # no repair round spent on it
    headline = out["segments"][1]["headline"]
    assert len(headline.split()) <= 7 and len(headline) <= 40 and headline.startswith("Brand new Raspberry Pi 6")
    assert out["segments"][1]["narration"] == GOOD["segments"][1]["narration"]
    assert "headlines over 7 words / 40 characters fitted: beat1" in caplog.text


def test_failing_twice_is_permanent_naming_what_was_wrong(tmp_path):
    emoji = copy.deepcopy(GOOD)
    emoji["segments"][1]["narration"] += " \U0001f680"
    with FakeServer() as srv:
        srv.route("POST", PATH, [chat("Sure! Here is your script."), chat(emoji)])
        with pytest.raises(
            PermanentStageError, match="still invalid after one repair attempt: script is invalid: segments"
        ) as exc:
            script_generation.run(ctx_for(tmp_path, srv))
    assert "contains emoji" in exc.value.message and "not valid JSON" in exc.value.message
    assert "template" in exc.value.hint
    assert len(srv.requests) == 2
    assert_no_key(exc.value)


# --- fallback chain -------------------------------------------------------------------------


def test_the_chain_falls_back_to_the_template_and_records_why(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, Reply(401, json={"error": f"bad key {KEY}"}))
        result = script_generation.run(ctx_for(tmp_path, srv, providers=("openai", "template")))
    out = result.output
    assert out["provider"] == "template" and out["writer"] == "template"
    assert out["prompt_version"] is None
    assert [f["provider"] for f in out["provider_failures"]] == ["openai"]
    assert "401" in out["provider_failures"][0]["error"]
    assert_no_key(result, tmp_path)


def test_the_chain_falls_back_after_a_failed_repair(tmp_path):
    with FakeServer() as srv:
        srv.route("POST", PATH, chat("no json here"))
        out = script_generation.run(ctx_for(tmp_path, srv, providers=("openai", "template"))).output
    assert out["provider"] == "template"
    assert "repair" in out["provider_failures"][0]["error"]


# --- helpers --------------------------------------------------------------------------------


def test_parse_json_tolerates_fences_and_chatter():
    assert parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json('Here you go: {"a": 1} enjoy') == {"a": 1}
    with pytest.raises(Exception, match="not valid JSON"):
        parse_json("{nope")


def test_build_script_derives_hook_cta_and_counts():
    script = build_script(GOOD, target=30, wps=2.7, writer="openai:m")
    assert script["hook"] == GOOD["segments"][0]["narration"]
    assert script["cta"] == GOOD["segments"][-1]["narration"]
    assert script["word_count"] == 40
    with pytest.raises(Exception, match="segments must be a non-empty list"):
        build_script({"title": "x"}, target=30, wps=2.7, writer="openai:m")
