"""Which trend source failed and why: on the console's job page, in the API, in the browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from console.models import ApiToken
from console.tests.test_browser import browser, login, make_user, shot  # noqa: F401 - the browser fixture
from console.tests.test_browser import page as page  # noqa: F401 - a fixture
from jobs import orchestrator
from jobs.models import Job, StageRun, Theme
from jobs.tests.conftest import TEST_FUNCTIONS, params

pytestmark = pytest.mark.django_db(transaction=True)
CORPUS = Path(__file__).resolve().parents[2] / "stages" / "tests" / "corpus" / "feeds"
SOURCES = [
    {"name": "thecircuit", "path": "feeds/technews.xml"},
    {"name": "intranet-wire", "url": "http://10.0.0.5/feed.xml"},
    {"name": "gone-wire", "path": "feeds/gone.xml"},
    {"name": "odd-listing", "path": str(CORPUS / "wrong_types_reddit.json")},
]


@pytest.fixture
def collected(engine, settings, tmp_path, call_log) -> Job:
    """A job whose trend_collection really read four sources: one good, three failing or odd."""
    settings.TRENDREEL_STAGE_FUNCTIONS = {**TEST_FUNCTIONS, "trend_collection": "stages.trend_collection.run"}
    settings.VAR_DIR = tmp_path / "var"
    settings.TRENDREEL_FETCH_ALLOW = []
    settings.TRENDREEL_SOURCE_DIRS = [CORPUS]
    theme = Theme.objects.create(name="Wire watch", slug="wire-watch", keywords=["ai"], sources=SOURCES)
    return orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)


def viewer() -> User:
    return make_user("viewer", "view_job")


def test_the_job_page_shows_which_source_failed_and_why(client, collected):
    run = collected.runs.get(stage="trend_collection")
    assert run.status == StageRun.Status.SUCCEEDED and run.output["failed_sources"] == 2
    client.force_login(viewer())
    html = client.get(reverse("console:job_detail", args=[collected.pk])).content.decode()
    assert f'id="run-{run.pk}-sources"' in html
    assert 'data-source="intranet-wire" data-status="failed"' in html
    assert "failed (permanent)" in html and "refused to connect to 10.0.0.5: a private address" in html
    assert 'data-source="gone-wire" data-status="failed"' in html and "not found" in html
    assert 'data-source="thecircuit" data-status="ok"' in html
    assert "title is list, not text: 1" in html  # the odd listing's skipped items, with their reasons


def test_the_api_shows_which_source_failed_and_why(client, collected):
    _, raw = ApiToken.issue(viewer(), "tests")
    body = client.get(f"/api/jobs/{collected.pk}", headers={"Authorization": f"Bearer {raw}"}).json()
    runs = {r["stage"]: r for r in body["runs"]}
    sources = {s["name"]: s for s in runs["trend_collection"]["sources"]}
    assert sources["intranet-wire"]["error_kind"] == "permanent"
    assert "a private address" in sources["intranet-wire"]["error"] and sources["intranet-wire"]["items"] == 0
    assert "not found" in sources["gone-wire"]["error"]
    assert sources["thecircuit"] | {"notes": []} == {
        "name": "thecircuit",
        "kind": "rss",
        "items": 10,
        "new": 10,
        "skipped": 0,
        "skip_reasons": {},
        "error": None,
        "error_kind": None,
        "not_modified": False,
        "notes": [],
    }
    odd = sources["odd-listing"]
    assert odd["items"] == 1 and odd["skipped"] == 7 and odd["skip_reasons"]["title is bool, not text"] == 1
    assert runs["trend_analysis"]["sources"] is None  # only collection runs have sources


@pytest.mark.browser
def test_the_job_page_in_a_browser(collected, live_server, page):
    make_user("operator", "view_job")
    login(page, live_server.url, "operator")
    run = collected.runs.get(stage="trend_collection")
    page.goto(live_server.url + reverse("console:job_detail", args=[collected.pk]))
    failed = page.locator(f'#run-{run.pk}-sources tr[data-status="failed"]')
    assert failed.count() == 2 and failed.first.is_visible()
    assert "private address" in failed.first.inner_text()
    page.locator(f"#run-{run.pk}-sources").scroll_into_view_if_needed()
    shot(page, "job-failed-source")
