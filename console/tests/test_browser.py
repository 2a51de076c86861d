"""The console in a real browser (Debian's Chromium driven by Playwright) against a live server
and a real worker process: log in, run a theme, watch it live, retry a failure, review."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from playwright.sync_api import expect

from jobs.models import Job, Theme

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Every page reports what its Content-Security-Policy refused (an inline script or style, a handler,
# another origin) to the console, where the fixture collects it: a test fails on any refusal.
REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    context.add_init_script(REPORT_CSP)
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: (
            violations.append(msg.text)
            if "CSP violation" in msg.text or "Content Security Policy" in msg.text
            else None
        ),
    )
    page.csp_violations = violations
    yield page
    context.close()
    assert violations == [], "the Content-Security-Policy refused something"


def login(page, base: str, username: str) -> None:
    page.goto(base + reverse("admin:login"))
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def make_user(name: str, *codenames: str, superuser: bool = False) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True, is_superuser=superuser)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_operator_runs_watches_retries_and_a_reviewer_approves(page, live_server, start_worker, engine):
    theme = Theme.objects.create(
        name="Browser theme",
        slug="browser",
        keywords=["ai"],
        sources=[{"name": "x", "path": "x"}],
        settings={
            "test_behave": {
                s: ["sleep:0.5"]
                for s in ["trend_collection", "trend_analysis", "script_generation", "scene_generation"]
            }
            | {"voiceover": ["permanent", "sleep:0.3"]}
        },
    )
    make_user("operator", "view_job", "change_job", "add_job", "view_theme", "change_theme")
    make_user("reviewer", superuser=True)
    worker = start_worker("worker")
    base = live_server.url

    login(page, base, "operator")
    page.goto(base + reverse("admin:jobs_theme_change", args=[theme.pk]))
    page.click("#run-now")
    page.wait_for_url("**/console/jobs/*/")
    job = Job.objects.get()
    page.evaluate("window.__noReload = 'still here'")

    # stages advance on the page without a reload
    page.wait_for_selector('tr[data-stage="trend_collection"][data-status="succeeded"]')
    page.wait_for_selector(
        'tr[data-stage="script_generation"][data-status="running"], tr[data-stage="script_generation"][data-status="succeeded"]'
    )
    shot(page, "job-page-running")
    # the failing stage shows its error and hint, live
    error = page.wait_for_selector("#job-error")
    assert "voiceover" in error.inner_text() and "got bad input" in error.inner_text()
    assert "fix the theme's sources" in error.inner_text()
    assert page.evaluate("window.__noReload") == "still here"
    shot(page, "job-page-failed")

    page.click("#retry-btn")
    page.wait_for_selector("#review-link", timeout=60_000)
    assert page.inner_text("#job-status") == "Awaiting review"
    job.refresh_from_db()
    assert job.runs.filter(stage="trend_collection").count() == 1  # resumed, not restarted
    shot(page, "job-page-review")

    page.goto(base + reverse("console:dashboard"))
    page.wait_for_selector("text=Review queue")
    shot(page, "dashboard")

    # an operator without the permission sees the video but cannot decide
    page.goto(base + reverse("console:review", args=[job.pk]))
    assert page.is_visible("#no-review-perm")
    assert page.query_selector("#approve-btn") is None
    page.context.clear_cookies()

    login(page, base, "reviewer")
    page.goto(base + reverse("console:review", args=[job.pk]))
    shot(page, "review-page")
    page.fill("textarea[name=notes]", "Looks good")
    page.click("#approve-btn")
    page.wait_for_url(f"**/console/jobs/{job.pk}/")
    # (expect, not wait_for_function: its polling evaluates a string, which the page's CSP refuses)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=60_000)
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert job.reviews.get().decided_by.username == "reviewer"
    shot(page, "job-page-completed")
    assert "Looks good" in page.inner_text("body")
    del worker


def test_the_admin_the_console_and_the_api_docs_work_under_the_policy(page, live_server, engine):
    """Pages this suite does not drive elsewhere: the admin's lists and forms (their scripts), the
    theme page's run buttons, the job list, and the Swagger page (its bundle renders the operations)."""
    theme = Theme.objects.create(
        name="Policy theme", slug="policy", keywords=["ai"], sources=[{"name": "x", "path": "x"}]
    )
    make_user("admin-user", superuser=True)
    base = live_server.url
    page.goto(base + reverse("admin:login"))
    shot(page, "admin-login")
    login(page, base, "admin-user")
    header = page.request.get(base + reverse("console:dashboard")).headers["content-security-policy"]
    assert "script-src 'self'" in header and "unsafe-inline" not in header
    page.goto(base + reverse("admin:jobs_theme_change", args=[theme.pk]))
    page.fill("input.batch-size", "2")
    page.click("#run-batch")
    page.wait_for_url("**/console/")
    page.wait_for_selector("text=Running")
    assert Job.objects.count() == 2
    # the bars get their widths from console.js (a style="" attribute would be refused)
    for bar in page.locator("[data-width]").all():
        expect(bar).to_have_attribute("style", re.compile(r"width: [0-9.]+%"))
    shot(page, "dashboard-under-csp")
    page.goto(base + reverse("admin:jobs_job_changelist"))
    page.check("#action-toggle")  # the admin's own actions.js
    assert page.is_checked(f"input[name=_selected_action][value='{Job.objects.first().pk}']")
    page.goto(base + reverse("admin:jobs_theme_add"))
    page.locator("#id_name").press_sequentially("Slug Test")
    assert page.input_value("#id_slug") == "slug-test"  # prepopulate.js ran
    page.goto(base + reverse("console:two_factor"))  # the QR code is an SVG from this site
    page.wait_for_load_state("load")
    assert page.locator("img.totp-qr").evaluate("img => img.naturalWidth") > 0
    shot(page, "two-factor-setup")
    page.goto(base + "/api/docs")
    page.wait_for_selector('.opblock-summary-path[data-path="/api/generate"]')
    shot(page, "api-docs")
