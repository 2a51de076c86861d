"""Production settings pass ``manage.py check --deploy`` with no warnings.

Runs the real command in a subprocess with the production environment (DEBUG off, a long random
SECRET_KEY, HTTPS redirect, secure cookies, a year of HSTS, a real host name), so the settings
module is imported exactly as a deployment imports it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_production_settings() -> dict[str, str]:
    """The README's "Production settings" block, as variables (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Production settings", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    pairs = [line.split("#", 1)[0].strip().split("=", 1) for line in block.splitlines()]
    return {k: v for k, v in (p for p in pairs if len(p) == 2)}


def production_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC", "SECRET_KEY"))
    }
    env.pop("DATABASE_URL", None)
    env.update(readme_production_settings())
    assert env["SECRET_KEY"].startswith("change-me")  # the README's placeholder, replaced by a real key
    env.update(
        DJANGO_SETTINGS_MODULE="console.settings",
        TRENDREEL_VAR_DIR=str(tmp_path / "var"),
        SECRET_KEY=secrets.token_urlsafe(64),
    )
    return env


def test_the_readme_lists_the_settings_a_deployment_needs():
    found = readme_production_settings()
    for name in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"):
        assert name in found, name
    assert found["DEBUG"] in ("0", "false")


def test_it_passes_check_deploy_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # nothing but Django's own "no issues" line
    assert result.stdout.strip() == "System check identified no issues (0 silenced)." and result.stderr == ""


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_it_refuses_to_start_with_debug_off_and_no_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = manage(env, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY is not set" in result.stderr
    # the WSGI entry point (what gunicorn imports) refuses too: it runs no system checks
    code = "import console.wsgi"
    wsgi = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert wsgi.returncode != 0 and "SECRET_KEY is not set" in wsgi.stderr


def test_it_reads_the_secret_key_from_a_file(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    key_file = tmp_path / "key"
    key_file.write_text(secrets.token_urlsafe(64) + "\n")
    env["SECRET_KEY_FILE"] = str(key_file)
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    key_file.write_text("")
    result = manage(env, "check")
    assert result.returncode != 0 and "is empty" in result.stderr


def test_check_deploy_fails_on_the_development_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    env["DEBUG"] = "true"  # the only way to the development key
    result = manage(env, "check", "--deploy")  # an error fails the check at its default level
    assert result.returncode != 0
    assert "console.E001" in result.stderr + result.stdout


def test_a_setting_set_to_nothing_means_its_default(tmp_path):
    """``KEY=`` in an env file (or a compose file's ``KEY: ""``) is an unset setting, not an empty
    path or URL: the media folder is not the working directory, the database is the default."""
    env = production_env(tmp_path)
    env.update(DEBUG="1", MEDIA_ROOT="", DATABASE_URL="", TRENDREEL_OUTBOX="", TIME_ZONE="")
    code = (
        "from django.conf import settings as s; "
        "print(s.MEDIA_ROOT, s.OUTBOX_DIR, s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.TIME_ZONE)"
    )
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stdout + result.stderr
    media, outbox, engine, name, tz = result.stdout.strip().splitlines()[-1].split()
    var = tmp_path / "var"
    assert (media, outbox, tz) == (str(var / "media"), str(var / "outbox"), "UTC")
    assert engine == "django.db.backends.sqlite3" and name == str(var / "trendreel.sqlite3")
