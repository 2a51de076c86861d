"""Trendreel settings: everything comes from the environment, with safe defaults.

Invalid values raise ``ImproperlyConfigured`` naming the variable, so a typo fails at start-up
instead of half-way through a job.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from jobs.queues import CLUSTER_NAME, queue_name

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TRENDREEL_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    """A setting's text; set but empty (``MEDIA_ROOT=`` in an env file) means unset, as for the
    numbers and switches below (an empty MEDIA_ROOT was the working directory, an empty
    DATABASE_URL an error about a scheme called '://')."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_json(name: str, default: Any) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None


DEBUG = env_bool("DEBUG", False)
DEV_SECRET_PREFIX = "dev-insecure-trendreel-"


def _secret_key() -> str:
    """``SECRET_KEY``, else the file ``SECRET_KEY_FILE`` names (default ``var/secret_key``, which
    ``make demo`` writes once with a random key), else, only with ``DEBUG`` on, a development key.

    With DEBUG off and no key the process refuses to start: a key anyone can guess signs sessions,
    CSRF tokens and password-reset links. Refused here, at settings load, rather than in a system
    check, because a WSGI server runs no checks.
    """
    key = env_str("SECRET_KEY").strip()
    if key:
        return key
    explicit = env_str("SECRET_KEY_FILE")
    path = Path(explicit) if explicit else VAR_DIR / "secret_key"
    if explicit or path.is_file():
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"SECRET_KEY_FILE={path} cannot be read: {exc.strerror}") from None
        if not key:
            raise ImproperlyConfigured(f"SECRET_KEY_FILE={path} is empty")
        return key
    if DEBUG:
        return DEV_SECRET_PREFIX + str(BASE_DIR)  # console.E001 fails check --deploy on it
    raise ImproperlyConfigured(
        "SECRET_KEY is not set and DEBUG is off: set SECRET_KEY (or SECRET_KEY_FILE) to a long random value, "
        "e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))', or DEBUG=1 for development"
    )


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = [
    h.strip() for h in env_str("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

INSTALLED_APPS = [
    "console.apps.AdminConfig",  # django.contrib.admin with console.admin_site as the site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "django_q",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "jobs",
    "stages",
    "console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): this session gave a second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # last, as django-axes asks: turns a locked-out login into the lockout response
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DEFAULT_SQLITE = VAR_DIR / "trendreel.sqlite3"
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DEFAULT_SQLITE}")
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)
except Exception as exc:  # dj-database-url raises ValueError / KeyError for unknown schemes
    raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the console read while a worker writes; IMMEDIATE takes the write lock at BEGIN so
    # two writers queue on busy_timeout instead of failing with "database is locked" mid-transaction.
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
    }
    # Tests (and the qcluster subprocesses they start) share one file, never an in-memory DB.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test_{Path(_db['NAME']).stem}.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("OPTIONS", {})
    # Persistent connections: django-q2 closes "old" connections before every task and on every
    # ORM-broker poll; with CONN_MAX_AGE=0 each of those opened a new PostgreSQL session
    # (3.6 per stage transition, 70/s from an idle cluster; see bench/RESULTS.md).
    _db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 300, minimum=0)
    # No statement waits for a row lock forever: a record step stuck behind a lock fails (and is
    # retried) instead of heartbeating forever; nothing here legitimately waits this long.
    _db["OPTIONS"]["options"] = f"-c lock_timeout={env_int('DB_LOCK_TIMEOUT', 20, minimum=1) * 1000}"
elif not _db["ENGINE"]:
    raise ImproperlyConfigured(f"DATABASE_URL scheme is not supported: {DATABASE_URL.split(':', 1)[0]}")
