"""Schemathesis against the published schema: no 5xx, every response as documented.

Runs the WSGI app in-process with a token that has every permission, at most 25 examples per
operation (the whole file stays well under a minute).
"""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth.models import Permission, User
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from console.models import ApiToken
from console.wsgi import application
from jobs.models import Theme

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token_headers(transactional_db, settings) -> dict[str, str]:
    # schemathesis sends bad tokens on purpose, many times: the login lockout (test_login.py) would
    # answer 429 to the rest of the run
    settings.AXES_FAILURE_LIMIT = 1_000_000
    Theme.objects.get_or_create(slug="test", defaults={"name": "Test"})
    user, _ = User.objects.get_or_create(username="fuzz")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_job", "add_job", "change_job", "review_job", "view_theme"])
    )
    _, raw = ApiToken.issue(user, "schemathesis")
    return {"Authorization": f"Bearer {raw}"}


# the published schema, fetched through the app like any client would (it needs no database)
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_it_answers_as_documented(case, token_headers):
    # an upload's content (a real, decodable image or clip) is beyond what a schema can say: a
    # schema-valid file of random bytes is refused (422) by design
    excluded = [positive_data_acceptance] if case.operation.path.endswith("/uploads") else []
    case.call_and_validate(headers=token_headers, excluded_checks=excluded)
