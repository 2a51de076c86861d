"""The JSON API (django-ninja): the console's actions for scripts and other services.

Same rules as the console: every action goes through ``jobs.orchestrator``; permissions are the
console's (``jobs.view_job`` to read, ``change_job`` to retry/cancel, ``add_job`` to start,
``review_job`` to decide, ``view_theme`` for themes). Authentication is a per-user bearer token
(``console.models.ApiToken``) or, for the console itself, a staff session with CSRF on writes.

Errors are always ``{"detail": "..."}``: 400 unreadable body, 401 no/invalid credentials, 403 no
permission, 404 unknown job or theme, 409 the job's state does not allow the action (or an
Idempotency-Key reused for another request), 413 body over ``MAX_BODY``, 422 invalid input
(wrong types, unknown stage, unknown fields), 429 over the request budget or after too many
failed tokens from one address (``console.throttle``). An unknown theme slug in a body is 404: the input
is well-formed and names a resource that does not exist, like an unknown job id in a path
(stages are a fixed list, in the schema, so an unknown stage is 422). Nothing is written on bad
input.

Secrets never leave: values of keys named like key/token/secret/password in theme settings,
sources and job params are masked, and the masked values are scrubbed from messages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Annotated, Any, Literal

import pydantic
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Prefetch
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from ninja import Field, File, Header, NinjaAPI, Path, Query, Schema, Status, UploadedFile
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import BaseThrottle
from ninja.utils import check_csrf
from pydantic import field_validator
from typing_extensions import TypeAliasType

from console import throttle, two_factor
from console.models import ApiToken, IdempotencyKey
from console.secrets import MASK, is_secret_name, job_secrets, mask_secrets, scrub, secret_paths  # noqa: F401
from jobs import orchestrator
from jobs.models import Job, JobEdit, ReviewDecision, StageRun, Theme
from jobs.orchestrator.sweeper import SCHEDULE_NAME as SWEEP_SCHEDULE
from jobs.validation import BATCH_MAX, batch_count
from stages import edits as editing
from stages import pipeline, uploads
from stages.edits import EditError

log = logging.getLogger("trendreel.api")

MAX_BODY = 64 * 1024  # bytes; larger bodies get 413 before anything reads them
MAX_ID = 2**63 - 1  # bigint: larger ids would be a database error, not a 404
MAX_PAGE = 100
SLUG_PATTERN = r"^[-a-zA-Z0-9_]+$"

StageKey = Literal[pipeline.STAGE_KEYS]  # type: ignore[valid-type]
JobStatus = Literal[tuple(Job.Status.values)]  # type: ignore[valid-type]
Decision = Literal[tuple(ReviewDecision.Decision.values)]  # type: ignore[valid-type]


# --- authentication ---------------------------------------------------------------------------


def _permitted(user, perm: str | None):
    """Checked with authentication, before the body is read: no input is judged for a stranger."""
    if perm and not user.has_perm(perm):
        raise HttpError(403, f"permission denied: this needs {perm}")
    return user


class Locked(HttpError):
    """Too many failed logins from this address (django-axes): 429 with Retry-After."""

    def __init__(self) -> None:
        super().__init__(429, throttle.lockout_message())


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <token>``: a usable ApiToken (not revoked, active user) with ``perm``."""

    def __init__(self, perm: str | None = None) -> None:
        self.perm = perm
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str):
        if not throttle.token_allowed(request):
            raise Locked()
        api_token = ApiToken.authenticate(token.strip())
        if api_token is None:
            throttle.token_failed(request)  # counted by django-axes, as a failed password is
            return None
        request.api_token = api_token  # type: ignore[attr-defined]
        return _permitted(api_token.user, self.perm)


