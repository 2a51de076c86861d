"""A Content-Security-Policy on every page, and pages that need no exception to it.

The policy (django-csp) allows scripts, styles, images and media from this site only: no inline
``<script>``, no ``<style>`` element, no ``style=""`` attribute and no ``on…=`` handler may appear
in a page, or the browser refuses it (the browser test checks that nothing is refused).
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from jobs import orchestrator
from jobs.models import Job
from jobs.tests.conftest import params

pytestmark = pytest.mark.django_db(transaction=True)

INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style[\s>]", re.I), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def policy(response) -> dict[str, str]:
    header = response.get("Content-Security-Policy", "")
    return {d.split()[0]: d for d in (p.strip() for p in header.split(";")) if d}


@pytest.fixture
def job(engine, theme, call_log, tmp_path) -> Job:
    return orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)


def pages(job: Job) -> list[str]:
    return [
        reverse("admin:index"),
        reverse("admin:jobs_job_changelist"),
        reverse("admin:jobs_job_change", args=[job.pk]),
        reverse("admin:jobs_theme_change", args=[job.theme_id]),
        reverse("admin:jobs_stagerun_changelist"),
        reverse("console:dashboard"),
        reverse("console:dashboard_live"),
        reverse("console:job_detail", args=[job.pk]),
        reverse("console:job_live", args=[job.pk]),
        reverse("console:review", args=[job.pk]),
        reverse("console:two_factor"),
        "/api/docs",
    ]


def test_every_page_has_a_strict_policy(client, admin_client, job):
    for url in [reverse("admin:login"), "/api/docs", "/api/openapi.json"]:
        found = policy(client.get(url))
        assert found.get("script-src") == "script-src 'self'", url
        assert found.get("style-src") == "style-src 'self'", url
        assert (
            found.get("object-src") == "object-src 'none'" and found.get("frame-ancestors") == "frame-ancestors 'none'"
        )
    for url in pages(job):
        resp = admin_client.get(url)
        assert resp.status_code == 200, url
        assert (
            "unsafe" not in resp["Content-Security-Policy"] and "script-src 'self'" in resp["Content-Security-Policy"]
        )


def test_pages_need_no_inline_script_or_style(client, admin_client, job):
    problems = []
    for c, url in [(client, reverse("admin:login"))] + [(admin_client, u) for u in pages(job)]:
        html = c.get(url).content.decode()
        problems += [f"{url}: {what}: {m.group(0)[:80]}" for rx, what in INLINE for m in rx.finditer(html)]
    assert problems == []


def test_a_view_only_user_sees_pages_without_inline_code_too(client, job):
    # view-only admin pages render read-only widgets, another set of templates
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_job", "view_theme"]))
    client.force_login(user)
    for url in (
        reverse("admin:jobs_job_change", args=[job.pk]),
        reverse("admin:jobs_theme_change", args=[job.theme_id]),
    ):
        html = client.get(url).content.decode()
        assert [what for rx, what in INLINE if rx.search(html)] == [], url


def test_the_lockout_page_needs_no_inline_code_either(client, settings):
    User.objects.create_user("locked", password="right-password-long", is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        resp = client.post(reverse("admin:login"), {"username": "locked", "password": "wrong"})
    assert resp.status_code == 429 and "Too many failed logins" in resp.content.decode()
    assert "script-src 'self'" in resp["Content-Security-Policy"]
    assert [what for rx, what in INLINE if rx.search(resp.content.decode())] == []