DATABASES = {"default": _db}
# The engine's hot-path statements (claim, record, next attempt, review gate) are prepared once per
# PostgreSQL session: planning them cost the database more than running them (bench/RESULTS.md).
# Turn off behind a pooler that cannot keep prepared statements (PgBouncer in transaction mode
# before 1.21, or without max_prepared_statements).
DB_PREPARED = env_bool("DB_PREPARED", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise serves the admin's and console's static files from the app folders (no collectstatic
# step for the one-machine set-up); media never goes through it.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_AUTOREFRESH = DEBUG
# Media is never served as static files: console views check the user first.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
OUTBOX_DIR = Path(env_str("TRENDREEL_OUTBOX", str(VAR_DIR / "outbox")))

LOGIN_URL = "admin:login"

# --- Login throttling (django-axes; see console/throttle.py and README "Login throttling") -------
# The axes backend refuses a locked-out login before the password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("TRENDREEL_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("TRENDREEL_LOCKOUT_MINUTES", 15.0, minimum=1.0))
AXES_LOCKOUT_PARAMETERS = "console.throttle.lockout_parameters"
AXES_CLIENT_IP_CALLABLE = "console.throttle.client_ip"
AXES_LOCKOUT_CALLABLE = "console.throttle.lockout_response"
AXES_VERBOSE = False  # one log line per failure is the access log's job, not a banner at start-up

# --- Two-factor authentication (django-otp TOTP; see console/two_factor.py, README) -------------
# Staff who may review (and superusers) must set up an authenticator app; everyone else may.
TRENDREEL_REQUIRE_2FA = env_bool("TRENDREEL_REQUIRE_2FA", False)
OTP_TOTP_ISSUER = env_str("TRENDREEL_OTP_ISSUER", "Trendreel")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the admin never shows a device's secret key or QR code again

# --- Security (check --deploy clean when DEBUG is off and the env says HTTPS) ------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG and SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp) on every response: scripts, styles, images, media and
# requests from this site only. No inline script, <style>, style="" or on…= handler runs: the
# console's styles and scripts are static files (console/static/console/), htmx's own indicator
# <style> is turned off by base.html's htmx-config, the admin and the API docs need nothing inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "media-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Messages wait in the session (server side), not in a signed cookie anyone can read: a new API
# token is shown once through one.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"


# --- API ------------------------------------------------------------------------------------
def _rate(name: str, default: str) -> tuple[int, int] | None:
    """``"600/m"`` (per s, m, h or d) -> (600, 60); ``off`` or ``0`` -> None (no limit)."""
    raw = env_str(name, default).strip().lower()
    if raw in ("", "0", "off", "none"):
        return None
    periods = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    count, _, unit = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or unit not in periods:
        raise ImproperlyConfigured(f"{name} must look like 600/m (requests per s, m, h or d) or off, not {raw!r}")
    return int(count), periods[unit]


# Requests per user (API token or console session) per window; over it the API answers 429 with
# Retry-After. Counted in the default cache, i.e. per web process.
TRENDREEL_API_RATE = _rate("TRENDREEL_API_RATE", "600/m")

# --- Pipeline engine ------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
TRENDREEL_WORKERS = env_int("TRENDREEL_WORKERS", 2, minimum=1)
# Seconds between a running stage's heartbeats (which also carry cancel detection).
TRENDREEL_HEARTBEAT_SECONDS = env_float("TRENDREEL_HEARTBEAT_SECONDS", 1.0, minimum=0.05)
# A running attempt whose heartbeat is older than this is taken for dead (worker killed).
TRENDREEL_STALE_SECONDS = env_float("TRENDREEL_STALE_SECONDS", 30.0, minimum=0.2)
# How often the sweeper loop inside `manage.py worker` runs.
TRENDREEL_SWEEP_SECONDS = env_float("TRENDREEL_SWEEP_SECONDS", 1.0, minimum=0.05)
# A queued run pushed this long ago and still not claimed is pushed again (lost Redis push,
# tasks prefetched by a killed cluster). Duplicates are harmless: the claim is conditional.
TRENDREEL_REQUEUE_SECONDS = env_float("TRENDREEL_REQUEUE_SECONDS", 120.0, minimum=0.1)
# Per-stage function overrides {"stage_key": "dotted.path"} and policy overrides
# {"stage_key": {"time_limit": 5, "max_attempts": 2, "backoff_base": 0.1, "backoff_cap": 1}}.
TRENDREEL_STAGE_FUNCTIONS = env_json("TRENDREEL_STAGE_FUNCTIONS", {})
TRENDREEL_STAGE_POLICY = env_json("TRENDREEL_STAGE_POLICY", {})
if not isinstance(TRENDREEL_STAGE_FUNCTIONS, dict) or not isinstance(TRENDREEL_STAGE_POLICY, dict):
    raise ImproperlyConfigured("TRENDREEL_STAGE_FUNCTIONS and TRENDREEL_STAGE_POLICY must be JSON objects")

# Due runs pushed this long ago with no claim anywhere in that time: the worker restarts its
# django-q2 cluster (a SIGKILLed idle worker leaves the shared task queue's read lock held).
TRENDREEL_STALL_SECONDS = env_float("TRENDREEL_STALL_SECONDS", 60.0, minimum=1.0)

# Downloaded stock media (MEDIA_ROOT/cache/pexels) is kept up to this size; the least recently
# used files go first (a job's own copy is a hard link, so pruning never touches a checkpoint).
TRENDREEL_CACHE_MB = env_int("TRENDREEL_CACHE_MB", 2048, minimum=0)
# size cap of one uploaded image or clip for a targeted edit (stages/uploads.py), in MB
TRENDREEL_UPLOAD_MB = env_int("TRENDREEL_UPLOAD_MB", 200, minimum=1)
# `manage.py worker` removes, once an hour, the media files of completed and rejected jobs that
# finished more than this many days ago (records stay; 0 keeps everything). See jobs/retention.py.
TRENDREEL_MEDIA_RETENTION_DAYS = env_float("TRENDREEL_MEDIA_RETENTION_DAYS", 0.0, minimum=0.0)
# The analytics pull (jobs/analytics.py): a django-q2 schedule every this many minutes (0: none)
# reads the numbers of videos published in the last TRENDREEL_ANALYTICS_DAYS days.
TRENDREEL_ANALYTICS_MINUTES = env_int("TRENDREEL_ANALYTICS_MINUTES", 60, minimum=0)
TRENDREEL_ANALYTICS_DAYS = env_int("TRENDREEL_ANALYTICS_DAYS", 30, minimum=1)


# The cost ledger's price table (jobs/prices.py): {provider: {metric: US dollars}}, each price per
# 1M tokens (llm_tokens_in/out), per 1M characters (tts_characters), per call (api_calls), per GB
# (upload_bytes) or per CPU hour (render_cpu_seconds). TRENDREEL_PRICES (JSON) is merged over these
# defaults metric by metric ({"openai/gpt-4o-mini": {"llm_tokens_in": 0.2}}, 0 to make one free).
# A usage key without a price costs nothing: self-hosted models ("localhost:11434/llama3.1:8b")
# and offline engines are free; the children's CPU of every attempt is "local" render CPU.
# The defaults are public list prices as of 2025 (check them against your own contract):
# * OpenAI (openai.com/api/pricing): gpt-4o-mini $0.15 in / $0.60 out per 1M tokens, gpt-4o
#   $2.50 / $10.00, gpt-4.1 $2.00 / $8.00, gpt-4.1-mini $0.40 / $1.60, gpt-4.1-nano $0.10 / $0.40;
#   speech tts-1 $15 and tts-1-hd $30 per 1M characters; gpt-4o-mini-tts is billed by tokens, about
#   $0.015 a minute of speech, which at ~1000 characters a minute is about $15 per 1M characters.
# * ElevenLabs (elevenlabs.io/pricing): Creator plan's extra characters, $0.30 per 1000 (= $300
#   per 1M); a plan's included characters cost less, so set your own.
# * Pexels, YouTube Data API, TikTok Content Posting, Instagram Graph API, Reddit, Hacker News:
#   no charge per call (quotas instead); uploads cost your host's egress, 0 by default.
# * Render CPU: AWS c7i.large on-demand, $0.08925 an hour for 2 vCPUs, ~$0.045 per CPU hour.
TRENDREEL_PRICE_DEFAULTS: dict[str, dict[str, float]] = {
    "openai/gpt-4o-mini": {"llm_tokens_in": 0.15, "llm_tokens_out": 0.60},
    "openai/gpt-4o": {"llm_tokens_in": 2.50, "llm_tokens_out": 10.00},
    "openai/gpt-4.1": {"llm_tokens_in": 2.00, "llm_tokens_out": 8.00},
    "openai/gpt-4.1-mini": {"llm_tokens_in": 0.40, "llm_tokens_out": 1.60},
    "openai/gpt-4.1-nano": {"llm_tokens_in": 0.10, "llm_tokens_out": 0.40},
    "openai/tts-1": {"tts_characters": 15.00},
    "openai/tts-1-hd": {"tts_characters": 30.00},
    "openai/gpt-4o-mini-tts": {"tts_characters": 15.00},
    "openai": {"api_calls": 0},
    "elevenlabs": {"tts_characters": 300.00, "api_calls": 0},
    "pexels": {"api_calls": 0},
    "feed": {"api_calls": 0},
    "youtube": {"api_calls": 0, "upload_bytes": 0},
    "tiktok": {"api_calls": 0, "upload_bytes": 0},
    "instagram": {"api_calls": 0, "upload_bytes": 0},
    "webhook": {"api_calls": 0, "upload_bytes": 0},
    "piper": {"tts_characters": 0},
    "espeak-ng": {"tts_characters": 0},
    "local": {"render_cpu_seconds": 0.045},
}


def _prices() -> dict[str, dict[str, Any]]:
    from jobs.prices import PriceError, parse

    raw = env_json("TRENDREEL_PRICES", {})
    try:
        table = parse(raw, base=TRENDREEL_PRICE_DEFAULTS)
    except PriceError as exc:
        raise ImproperlyConfigured(f"TRENDREEL_PRICES: {exc}") from None
    return {provider: {metric: str(price) for metric, price in row.items()} for provider, row in table.items()}


TRENDREEL_PRICES = _prices()


# Outbound requests and local inputs (stages/egress.py, stages/feeds/sources.py): comma-separated.
def _host_list(name: str) -> list[str]:
    from stages.egress import AllowList

    entries = [e.strip() for e in env_str(name).split(",") if e.strip()]
    try:
        AllowList.parse(entries)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    return entries


# Hosts or CIDRs feeds, providers and webhooks may reach although they are not public addresses.
TRENDREEL_FETCH_ALLOW = _host_list("TRENDREEL_FETCH_ALLOW")
# Hosts, besides each provider's default ones, that may receive keys from the environment.
TRENDREEL_PROVIDER_HOSTS = _host_list("TRENDREEL_PROVIDER_HOSTS")
# Folders besides stages/assets that theme sources may name with "path".
TRENDREEL_SOURCE_DIRS = [Path(p.strip()).expanduser() for p in env_str("TRENDREEL_SOURCE_DIRS").split(",") if p.strip()]

_poll = env_float("TRENDREEL_BROKER_POLL", 0.01, minimum=0.001)
# The ORM broker hands an unacknowledged task out again after `retry` seconds. It must exceed the
# longest stage time limit plus queue wait, or a slow stage would be started twice while running
# (the conditional claim makes that harmless, but it wastes a worker).
_retry = env_int("TRENDREEL_BROKER_RETRY", 3600, minimum=30)
Q_CLUSTER: dict[str, Any] = {
    "name": env_str("TRENDREEL_CLUSTER_NAME", "trendreel"),
    "workers": TRENDREEL_WORKERS,
    "recycle": 500,
    "timeout": _retry - 10,
    "retry": _retry,
    "max_attempts": 1,  # retries are the orchestrator's (backoff, jitter, crash counting)
    "ack_failures": True,
    "queue_limit": TRENDREEL_WORKERS * 2,
    "save_limit": -1,  # no result rows: StageRun is the record
    "catch_up": False,
    "poll": _poll,
    "label": "Task queue",
}
# Clusters: a stage whose policy names a cluster (TRENDREEL_STAGE_POLICY, e.g. {"composition":
# {"cluster": "render"}}) is pushed to that cluster's queue, read only by workers started with
# TRENDREEL_CLUSTER (or `manage.py worker --cluster`) set to it; the default cluster ("") runs the
# rest. TRENDREEL_QUEUE_NAME is the default queue's name (the base of the others).
TRENDREEL_CLUSTER = env_str("TRENDREEL_CLUSTER", "")
if TRENDREEL_CLUSTER and not CLUSTER_NAME.fullmatch(TRENDREEL_CLUSTER):
    raise ImproperlyConfigured(f"TRENDREEL_CLUSTER must be lowercase letters, digits, - or _: {TRENDREEL_CLUSTER!r}")
TRENDREEL_QUEUE_BASE = env_str("TRENDREEL_QUEUE_NAME", Q_CLUSTER["name"])
Q_CLUSTER["cluster_name"] = queue_name(TRENDREEL_QUEUE_BASE, TRENDREEL_CLUSTER)
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    # One cache for every web process (the API request budget, the dashboard's stage stats);
    # without Redis each process keeps its own in memory.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "trendreel-cache",
        }
    }
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["broker_class"] = "jobs.broker.FifoORM"  # oldest task first (see jobs/broker.py)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django-q": {"level": env_str("Q_LOG_LEVEL", "WARNING"), "propagate": True},
        # httpx logs full request URLs (query tokens included) at INFO: keep secrets out of logs
        "httpx": {"level": env_str("HTTPX_LOG_LEVEL", "WARNING"), "propagate": True},
        "httpcore": {"level": "WARNING", "propagate": True},
    },
}
