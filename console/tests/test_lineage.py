"""Lineage: what shaped a video, from its current checkpoints; the API (typed, jobs.view_job), the
review page's panel, and lineage.json beside the published video."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from django.urls import reverse

from console.tests.test_api import make_user
from console.tests.test_views import staff
from jobs import lineage
from jobs.lineage import ROOT
from jobs.models import Job, StageRun, Theme
from stages import publish
from stages.tests.test_publish import SCRIPT, TOPIC, context, rendered  # noqa: F401 - the rendered fixture

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "sk-lineage-secret-0042"
SCENES = {
    "scenes": [
        {
            "segment": "hook",
            "source": "pexels",
            "provider": "pexels",
            "pexels": {
                "id": 3861969,
                "media": "photo",
                "url": "https://www.pexels.com/photo/3861969/",
                "photographer": "ThisIsEngineering",
                "photographer_url": "https://www.pexels.com/@thisisengineering",
            },
        },
        {"segment": "beat1", "source": "card", "provider": "cards", "text": "Pi 6 has an NPU"},
    ],
    "credits": ["Photo by ThisIsEngineering on Pexels (https://www.pexels.com/photo/3861969/)"],
}
OUTPUTS = {
    "trend_analysis": {"topic": TOPIC},
    "script_generation": {
        **SCRIPT,
        "provider": "openai",
        "writer": "openai:gpt-4o-mini",
        "prompt_version": "script-v3",
    },
    "scene_generation": SCENES,
    "voiceover": {"provider": "offline", "engine": "piper", "voice": "en_US-joe-medium"},
    "composition": {"mix": {"bed": "pulse.opus", "bed_gain_db": -12.5}},
}


@pytest.fixture
def made(db) -> Job:
    theme = Theme.objects.create(
        name="Tech pulse",
        slug="tech-pulse",
        voice="en_US-joe-medium",
        settings={"script_generation": {"providers": ["openai"], "openai": {"api_key": KEY, "model": "gpt-4o-mini"}}},
    )
    job = Job.objects.create(theme=theme, status=Job.Status.AWAITING_REVIEW, params={"topic_rank": 1, "token": KEY})
    for stage, output in OUTPUTS.items():
        StageRun.objects.create(job=job, stage=stage, status="succeeded", output=output)
    # an older, superseded script and a failed later attempt are not what shaped the video
    StageRun.objects.create(
        job=job, stage="script_generation", attempt=2, status="failed", output={"writer": "failed-one"}
    )
    StageRun.objects.create(
        job=job,
        stage="scene_generation",
        attempt=2,
        status="succeeded",
        output={"scenes": []},
        superseded_at="2026-01-01T00:00:00Z",
    )
    return job


def test_the_api_returns_the_lineage(client, made):
    user = make_user("viewer", "view_job", staff=True)
    client.force_login(user)
    resp = client.get(f"/api/jobs/{made.pk}/lineage")
    assert resp.status_code == 200
    body = resp.json()
    assert [(t["role"], t["url"]) for t in body["trends"]] == [
        ("topic", TOPIC["url"]),
        ("related", TOPIC["related"][0]["url"]),
        ("related", TOPIC["related"][1]["url"]),
    ]
    assert body["trends"][0]["trend_id"] == 7 and body["trends"][0]["source"] == "thecircuit"
    assert body["script"] == {
        "title": SCRIPT["title"],
        "provider": "openai",
        "model": "openai:gpt-4o-mini",
        "prompt_version": "script-v3",
    }
    assert body["voice"] == {"provider": "offline", "engine": "piper", "voice": "en_US-joe-medium"}
    hook, card = body["footage"]
    assert (hook["index"], hook["source"], hook["id"], hook["credit"]) == (1, "pexels", "3861969", "ThisIsEngineering")
    assert (card["index"], card["source"], card["id"]) == (2, "card", None)
    assert body["credits"] == SCENES["credits"]
    assert body["music"]["bed"] == "pulse.opus" and body["music"]["mood"] == "pulse"
    assert len(body["music"]["sha256"]) == 64 and "CC0" in body["music"]["license"]
    assert body["settings"]["stages"]["script_generation"]["openai"]["model"] == "gpt-4o-mini"
    assert body["settings"]["params"]["topic_rank"] == 1
    assert KEY not in resp.content.decode()  # the theme's key and the params' token are masked
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert body["code"]["source"] == "git" and body["code"]["commit"] == head
    assert body["edits"] == [] and body["overrides"] == {}


def test_the_lineage_needs_view_permission(client, made):
    client.force_login(make_user("nobody", staff=True))
    assert client.get(f"/api/jobs/{made.pk}/lineage").status_code == 403
    client.force_login(make_user("viewer", "view_job", staff=True))
    assert client.get("/api/jobs/999999/lineage").status_code == 404


def test_the_code_version_can_be_pinned_by_the_environment(monkeypatch):
    monkeypatch.setenv("TRENDREEL_CODE_VERSION", "v1.4.2")
    lineage.code_version.cache_clear()
    try:
        assert lineage.code_version() == {"commit": None, "version": "v1.4.2", "source": "env"}
    finally:
        monkeypatch.delenv("TRENDREEL_CODE_VERSION")
        lineage.code_version.cache_clear()


def test_the_review_page_shows_the_lineage_panel(client, made):
    client.force_login(staff("view_job"))
    html = client.get(reverse("console:review", args=[made.pk])).content.decode()
    assert 'id="lineage"' in html
    assert "openai:gpt-4o-mini" in html and "script-v3" in html and "ThisIsEngineering" in html
    assert "pulse.opus" in html and "en_US-joe-medium" in html
    assert KEY not in html


def test_the_outbox_writes_lineage_json_beside_the_video(tmp_path, rendered, settings):  # noqa: F811
    from jobs.tests.factories import approved

    theme = Theme.objects.create(name="Tech pulse", slug="tech-pulse-publish")
    job = approved(Job.objects.create(theme=theme, params={"password": KEY}))
    ctx = context(tmp_path, job, rendered)
    ctx.upstream.update({k: v for k, v in OUTPUTS.items() if k not in ctx.upstream})
    ctx.params = dict(job.params)
    publish.run(ctx)
    folder = Path(settings.OUTBOX_DIR) / str(job.pk)
    written = json.loads((folder / "lineage.json").read_text(encoding="utf-8"))
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["lineage"] == "lineage.json"
    assert written["job_id"] == job.pk and written["trends"][0]["url"] == TOPIC["url"]
    assert written["footage"][0]["credit"] == "ThisIsEngineering"
    assert written["code"]["version"] and KEY not in json.dumps(written)
