"""Every URL in the project refuses strangers: walked from the resolver, so a new URL is covered too.

Anonymous users and logged-in users without staff or permissions get a redirect to the login
page, 401 or 403 from every view (each path converter filled with a real object's id, so the
view runs instead of a 404). The few public URLs are listed in ``PUBLIC`` with the reason.
"""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern

from console.models import ApiToken
from jobs import orchestrator
from jobs.models import Artifact, Job, ReviewDecision, Theme
from jobs.tests.conftest import params

pytestmark = pytest.mark.django_db(transaction=True)

# name -> why it answers without a login
PUBLIC = {
    "home": "redirects to the console, which then asks for a login",
    "admin:login": "the login page",
    "admin:logout": "POST-only logout (GET is 405); logging out needs no rights",
    "api:openapi-json": "the API schema is public; it holds no data",
    "api:openapi-view": "the Swagger page for that schema; no data",
    "api:api-root": "redirects to the docs page",
}
# authenticated users without any permission may read health (it holds no data); any staff user sets
# up their own second factor
ANY_AUTHENTICATED = {"api:health", "console:two_factor", "console:two_factor_qr"}
DENIED = {302, 401, 403}


def walk(patterns, prefix: str = "", ns: tuple[str, ...] = ()):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern), ns + ((p.namespace,) if p.namespace else ()))
        elif isinstance(p, URLPattern):
            name = ":".join([*ns, p.name]) if p.name else ":".join([*ns, f"<unnamed {p.pattern}>"])
            yield name, prefix + str(p.pattern), isinstance(p.pattern, RegexPattern)


@pytest.fixture
def world(engine, theme, call_log, tmp_path) -> dict:
    job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
    owner = User.objects.create_superuser("owner", password="pw")
    ReviewDecision.objects.create(job=job, decision="approve", decided_by=owner)
    ApiToken.issue(owner, "walk")
    return {"job": job, "theme": theme, "artifact": Artifact.objects.filter(job=job).first(), "owner": owner}


def fill(route: str, regex: bool, world: dict) -> str:
    """The URL with every converter replaced by an existing object's id."""
    job, theme = world["job"], world["theme"]
    admin_model = re.match(r"admin/(\w+)/(\w+)/", route)

    def value(name: str) -> str:
        if name == "pk":
            return str(theme.pk if route.startswith("console/themes/") else job.pk)
        if name in ("job_id",):
            return str(job.pk)
        if name == "artifact_id":
            return str(world["artifact"].pk)
        if name == "action":
            return "cancel"
        if name == "content_type_id":
            return str(ContentType.objects.get_for_model(Job).pk)
        if name == "id":
            return str(world["owner"].pk)
        if name == "object_id":
            if route.startswith("admin/r/"):
                return str(job.pk)
            if admin_model:
                model = apps.get_model(admin_model.group(1), admin_model.group(2))
                obj = model._default_manager.order_by("pk").first()
                return str(obj.pk if obj else 1)
        if name == "app_label":
            return "jobs"
        if name == "url":
            return "nowhere/"
        raise AssertionError(f"no value for <{name}> in {route}")

    if regex:
        route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: value(m.group(1)), route)
        route = route.replace("^", "").replace("$", "")
    else:
        route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: value(m.group(1)), route)
    return "/" + route


def answers(client: Client, url: str) -> list[tuple[str, int, str]]:
    """Status for GET, or for each method the view allows when GET is not one of them."""
    resp = client.get(url)
    results = [("GET", resp.status_code, resp.get("Location", ""))]
    if resp.status_code == 405:
        results = []
        for method in [m.strip() for m in resp.get("Allow", "").split(",") if m.strip() and m.strip() != "GET"]:
            r = getattr(client, method.lower())(url)
            results.append((method, r.status_code, r.get("Location", "")))
        assert results, f"{url}: 405 without an Allow header"
    return results


def check_walk(client: Client, world: dict, *, allowed_public: set[str]) -> list[str]:
    problems, seen = [], 0
    for name, route, regex in walk(get_resolver().url_patterns):
        if name in allowed_public:
            continue
        url = fill(route, regex, world)
        for method, status, location in answers(client, url):
            seen += 1
            if status not in DENIED or (status == 302 and "/admin/login/" not in location):
                problems.append(f"{method} {url} ({name}) -> {status} {location}")
    assert seen > 100  # the walk really covered the admin, console and API
    return problems


def test_it_refuses_every_url_to_anonymous_users(client, world):
    assert check_walk(client, world, allowed_public=set(PUBLIC)) == []


def test_it_refuses_every_url_to_users_without_staff_or_permissions(client, world):
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert check_walk(client, world, allowed_public=set(PUBLIC)) == []


def test_it_refuses_console_and_api_to_staff_without_permissions(client, world):
    client.force_login(User.objects.create_user("bare-staff", password="pw", is_staff=True))
    problems = []
    for name, route, regex in walk(get_resolver().url_patterns):
        if not name.startswith(("console:", "api:")) or name in PUBLIC or name in ANY_AUTHENTICATED:
            continue
        url = fill(route, regex, world)
        for method, status, _ in answers(client, url):
            if status != 403:
                problems.append(f"{method} {url} ({name}) -> {status}")
    assert problems == []
    assert client.get("/api/health").status_code == 200


def test_public_urls_hold_no_data(client, world):
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200 and "/api/jobs/{job_id}" in schema.json()["paths"]
    text = schema.content.decode()
    assert world["theme"].name not in text and str(world["job"].params["call_log"]) not in text
    assert client.get("/api/docs").status_code == 200


def test_api_artifact_urls_point_only_at_the_jobs_own_files(client, world, theme):
    job, art = world["job"], world["artifact"]
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_job"]))
    client.force_login(user)
    detail = client.get(f"/api/jobs/{job.pk}").json()
    urls = [a["url"] for run in detail["runs"] for a in run["artifacts"]]
    assert urls and all(u.startswith(f"http://testserver/console/jobs/{job.pk}/media/") for u in urls)
    assert client.get(urls[0].removeprefix("http://testserver")).status_code == 200
    # another job's id with this artifact: 404; an artifact path escaping MEDIA_ROOT: 404
    other = Job.objects.create(theme=theme)
    assert client.get(f"/console/jobs/{other.pk}/media/{art.pk}/").status_code == 404
    assert client.get(f"/api/jobs/{other.pk}").json()["runs"] == []
    Artifact.objects.filter(pk=art.pk).update(path="../../../../etc/passwd")
    resp = client.get(f"/console/jobs/{job.pk}/media/{art.pk}/")
    assert resp.status_code == 404
    assert client.get(f"/console/jobs/{job.pk}/media/99999999/").status_code == 404
    assert Theme.objects.count() == 1
