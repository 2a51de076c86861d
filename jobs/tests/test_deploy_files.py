"""The deployment examples in deploy/ name commands and settings that exist."""

from __future__ import annotations

import re

from django.core.management import get_commands

from jobs.tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def commands_in(text: str) -> list[list[str]]:
    return [m.group(1).split() for m in re.finditer(r"manage\.py ([^\n'\"]+)", text)]


def test_every_process_in_the_examples_is_a_real_command():
    texts = [p.read_text() for p in [DEPLOY / "Procfile", *sorted((DEPLOY / "systemd").glob("*.service"))]]
    known = get_commands()
    found = [argv for text in texts for argv in commands_in(text)]
    assert {argv[0] for argv in found} >= {"worker", "migrate"}
    for argv in found:
        assert argv[0] in known, argv
    assert ["worker", "--cluster", "render"] in found
    for text in texts:
        for module in re.findall(r"gunicorn (\S+)", text):
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module


def test_the_example_environment_names_only_real_settings():
    from django.conf import settings

    readme = (ROOT / "README.md").read_text()
    for line in (DEPLOY / "trendreel.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name = line.split("=", 1)[0]
            assert hasattr(settings, name) or f"`{name}`" in readme, name