class ConsoleSessionAuth(APIKeyCookie):
    """The console's session: an active staff user, CSRF-checked on unsafe methods.

    A request carrying an Authorization header is a token request and never falls back to
    cookies (a bad token is 401, not a CSRF error or a session user).
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, perm: str | None = None) -> None:
        self.perm = perm
        super().__init__(csrf=True)

    def __call__(self, request: HttpRequest):
        if "Authorization" in request.headers:
            return None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if not (user.is_active and user.is_staff):
            raise HttpError(403, "the console session needs an active staff user")
        if not two_factor.satisfied(request):
            raise HttpError(403, "this session has not given its second factor: log in again with your code")
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS", "TRACE")
        if unsafe and not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request) is not None:
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header with a session request")
        return _permitted(user, self.perm)

    def authenticate(self, request: HttpRequest, key: str | None):  # pragma: no cover - __call__ decides
        return None


def limit_body(run):
    """Refuse bodies over ``MAX_BODY`` with 413 before anything reads them (a "view" decorator).

    An operation whose function has ``max_body`` (a callable: the uploads' own cap) uses that instead.
    """
    own = getattr(getattr(getattr(run, "__self__", None), "view_func", None), "max_body", None)

    @wraps(run)
    def wrapped(request: HttpRequest, *args, **kwargs):
        raw = request.META.get("CONTENT_LENGTH") or "0"
        limit = own() if own is not None else MAX_BODY
        try:
            length = int(raw)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number"}, status=400)
        if length > limit:
            return JsonResponse({"detail": f"request body too large: {length} bytes, the limit is {limit}"}, status=413)
        return run(request, *args, **kwargs)

    return wrapped


class UserRateThrottle(BaseThrottle):
    """``TRENDREEL_API_RATE`` requests per user per sliding window (read per request, so tests and
    operators can change it). Runs after authentication: an unauthenticated request spends nothing.
    The per-request state ninja's ``wait()`` needs is thread-local (the throttle is shared)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def allow_request(self, request: HttpRequest) -> bool:
        rate = settings.TRENDREEL_API_RATE
        user = getattr(request, "auth", None)
        if not rate or getattr(user, "pk", None) is None:
            return True
        count, seconds = rate
        key = f"trendreel-api-rate:{user.pk}"
        now = time.time()
        history = [t for t in cache.get(key, []) if t > now - seconds]  # newest first
        if len(history) >= count:
            self._local.wait = max(1.0, history[count - 1] + seconds - now)
            cache.set(key, history, seconds)
            return False
        cache.set(key, [now, *history], seconds)
        return True

    def wait(self) -> float | None:
        return getattr(self._local, "wait", None)


class BodyNotJson(ValueError):
    """Why a request body is not JSON, in words a client can act on (and no part of the body)."""


def _no_constants(name: str):
    raise BodyNotJson(f"{name} is not valid JSON (send null, or a number)")


class StrictJsonParser(Parser):
    """Python's json module accepts NaN, Infinity and -Infinity, which no JSON standard allows
    and the database's JSON column refuses (that was a 500): refuse them here, as bad JSON."""

    def parse_body(self, request: HttpRequest):
        try:
            return json.loads(request.body, parse_constant=_no_constants)
        except json.JSONDecodeError as exc:
            raise BodyNotJson(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None


api = NinjaAPI(
    title="Trendreel API",
    version="1",
    description=__doc__.split("\n\n", 1)[1],
    urls_namespace="api",
    auth=[TokenAuth(), ConsoleSessionAuth()],
    throttle=[UserRateThrottle()],
    parser=StrictJsonParser(),
)
api.add_decorator(limit_body, mode="view")


# --- errors -----------------------------------------------------------------------------------


def _error(request: HttpRequest, status: int, detail: str):
    return api.create_response(request, {"detail": detail}, status=status)


_UNION_TAG = re.compile(r"[\[\]]|^(str|int|float|bool|none|constrained-str)$")


def _loc(loc: Any) -> str:
    # ninja's locations look like ("body", "payload", "theme"): drop the parameter's own name, and
    # pydantic's union branch tags ("str", "dict[...]"), which say nothing to a client
    parts = [str(p) for p in (loc or ())]
    if len(parts) >= 2 and parts[0] == "body":
        parts = [parts[0], *parts[2:]]
    return ".".join(p for p in parts if not _UNION_TAG.search(p))


def _message(errors: list[dict]) -> str:
    if len(errors) == 1:
        # a validator's own ValueError text is the message; pydantic's "Value error, " adds nothing
        return str(errors[0].get("msg", "invalid")).removeprefix("Value error, ")
    # a union (JSON params) refused every branch: say why in one line
    if any(e.get("type") == "string_pattern_mismatch" for e in errors):
        return "text may not contain NUL characters"
    if any(e.get("type") == "string_unicode" for e in errors):
        return "text must be valid Unicode"
    return "not a valid value here"


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    grouped: dict[str, list[dict]] = {}
    for err in exc.errors:
        grouped.setdefault(_loc(err.get("loc")), []).append(err)
    messages = [f"{where}: {_message(errs)}" if where else _message(errs) for where, errs in list(grouped.items())[:10]]
    return _error(request, 422, "; ".join(messages) or "invalid input")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError):
    detail = str(exc)
    if isinstance(exc.__cause__, BodyNotJson):  # ninja says only "Cannot parse request body": say why
        detail = f"{detail}: {exc.__cause__}"
    response = _error(request, exc.status_code, detail)
    if isinstance(exc, Locked):
        response["Retry-After"] = str(throttle.retry_after())
    return response


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError):
    response = _error(request, 401, "authentication required: send 'Authorization: Bearer <token>'")
    response["WWW-Authenticate"] = 'Bearer realm="trendreel"'
    return response


@api.exception_handler(orchestrator.InvalidState)
def _invalid_state(request: HttpRequest, exc: orchestrator.InvalidState):
    return _error(request, 409, str(exc))


@api.exception_handler(PermissionError)  # the orchestrator's own check (a review needs a reviewer)
def _not_permitted(request: HttpRequest, exc: PermissionError):
    return _error(request, 403, str(exc))


@api.exception_handler(ValueError)  # orchestrator.UnknownStage included
def _invalid_value(request: HttpRequest, exc: ValueError):
    if isinstance(exc, pydantic.ValidationError):  # a ValueError too: our own response failed its schema
        return _unexpected(request, exc)
    return _error(request, 422, str(exc))


@api.exception_handler(EditError)
def _invalid_edit(request: HttpRequest, exc: EditError):
    return api.create_response(request, {"detail": str(exc), "errors": exc.errors}, status=422)


@api.exception_handler(Job.DoesNotExist)
def _no_job(request: HttpRequest, exc: Job.DoesNotExist):
    return _error(request, 404, "no such job")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception):
    # never a traceback or an exception text: it could quote a setting or a secret
    log.exception("API error on %s %s", request.method, request.path)
    return _error(request, 500, "internal error; it has been logged")


def needs(perm: str | None) -> list:
    """An operation's authentication: a token or a console session, of a user with ``perm``."""
    return [TokenAuth(perm), ConsoleSessionAuth(perm)]


# --- schemas ----------------------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str


def _errors(*codes: int) -> dict[int, type[Schema]]:
    # 429: the request budget, or a lockout after failed logins/tokens (console.throttle)
    return {code: ErrorOut for code in sorted({401, 403, 413, 422, 429, *codes})}


