"""System checks that stop a misconfigured deployment at start-up instead of mid-job."""

from __future__ import annotations

from stages.apps import check_broker_retry, check_provider_paths, check_stage_paths


def test_a_stage_limit_longer_than_the_broker_redelivery_is_an_error(settings):
    assert check_broker_retry() == []
    settings.TRENDREEL_STAGE_POLICY = {"composition": {"time_limit": settings.Q_CLUSTER["retry"]}}
    errors = check_broker_retry()
    assert [e.id for e in errors] == ["stages.E002"]


def test_a_stage_path_that_does_not_import_is_an_error(settings):
    assert check_stage_paths() == []
    settings.TRENDREEL_STAGE_FUNCTIONS = {"voiceover": "stages.nope.run"}
    errors = check_stage_paths()
    assert [e.id for e in errors] == ["stages.E001"] and "stages.nope.run" in errors[0].msg


def test_a_registered_provider_that_does_not_import_is_an_error(monkeypatch):
    from stages import voiceover

    assert check_provider_paths() == []
    monkeypatch.setitem(voiceover.PROVIDERS.providers, "polly", "stages.providers.polly.PollyProvider")
    errors = check_provider_paths()
    assert [e.id for e in errors] == ["stages.E003"] and "polly" in errors[0].msg