class NoNul(Schema):
    """PostgreSQL cannot store NUL characters in text or JSON: refuse them as bad input."""

    @classmethod
    def _check(cls, value: Any, depth: int = 0) -> Any:
        if depth > 32:
            raise ValueError("nested too deeply (32 levels at most)")
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("NUL characters are not allowed")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("text must be valid Unicode (no lone surrogates)") from None
        if isinstance(value, dict):
            for k, v in value.items():
                cls._check(k, depth + 1)
                cls._check(v, depth + 1)
        elif isinstance(value, list):
            for v in value:
                cls._check(v, depth + 1)
        return value


# JSON as PostgreSQL can store it: no NUL characters in strings (jsonb and text refuse them)
SafeStr = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class _OnlySafeKeys:
    """An object's keys are SafeStr too: the schema says no other keys exist (``additionalProperties:
    false`` beside the key pattern), or a client following it (schemathesis) may send a NUL in a key
    and be refused for it."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        schema = handler(core_schema)
        schema["additionalProperties"] = False
        return schema


JsonValue = TypeAliasType(  # type: ignore[misc]
    "JsonValue",
    Annotated[dict[SafeStr, "JsonValue"], _OnlySafeKeys] | list["JsonValue"] | SafeStr | int | float | bool | None,
)


class GenerateIn(NoNul):
    model_config = {"extra": "forbid"}
    theme: str = Field(..., min_length=1, max_length=80, pattern=SLUG_PATTERN, description="A theme's slug.")
    params: Annotated[dict[SafeStr, JsonValue], _OnlySafeKeys] | None = Field(
        None, description="Job parameters handed to the stages."
    )

    @field_validator("params")
    @classmethod
    def _params(cls, value: Any) -> Any:
        value = cls._check(value)  # depth first: the walk below recurses
        found = secret_paths(value or {})
        if found:
            # params are shown to everyone who may see the job (console, admin, API): no place for keys
            where = ", ".join(f"params.{p}" for p in found[:5])
            raise ValueError(
                f"{where} looks like a secret (a key, token, password or URL credentials); job params are "
                "shown to everyone who can see the job: keep keys in the theme's settings or the environment"
            )
        return value


class JobCreated(Schema):
    job_id: int
    status: JobStatus
    poll_url: str


class BatchIn(Schema):
    model_config = {"extra": "forbid"}
    theme: str = Field(..., min_length=1, max_length=80, pattern=SLUG_PATTERN)
    # the bounds are documented in the schema; the rule itself is the console's (validation.batch_count)
    count: int = Field(
        ...,
        json_schema_extra={"minimum": 1, "maximum": BATCH_MAX},
        description=f"Jobs to start, one per top topic (1 to {BATCH_MAX}).",
    )

    @field_validator("count")
    @classmethod
    def _count(cls, value: int) -> int:
        return batch_count(value)


class BatchOut(Schema):
    jobs: list[JobCreated]


class RetryIn(Schema):
    model_config = {"extra": "forbid"}
    from_stage: StageKey | None = Field(
        None, description="Re-run from this stage; default: resume a failed or cancelled job."
    )


class ReviewIn(NoNul):
    model_config = {"extra": "forbid"}
    decision: Decision
    from_stage: StageKey | None = Field(None, description="For request_changes: the stage to re-run from.")
    notes: SafeStr = Field("", max_length=5000)

    @field_validator("notes")
    @classmethod
    def _notes(cls, value: str) -> str:
        return cls._check(value).strip()


class ArtifactOut(Schema):
    id: int
    kind: str
    label: str
    size: int
    checksum: str
    url: str


class SourceOut(Schema):
    name: str
    kind: str
    items: int
    new: int
    skipped: int = Field(0, description="items left out as unusable (skip_reasons says why)")
    skip_reasons: dict[str, int] = {}
    error: str | None = Field(None, description="why this source gave nothing (the others went on)")
    error_kind: str | None = Field(None, description="transient, permanent or unexpected")
    not_modified: bool = False
    notes: list[str] = []


class StageRunOut(Schema):
    id: int
    stage: str
    attempt: int
    status: str
    reason: str
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    progress: float
    message: str
    error_kind: str
    error_message: str
    error_hint: str
    superseded: bool
    artifacts: list[ArtifactOut]
    sources: list[SourceOut] | None = Field(
        None, description="trend_collection runs: what each source gave, and which failed and why"
    )
    usage: dict[str, dict[str, float]] = Field(
        {},
        description="what the attempt consumed, {provider: {metric: amount}}; metrics: llm_tokens_in, "
        "llm_tokens_out, tts_characters, api_calls, upload_bytes, render_cpu_seconds",
    )
    cost: Decimal = Field(
        Decimal(0), description="US dollars the usage cost at the price table of the time the attempt ended"
    )


class JobCostOut(Schema):
    total: Decimal = Field(..., description="US dollars, every attempt of the job (failed ones too)")
    by_stage: dict[str, Decimal] = Field(..., description="US dollars per stage")


class ReviewOut(Schema):
    decision: str
    from_stage: str
    notes: str
    decided_by: str | None
    decided_at: datetime


class JobOut(Schema):
    id: int
    theme: str
    status: JobStatus
    current_stage: str
    created: datetime
    started: datetime | None
    finished: datetime | None
    updated: datetime
    error_stage: str
    error_kind: str
    error_message: str
    error_hint: str
    media_purged_at: datetime | None = Field(
        None, description="when retention removed the job's media files (records stay)"
    )
    url: str


class EditRecordOut(Schema):
    id: int
    created_at: datetime
    by: str = Field(..., description="the user (or the command's --user) who asked")
    edits: list[dict[str, Any]] = Field(..., description="the validated edits, as sent")
    notes: str
    stages: list[str] = Field(..., description="the stages that ran again")
    items: list[str] = Field(..., description='what was redone, e.g. ["scene 3", "composition"]')


class JobDetailOut(JobOut):
    params: dict[str, Any]
    resume_point: str | None
    runs: list[StageRunOut]
    reviews: list[ReviewOut]
    edits: list[EditRecordOut] = Field([], description="targeted edits, oldest first")
    cost: JobCostOut


Text = Annotated[str, Field(min_length=1, max_length=4 * editing.MAX_NARRATION, pattern=r"^[^\x00]*$")]
Index = Annotated[int, Field(ge=1, le=1000, description="The segment, numbered from 1 (hook first).")]
VoiceId = Annotated[str, Field(min_length=1, max_length=80, pattern=editing.VOICE_PATTERN.pattern)]


class ScriptLineEdit(Schema):
    model_config = {"extra": "forbid"}
    kind: Literal["script_line"]
    index: Index
    text: Text = Field(..., description="the segment's new narration")
    headline: Text | None = Field(None, description="a new card headline (the scene is re-rendered too)")


class CaptionEdit(Schema):
    model_config = {"extra": "forbid"}
    kind: Literal["caption"]
    index: Index
    text: Text = Field(..., description="the words shown on screen for the segment (speech unchanged)")


class VoiceEdit(Schema):
    model_config = {"extra": "forbid"}
    kind: Literal["voice"]
    index: Index | None = Field(None, description="re-voice this segment (a new take); none: the whole voice")
    voice: VoiceId | None = Field(None, description="a voice id (required for the whole voice)")


class SceneEdit(Schema):
    model_config = {"extra": "forbid"}
    kind: Literal["scene"]
    index: Index
    text: Text | None = Field(None, description="re-render the card with this text")
    upload: Annotated[str, Field(pattern=uploads.UPLOAD_ID.pattern)] | None = Field(
        None, description="an upload id of this job (POST /api/jobs/{id}/uploads)"
    )
    pick: Literal["next"] | None = Field(None, description="another stock pick or card variant")


EditItem = Annotated[ScriptLineEdit | CaptionEdit | VoiceEdit | SceneEdit, Field(discriminator="kind")]


class EditIn(NoNul):
    model_config = {"extra": "forbid"}
    edits: list[EditItem] = Field(..., min_length=1, max_length=editing.MAX_EDITS)
    notes: SafeStr = Field("", max_length=editing.MAX_NOTES, description="why (kept with the edit)")

    @field_validator("edits", "notes", mode="before")
    @classmethod
    def _safe(cls, value: Any) -> Any:
        return cls._check(value)  # no NUL, no lone surrogate: PostgreSQL could store neither


class EditOut(Schema):
    job: int
    edit: int = Field(..., description="the edit's record id")
    stages: list[str] = Field(..., description="the stages that run again, in order")
    items: list[str] = Field(..., description="what is redone")


class EditProblemOut(Schema):
    edit: int = Field(..., description="which edit (1 for the first; 0: the list itself)")
    field: str
    message: str


class EditErrorOut(Schema):
    detail: str
    errors: list[EditProblemOut] = Field([], description="one entry per invalid edit field")


class UploadOut(Schema):
    upload: str = Field(..., description="the id a scene edit names")
    media: Literal["image", "video"]
    size: int
    created: bool = Field(..., description="false when the same content was already uploaded")


class JobPage(Schema):
    count: int
    limit: int
    offset: int
    items: list[JobOut]


class ThemeOut(Schema):
    id: int
    name: str
    slug: str
    keywords: list[Any]
    sources: list[Any]
    target_seconds: int
    voice: str
    settings: dict[str, Any]
    schedule_cron: str
    schedule_batch: int


class CheckOut(Schema):
    ok: bool
    detail: str


class WorkersOut(Schema):
    alive: bool
    last_seen: datetime | None
    evidence: str
    clusters: int
    queued_tasks: int | None


class HealthOut(Schema):
    status: Literal["ok", "degraded"]
    database: CheckOut
    broker: CheckOut
    workers: WorkersOut


# --- serialisation ----------------------------------------------------------------------------


def _poll_url(request: HttpRequest, job_id: int) -> str:
    return request.build_absolute_uri(reverse("api:job_detail", args=[job_id]))


def _created(request: HttpRequest, job: Job) -> dict:
    return {"job_id": job.pk, "status": job.status, "poll_url": _poll_url(request, job.pk)}


def _job(request: HttpRequest, job: Job, secrets: set[str] | None = None) -> dict:
    secrets = job_secrets(job) if secrets is None else secrets
    return {
        "id": job.pk,
        "theme": job.theme.slug,
        "status": job.status,
        "current_stage": job.current_stage,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "updated": job.updated,
        "error_stage": job.error_stage,
        "error_kind": job.error_kind,
        "error_message": scrub(job.error_message, secrets),
        "error_hint": scrub(job.error_hint, secrets),
        "media_purged_at": job.media_purged_at,
        "url": _poll_url(request, job.pk),
    }


def _job_detail(request: HttpRequest, job: Job) -> dict:
    secrets = job_secrets(job)
    artifacts: dict[int, list] = {}
    for art in job.artifacts.all():  # the job's own artifacts only: every URL is one the media view serves
        artifacts.setdefault(art.stage_run_id, []).append(
            {
                "id": art.pk,
                "kind": art.kind,
                "label": art.label,
                "size": art.size,
                "checksum": art.checksum,
                "url": request.build_absolute_uri(reverse("console:media", args=[job.pk, art.pk])),
            }
        )
    runs = [
        {
            "id": run.pk,
            "stage": run.stage,
            "attempt": run.attempt,
            "status": run.status,
            "reason": scrub(run.reason, secrets),
            "queued_at": run.queued_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_seconds": run.duration,
            "progress": run.progress,
            "message": scrub(run.message, secrets),
            "error_kind": run.error_kind,
            "error_message": scrub(run.error_message, secrets),
            "error_hint": scrub(run.error_hint, secrets),
            "superseded": run.superseded_at is not None,
            "artifacts": artifacts.get(run.pk, []),
            "sources": _sources(run.output, secrets),
            "usage": run.usage or {},
            "cost": run.cost,
        }
        for run in job.runs.all()
    ]
    reviews = [
        {
            "decision": r.decision,
            "from_stage": r.from_stage,
            "notes": scrub(r.notes, secrets),
            "decided_by": r.decided_by.get_username() if r.decided_by else None,
            "decided_at": r.decided_at,
        }
        for r in job.reviews.all()
    ]
    edits = [
        {
            "id": e.pk,
            "created_at": e.created_at,
            "by": e.by,
            "edits": e.edits or [],
            "notes": scrub(e.notes, secrets),
            "stages": e.stages or [],
            "items": e.items or [],
        }
        for e in job.edits.all()
    ]
    resume = orchestrator.resume_point(job) if job.status in (Job.Status.FAILED, Job.Status.CANCELLED) else None
    return {
        **_job(request, job, secrets),
        "params": mask_secrets(job.params or {}),
        "resume_point": resume,
        "runs": runs,
        "reviews": reviews,
        "edits": edits,
        "cost": _job_cost(job),
    }


def _job_cost(job: Job) -> dict[str, Any]:
    by_stage = job.runs.cost_by_stage()
    return {"total": sum(by_stage.values(), Decimal(0)), "by_stage": by_stage}


def _sources(output: Any, secrets: set[str]) -> list[dict] | None:
    """A trend_collection run's per-source report (``output.sources``), scrubbed; None for other runs."""
    sources = output.get("sources") if isinstance(output, dict) else None
    if not isinstance(sources, list):
        return None

    def number(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def text(value: Any) -> str:
        return scrub(value, secrets) if isinstance(value, str) else ""

    return [
        {
            "name": text(s.get("name")),
            "kind": text(s.get("kind")),
            "items": number(s.get("items")),
            "new": number(s.get("new")),
            "skipped": number(s.get("skipped")),
            "skip_reasons": {text(k): number(v) for k, v in (s.get("skip_reasons") or {}).items() if isinstance(k, str)}
            if isinstance(s.get("skip_reasons"), dict)
            else {},
            "error": text(s.get("error")) or None,
            "error_kind": text(s.get("error_kind")) or None,
            "not_modified": bool(s.get("not_modified")),
            "notes": [text(n) for n in s.get("notes") or [] if isinstance(n, str)][:10],
        }
        for s in sources
        if isinstance(s, dict)
    ]


def _get_job(job_id: int) -> Job:
    job = (
        Job.objects.select_related("theme")
        .prefetch_related(
            Prefetch("runs", queryset=StageRun.objects.order_by("queued_at", "id")),
            "artifacts",
            Prefetch("reviews", queryset=ReviewDecision.objects.select_related("decided_by")),
            Prefetch("edits", queryset=JobEdit.objects.select_related("user")),
        )
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        raise HttpError(404, f"no job with id {job_id}")
    return job


def _theme(slug: str) -> Theme:
    theme = Theme.objects.filter(slug=slug).first()
    if theme is None:
        raise HttpError(404, f"unknown theme {slug!r}")
    return theme


JobId = Path(..., ge=1, le=MAX_ID, description="A job's id.")
UploadFile = File(..., description="a PNG, JPEG, WebP, MP4, MOV or WebM (judged by content)")


# --- endpoints --------------------------------------------------------------------------------


@api.post(
    "/generate",
    auth=needs("jobs.add_job"),
    response={200: JobCreated, 202: JobCreated, **_errors(400, 404, 409)},
    url_name="generate",
)
def generate(
    request: HttpRequest,
    payload: GenerateIn,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key returns the same job (200) instead of starting another.",
    ),
):
    """Start one job for a theme (202). With an Idempotency-Key, a repeat returns the first job (200).
    409 when the theme spent its daily budget today (``Theme.daily_budget``, UTC day)."""
    theme = _theme(payload.theme)
    params = payload.params or {}
    if not idempotency_key:
        return Status(202, _created(request, orchestrator.start_job(theme, params=params, user=request.auth)))
    user, body_hash = request.auth, _request_hash(theme, params)
    claimed = IdempotencyKey.objects.filter(user=user, key=idempotency_key).first()
    if claimed is not None:
        return _replay(request, claimed, body_hash)
    try:
        with transaction.atomic():
            # the key first: a concurrent request with this key waits on the unique index here,
            # then fails, before it starts anything; the job and the key commit together
            claimed = IdempotencyKey.objects.create(user=user, key=idempotency_key, body_hash=body_hash)
            claimed.job = orchestrator.start_job(theme, params=params, user=user)
            claimed.save(update_fields=["job"])
    except IntegrityError:
        claimed = IdempotencyKey.objects.filter(user=user, key=idempotency_key).first()
        if claimed is None:
            raise
        return _replay(request, claimed, body_hash)
    return Status(202, _created(request, claimed.job))


def _request_hash(theme: Theme, params: dict) -> str:
    canonical = json.dumps({"theme": theme.slug, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _replay(request: HttpRequest, claimed: IdempotencyKey, body_hash: str):
    if claimed.body_hash != body_hash:
        raise HttpError(409, "this Idempotency-Key was already used for a different request")
    return Status(200, _created(request, Job.objects.get(pk=claimed.job_id)))


@api.post(
    "/batches", auth=needs("jobs.add_job"), response={202: BatchOut, **_errors(400, 404, 409)}, url_name="batches"
)
def batches(request: HttpRequest, payload: BatchIn):
    """Start ``count`` jobs for the theme's top ``count`` topics (one per topic); 409 when the theme
    spent its daily budget today."""
    theme = _theme(payload.theme)
    jobs = orchestrator.start_batch(theme, payload.count, user=request.auth)
    return Status(202, {"jobs": [_created(request, job) for job in jobs]})


@api.get("/jobs", auth=needs("jobs.view_job"), response={200: JobPage, **_errors()}, url_name="jobs")
def jobs(
    request: HttpRequest,
    status: JobStatus | None = Query(None),
    theme: str | None = Query(None, min_length=1, max_length=80, pattern=SLUG_PATTERN, description="A theme's slug."),
    stage: StageKey | None = Query(None, description="The job's current stage."),
    limit: int = Query(20, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=10**9),
):
    """Jobs, newest first, filtered by status, theme and current stage."""
    qs = Job.objects.for_dashboard().order_by("-created", "-id")
    if status:
        qs = qs.filter(status=status)
    if theme:
        qs = qs.filter(theme__slug=theme)
    if stage:
        qs = qs.filter(current_stage=stage)
    page = list(qs[offset : offset + limit])
    return {"count": qs.count(), "limit": limit, "offset": offset, "items": [_job(request, job) for job in page]}


@api.get(
    "/jobs/{job_id}", auth=needs("jobs.view_job"), response={200: JobDetailOut, **_errors(404)}, url_name="job_detail"
)
def job_detail(request: HttpRequest, job_id: int = JobId):
    """One job: every stage run with its attempts, timings, errors and artifact URLs, and the review decisions."""
    return _job_detail(request, _get_job(job_id))


@api.post(
    "/jobs/{job_id}/retry",
    auth=needs("jobs.change_job"),
    response={200: JobDetailOut, **_errors(400, 404, 409)},
    url_name="job_retry",
)
def job_retry(request: HttpRequest, job_id: int = JobId, payload: RetryIn | None = None):
    """Resume a failed/cancelled job from its failed stage, or re-run it from ``from_stage``."""
    _get_job(job_id)
    orchestrator.retry_job(job_id, from_stage=payload.from_stage if payload else None, user=request.auth)
    return _job_detail(request, _get_job(job_id))


@api.post(
    "/jobs/{job_id}/cancel",
    auth=needs("jobs.change_job"),
    response={200: JobDetailOut, **_errors(404, 409)},
    url_name="job_cancel",
)
def job_cancel(request: HttpRequest, job_id: int = JobId):
    """Cancel an active job; a running stage stops within a heartbeat."""
    _get_job(job_id)
    orchestrator.cancel_job(job_id, user=request.auth)
    return _job_detail(request, _get_job(job_id))


@api.post(
    "/jobs/{job_id}/review",
    auth=needs("jobs.review_job"),
    response={200: JobDetailOut, **_errors(400, 404, 409)},
    url_name="job_review",
)
def job_review(request: HttpRequest, payload: ReviewIn, job_id: int = JobId):
    """Approve, reject, or request changes (re-run from a stage before review, with notes)."""
    _get_job(job_id)
    orchestrator.review_job(
        job_id, payload.decision, user=request.auth, notes=payload.notes, from_stage=payload.from_stage
    )
    return _job_detail(request, _get_job(job_id))


@api.post(
    "/jobs/{job_id}/edits",
    auth=needs("jobs.change_job"),
    response={202: EditOut, 422: EditErrorOut, **_errors(400, 404, 409)},
    url_name="job_edits",
)
def job_edits(request: HttpRequest, payload: EditIn, job_id: int = JobId):
    """Change one part (a scene, a voice, a caption, a script line): only what depends on it runs again.

    409 while the job runs, before its first composition and once it is published; 422 with one
    entry per invalid edit. The new composition needs a new review.
    """
    _get_job(job_id)
    edits = [item.model_dump(exclude_none=True) for item in payload.edits]
    record = orchestrator.edit_job(job_id, edits, notes=payload.notes, user=request.auth)
    return Status(202, {"job": job_id, "edit": record.pk, "stages": record.stages, "items": record.items})


@api.post(
    "/jobs/{job_id}/uploads",
    auth=needs("jobs.change_job"),
    response={200: UploadOut, 201: UploadOut, **_errors(400, 404)},
    url_name="job_uploads",
)
def job_uploads(request: HttpRequest, file: UploadedFile = UploadFile, job_id: int = JobId):
    """Upload an image or clip for a scene edit (multipart, field ``file``; at most ``TRENDREEL_UPLOAD_MB``).

    Judged by its content and decoded by ffmpeg before it is kept; the same content twice is one
    upload (200). 422 when refused, saying why.
    """
    if not Job.objects.filter(pk=job_id).exists():
        raise HttpError(404, f"no job with id {job_id}")
    upload = uploads.store(job_id, file)
    body = {"upload": upload.id, "media": upload.media, "size": upload.size, "created": upload.created}
    return Status(201 if upload.created else 200, body)


job_uploads.max_body = lambda: uploads.max_bytes() + 64 * 1024  # the file plus its multipart envelope


@api.get("/themes", auth=needs("jobs.view_theme"), response={200: list[ThemeOut], **_errors()}, url_name="themes")
def themes(request: HttpRequest):
    """Every theme, with secret-named settings masked."""
    return [
        {
            "id": t.pk,
            "name": t.name,
            "slug": t.slug,
            "keywords": list(t.keywords or []),
            "sources": mask_secrets(list(t.sources or [])),
            "target_seconds": t.target_seconds,
            "voice": t.voice,
            "settings": mask_secrets(dict(t.settings or {})),
            "schedule_cron": t.schedule_cron,
            "schedule_batch": t.schedule_batch,
        }
        for t in Theme.objects.order_by("name", "id")
    ]


WORKER_STALE = timedelta(minutes=3)


@api.get("/health", response={200: HealthOut, 503: HealthOut, **_errors()}, url_name="health")
def health(request: HttpRequest):
    """Database, broker and workers. 503 when the database or the broker fails.

    Workers: django-q2's cluster stats where they are shared (Redis broker; the ORM broker keeps
    them in each process's local cache, invisible here), else the evidence a worker leaves in the
    database: the latest stage heartbeat/start and the sweep schedule's last run. ``alive`` means
    seen within the last three minutes.
    """
    database = _check_database()
    broker, queued = _check_broker()
    workers = _check_workers(queued)
    ok = database["ok"] and broker["ok"]
    body = {"status": "ok" if ok else "degraded", "database": database, "broker": broker, "workers": workers}
    return Status(200 if ok else 503, body)


def _check_database() -> dict:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return {"ok": True, "detail": connection.vendor}
    except Exception as exc:  # reported, not raised: health must answer
        log.warning("health: database check failed: %s", exc)
        return {"ok": False, "detail": f"{connection.vendor}: {type(exc).__name__}"}


def _check_broker() -> tuple[dict, int | None]:
    try:
        from django_q.brokers.orm import ORM

        broker = orchestrator.broker()
        if isinstance(broker, ORM):
            # ORM.ping() is always True: ask the queue table instead
            queued = broker.queue_size()
            return {"ok": True, "detail": f"orm: {queued} queued"}, queued
        if not broker.ping():
            return {"ok": False, "detail": "broker did not answer"}, None
        return {
            "ok": True,
            "detail": f"{type(broker).__name__.lower()}: {broker.queue_size()} queued",
        }, broker.queue_size()
    except Exception as exc:
        log.warning("health: broker check failed: %s", exc)
        return {"ok": False, "detail": f"broker: {type(exc).__name__}"}, None


def _check_workers(queued: int | None) -> dict:
    now = timezone.now()
    clusters = 0
    last_seen = None
    evidence = "none"
    try:
        from django_q.status import Stat

        stats = Stat.get_all(orchestrator.broker())
        clusters = len(stats)
        seen = [s.timestamp for s in stats if getattr(s, "timestamp", None)]
        if seen:
            last_seen, evidence = max(seen), "cluster stats"
    except Exception as exc:
        log.warning("health: cluster stats unavailable: %s", exc)
    if last_seen is None:
        from django_q.models import Schedule

        beats = StageRun.objects.aggregate(h=Max("heartbeat_at"), s=Max("started_at"))
        candidates = [(t, "stage heartbeat") for t in (beats["h"], beats["s"]) if t]
        sweep = Schedule.objects.filter(name=SWEEP_SCHEDULE).values_list("next_run", "minutes", "task").first()
        if sweep and sweep[0] and sweep[2] and sweep[0] - timedelta(minutes=sweep[1] or 1) < now:
            # next_run moves forward (and ``task`` is set) each time a cluster's scheduler runs the
            # sweep; ``migrate`` creates the schedule, so its existence alone proves nothing
            candidates.append((sweep[0] - timedelta(minutes=sweep[1] or 1), "sweep schedule"))
        if candidates:
            last_seen, evidence = max(candidates, key=lambda c: c[0])
    alive = last_seen is not None and now - last_seen <= WORKER_STALE
    return {"alive": alive, "last_seen": last_seen, "evidence": evidence, "clusters": clusters, "queued_tasks": queued}


# --- published videos' numbers and the topic choice (issue 15) --------------------------------


class MetricsReadingOut(Schema):
    fetched_at: datetime
    views: int | None
    likes: int | None
    comments: int | None
    shares: int | None
    avg_view_seconds: float | None


class PublicationMetricsOut(Schema):
    destination: str = Field(..., description="youtube, tiktok or instagram")
    external_id: str = Field(..., description="the platform's id of the video (post id, media id)")
    url: str
    published: datetime
    latest: MetricsReadingOut | None = Field(None, description="the newest reading (None before the first pull)")
    series: list[MetricsReadingOut] = Field(..., description="every reading, oldest first")


class MetricsTotalsOut(Schema):
    views: int
    likes: int
    comments: int
    shares: int


class JobMetricsOut(Schema):
    job_id: int
    totals: MetricsTotalsOut = Field(..., description="the latest readings summed over the platforms")
    publications: list[PublicationMetricsOut]


class SkippedTopicOut(Schema):
    trend_id: int | None
    title: str
    reason: str


class JobAnalysisOut(Schema):
    job_id: int
    topic: dict[str, Any] | None = Field(None, description="the story trend analysis chose")
    skipped: list[SkippedTopicOut] = Field(..., description="stories passed over: told by this theme within N days")
    patterns: dict[str, Any] = Field(
        ..., description="the patterns chosen from past videos' results, with the weights used and why"
    )


def _reading(row) -> dict:
    return {
        name: getattr(row, name) for name in ("fetched_at", "views", "likes", "comments", "shares", "avg_view_seconds")
    }


@api.get(
    "/jobs/{job_id}/metrics",
    auth=needs("jobs.view_job"),
    response={200: JobMetricsOut, **_errors(404)},
    url_name="job_metrics",
)
def job_metrics(request: HttpRequest, job_id: int = JobId):
    """How the job's video did on each platform: every reading of the scheduled analytics pull."""
    from jobs.analytics import job_series

    if not Job.objects.filter(pk=job_id).exists():
        raise HttpError(404, f"no job with id {job_id}")
    publications = []
    totals = {"views": 0, "likes": 0, "comments": 0, "shares": 0}
    for item in job_series(job_id):
        series = [_reading(r) for r in item["readings"]]
        latest = series[-1] if series else None
        for name in totals:
            totals[name] += (latest or {}).get(name) or 0
        publications.append(
            {
                **{k: item[k] for k in ("destination", "external_id", "url", "published")},
                "latest": latest,
                "series": series,
            }
        )
    return {"job_id": job_id, "totals": totals, "publications": publications}


@api.get(
    "/jobs/{job_id}/analysis",
    auth=needs("jobs.view_job"),
    response={200: JobAnalysisOut, **_errors(404)},
    url_name="job_analysis",
)
def job_analysis(request: HttpRequest, job_id: int = JobId):
    """Why the job tells its story: the chosen topic, the stories skipped as told recently, the patterns."""
    if not Job.objects.filter(pk=job_id).exists():
        raise HttpError(404, f"no job with id {job_id}")
    run = (
        StageRun.objects.filter(
            job_id=job_id, stage="trend_analysis", status=StageRun.Status.SUCCEEDED, superseded_at=None
        )
        .order_by("-finished_at", "-id")
        .first()
    )
    output = (run.output if run is not None else None) or {}
    skipped = [
        {
            "trend_id": s.get("trend_id") if isinstance(s.get("trend_id"), int) else None,
            "title": str(s.get("title") or ""),
            "reason": str(s.get("reason") or ""),
        }
        for s in output.get("skipped") or []
        if isinstance(s, dict)
    ]
    topic = output.get("topic") if isinstance(output.get("topic"), dict) else None
    patterns = output.get("patterns") if isinstance(output.get("patterns"), dict) else {}
    return {"job_id": job_id, "topic": topic, "skipped": skipped, "patterns": patterns}


# URLconf for ``path("api/", include("console.api"))``: the namespace is "api".


# --- lineage ----------------------------------------------------------------------------------


class LineageCodeOut(Schema):
    commit: str | None = Field(None, description="the git commit the worker ran, when known")
    version: str = Field(..., description="the commit's short form (-dirty with local changes), or the set version")
    source: Literal["git", "env", "package"] = Field(..., description="where the version came from")


class LineageTrendOut(Schema):
    role: Literal["topic", "related"]
    title: str
    url: str | None
    source: str | None
    trend_id: int | None


class LineageScriptOut(Schema):
    title: str | None
    provider: str | None = Field(None, description="the writer that produced it (openai, template...)")
    model: str | None = Field(None, description="e.g. openai:gpt-4o-mini, template")
    prompt_version: str | None


class LineageVoiceOut(Schema):
    provider: str | None
    engine: str | None
    voice: str | None


class LineageFootageOut(Schema):
    index: int = Field(..., description="the scene's segment number, from 1")
    segment: str | None
    source: str = Field(..., description="pexels, card, or an upload")
    provider: str | None
    id: str | None = Field(None, description="the stock provider's id")
    media: str | None
    url: str | None
    credit: str | None = Field(None, description="the photographer or author")
    credit_url: str | None
    upload: str | None
    text: str | None


class LineageMusicOut(Schema):
    bed: str | None
    mood: str | None
    sha256: str | None
    license: str | None
    gain_db: float | None


class LineageSettingsOut(Schema):
    target_seconds: int | None
    voice: str | None
    stages: dict[str, Any] = Field(..., description="the theme's settings per stage, secrets masked")
    params: dict[str, Any] = Field(..., description="the job's params, secrets masked")


class LineageOut(Schema):
    format: int
    job_id: int
    theme: str
    generated_at: datetime
    code: LineageCodeOut
    trends: list[LineageTrendOut]
    script: LineageScriptOut | None
    voice: LineageVoiceOut | None
    footage: list[LineageFootageOut]
    credits: list[str]
    music: LineageMusicOut | None
    settings: LineageSettingsOut
    overrides: dict[str, Any] = Field(..., description="the job's cumulative edit state (Job.overrides)")
    edits: list[dict[str, Any]] = Field(..., description="each recorded edit, oldest first")


@api.get(
    "/jobs/{job_id}/lineage",
    auth=needs("jobs.view_job"),
    response={200: LineageOut, **_errors(404)},
    url_name="job_lineage",
)
def job_lineage(request: HttpRequest, job_id: int = JobId):
    """What shaped the video: trends, script model and prompt version, voice, footage with credits,
    music bed, the settings that applied (secrets masked), the code version and the edits made."""
    from jobs import lineage

    job = Job.objects.select_related("theme").filter(pk=job_id).first()
    if job is None:
        raise HttpError(404, f"no job with id {job_id}")
    return lineage.for_job(job)


urlpatterns = api.urls[0]
app_name = api.urls_namespace
