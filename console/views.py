"""Operator console: dashboard, job page, review page, media. HTMX partials for what moves.

Every view checks the user (staff + model permission); every action goes through
``jobs.orchestrator``: no view writes a status.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
from collections.abc import Callable
from functools import wraps
from pathlib import Path

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails
from django_otp import devices_for_user
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.qr import write_qrcode_image

from console import live, metrics, timeline, two_factor
from console.secrets import job_secrets, masked
from jobs import orchestrator
from jobs.models import Artifact, Job, ReviewDecision, StageRun, Theme
from jobs.validation import batch_count
from stages import pipeline

JS = Job.Status


class HtmxHttpRequest(HttpRequest):
    """What django-htmx's middleware makes of every request (``request.htmx``), for type checkers."""

    htmx: HtmxDetails


def console_view(perm: str | None = "jobs.view_job", *, second_factor: bool = True) -> Callable:
    """Logged-in staff with ``perm``; anonymous users go to the login page, others get 403.

    A session that owes a second factor (``console.two_factor``) goes to the login page for its code,
    or to set one up; ``second_factor=False`` is for that set-up page itself.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("admin:login"))
            if not request.user.is_active or not request.user.is_staff:
                raise PermissionDenied
            if second_factor and not two_factor.satisfied(request):
                return two_factor.challenge(request)
            if perm and not request.user.has_perm(perm):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def safe_next(request: HttpRequest, fallback: str) -> str:
    """The request's ``next`` when it stays on this site, else ``fallback``.

    Django's own check (``//host``, ``/\\host``, other schemes, control characters): a bare
    ``startswith("/")`` let ``//evil.example/x`` through, an open redirect.
    """
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def _context(request: HttpRequest, **extra) -> dict:
    return {**admin.site.each_context(request), "stage_keys": pipeline.STAGE_KEYS, **extra}


# --- dashboard ------------------------------------------------------------------------------


def _dashboard_data() -> dict:
    now = timezone.now()
    counts = Job.objects.status_counts()
    jobs = Job.objects.for_dashboard()
    running = list(
        jobs.filter(status__in=[JS.PENDING, JS.RUNNING, JS.PUBLISHING]).with_open_runs().order_by("-created")[:15]
    )
    review = list(jobs.filter(status=JS.AWAITING_REVIEW).order_by("created")[:15])
    failures = list(jobs.filter(status=JS.FAILED).order_by("-finished")[:10])
    stats = timeline.stage_chart(now)
    shown = live.dashboard_state(counts, running, review, failures, stats)
    return {
        "counts": [(value, label, counts.get(value, 0)) for value, label in JS.choices],
        "running": running,
        "review": review,
        "failures": failures,
        "stats": stats,
        "active": bool(running),
        "now": now,
        "shown": shown,
        "poll_vals": json.dumps({"shown": shown}),
    }


@require_GET
@console_view()
def dashboard(request: HtmxHttpRequest) -> TemplateResponse:
    return TemplateResponse(
        request,
        "console/dashboard.html",
        _context(request, title="Dashboard", **_dashboard_data(), **_metrics_context(best=metrics.best_videos())),
    )


def _metrics_context(**extra) -> dict:
    """Published videos' numbers (console/metrics.py): the dashboard's panel, the job page's chart."""
    return {"analytics_minutes": settings.TRENDREEL_ANALYTICS_MINUTES, **extra}


@require_GET
@console_view()
def dashboard_live(request: HtmxHttpRequest) -> HttpResponse:
    """The dashboard's live part; 204 when it shows what the poll says it has (``shown``)."""
    data = _dashboard_data()
    if request.GET.get("shown") == data["shown"]:
        return HttpResponse(status=204)
    return TemplateResponse(request, "console/partials/dashboard_live.html", _context(request, **data))


# --- job page -------------------------------------------------------------------------------


# what a stage run shows that a provider or a stage wrote: the job's secrets are masked in them
SHOWN_RUN_FIELDS = ("reason", "message", "error_message", "error_hint", "error_traceback", "log_tail", "output")


def _mask(job: Job, runs: list[StageRun]) -> None:
    """Display copies, never saved: masked as the API and the admin show them."""
    secrets = job_secrets(job)
    job.error_message, job.error_hint = masked(job.error_message, secrets), masked(job.error_hint, secrets)
    for run in runs:
        for field in SHOWN_RUN_FIELDS:
            setattr(run, field, masked(getattr(run, field), secrets))


def _job_data(job: Job, runs: list[StageRun] | None = None, *, shown: list[StageRun] | None = None) -> dict:
    """Everything the job page (and the review page) shows of ``job``.

    ``shown``: the attempts whose files are rendered (their artifacts are loaded, one query); all of
    them by default. The review decisions are loaded when the records are shown.
    """
    runs = list(job.runs.for_timeline()) if runs is None else runs
    _mask(job, runs)
    prefetch_related_objects(runs if shown is None else shown, "artifacts")
    span = timeline.place_bars(runs, since=job.created, now=timezone.now())
    steps = timeline.latest_per_stage(runs)
    return {
        "job": job,
        "runs": runs,
        "steps": steps,
        "span": span,
        "checkpoints": {r.stage: r for r in runs if r.is_checkpoint},
        "state": live.JobState.of(job, runs, steps),
        "rerun_stages": [s for s in pipeline.STAGES if not s.gate],
        "change_stages": [s for s in pipeline.STAGES[: pipeline.index(next(g.key for g in pipeline.STAGES if g.gate))]],
    }


def _reviews(job: Job) -> list[ReviewDecision]:
    return list(job.reviews.select_related("decided_by"))


def _job(pk: int) -> Job:
    return get_object_or_404(Job.objects.select_related("theme", "created_by"), pk=pk)


@require_GET
@console_view()
def job_detail(request: HtmxHttpRequest, pk: int) -> TemplateResponse:
    job = _job(pk)
    return TemplateResponse(
        request,
        "console/job_detail.html",
        _context(
            request,
            title=f"Job {job.pk}",
            **_job_data(job),
            reviews=_reviews(job),
            **_metrics_context(metrics=metrics.job_chart(job.pk)),
        ),
    )


@require_GET
@console_view()
def job_live(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The job page's poll (see console/live.py): 204 when nothing it shows changed, the stage table
    when only progress moved, plus out-of-band swaps of what a status change touched."""
    job = _job(pk)
    runs = list(job.runs.for_timeline())
    seen = live.JobState.parse(request.GET)
    now = live.JobState.of(job, runs, timeline.latest_per_stage(runs))
    if seen == now:
        return HttpResponse(status=204)
    changes = live.Changes.between(seen, now)
    rendered = [r for r in runs if r.pk in changes.new_runs or r.pk in changes.changed_runs]
    data = _job_data(job, runs, shown=None if changes.everything else rendered)
    return TemplateResponse(
        request,
        "console/partials/job_live.html",
        _context(
            request,
            **data,
            changes=changes,
            new_runs=[r for r in reversed(runs) if r.pk in changes.new_runs],
            changed_runs=[r for r in runs if r.pk in changes.changed_runs],
            reviews=_reviews(job) if changes.header else [],
        ),
    )


@require_POST
@console_view("jobs.change_job")
def job_action(request: HtmxHttpRequest, pk: int, action: str) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    try:
        if action == "retry":
            orchestrator.retry_job(job.pk, user=request.user)
            messages.success(request, f"Job {job.pk} resumed from {orchestrator.resume_point(job)}.")
        elif action == "rerun":
            stage = request.POST.get("from_stage", "")
            orchestrator.retry_job(job.pk, from_stage=stage, user=request.user)
            messages.success(request, f"Job {job.pk} re-runs from {stage}.")
        elif action == "cancel":
            orchestrator.cancel_job(job.pk, user=request.user)
            messages.success(request, f"Job {job.pk} cancelled.")
        else:
            raise Http404("unknown action")
    except (orchestrator.InvalidState, ValueError) as exc:
        messages.error(request, str(exc))
    target = safe_next(request, reverse("console:job_detail", args=[job.pk]))
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


# --- review ---------------------------------------------------------------------------------


@require_GET
@console_view()
def review(request: HtmxHttpRequest, pk: int) -> TemplateResponse:
    job = get_object_or_404(Job.objects.select_related("theme"), pk=pk)
    data = _job_data(job)
    cps = data["checkpoints"]
    video = thumb = contact = None
    comp = (cps.get("composition").output or {}) if "composition" in cps else {}
    sheet = comp.get("contact_sheet") or {}
    if "composition" in cps:
        for art in cps["composition"].artifacts.all():
            if art.kind == "video":
                video = art
            elif art.kind == "thumbnail":
                thumb = art
            elif art.kind == "image" and art.path.endswith(str(sheet.get("image") or "\0")):
                contact = art
    return TemplateResponse(
        request,
        "console/review.html",
        _context(
            request,
            title=f"Review job {job.pk}",
            **data,
            reviews=_reviews(job),
            video=video,
            thumbnail=thumb,
            script=(cps["script_generation"].output if "script_generation" in cps else None),
            topic=((cps["trend_analysis"].output or {}).get("topic") if "trend_analysis" in cps else None),
            captions=((cps["voiceover"].output or {}).get("captions", []) if "voiceover" in cps else []),
            qc=comp.get("qc"),
            contact=contact,
            contact_shots=sheet.get("shots") or [],
            mix=comp.get("mix") or {},
            can_review=request.user.has_perm("jobs.review_job"),
            decisions=ReviewDecision.Decision,
        ),
    )


@require_POST
@console_view("jobs.review_job")
def review_decide(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    decision = request.POST.get("decision", "")
    try:
        orchestrator.review_job(
            job.pk,
            decision,
            user=request.user,
            notes=request.POST.get("notes", "").strip(),
            from_stage=request.POST.get("from_stage") or None,
        )
        messages.success(request, f"Job {job.pk}: {ReviewDecision.Decision(decision).label.lower()}.")
        return redirect("console:job_detail", pk=job.pk)
    except (orchestrator.InvalidState, PermissionError, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect("console:review", pk=job.pk)


# --- themes ---------------------------------------------------------------------------------


@require_POST
@console_view("jobs.add_job")
def theme_run(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    theme = get_object_or_404(Theme, pk=pk)
    try:
        count = batch_count(request.POST.get("count", "1"))
        jobs = (
            orchestrator.start_batch(theme, count, user=request.user)
            if count > 1
            else [orchestrator.start_job(theme, user=request.user)]
        )
    except (orchestrator.BudgetSpent, ValueError) as exc:
        messages.error(request, f"Not started: {exc}")
        return redirect("console:dashboard")
    messages.success(request, f"Started job {', '.join(str(j.pk) for j in jobs)} for {theme.name}.")
    if len(jobs) == 1:
        return redirect("console:job_detail", pk=jobs[0].pk)
    return redirect("console:dashboard")


# --- media ----------------------------------------------------------------------------------

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _media_path(artifact: Artifact) -> Path:
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / artifact.path).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("no such file")
    return path


def _file_chunks(path: Path, start: int, length: int, chunk: int = 1 << 16):
    with path.open("rb") as fh:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            data = fh.read(min(chunk, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data


@require_GET
@console_view()
def media(request: HtmxHttpRequest, pk: int, artifact_id: int) -> HttpResponse:
    """Serve one artifact of one job, with HTTP Range so video players can seek."""
    artifact = get_object_or_404(Artifact.objects.select_related("job"), pk=artifact_id, job_id=pk)
    if artifact.job.media_purged_at is not None:
        return HttpResponse(
            f"Gone: job {pk}'s media was removed by retention on {artifact.job.media_purged_at:%Y-%m-%d}.",
            status=410,
            content_type="text/plain; charset=utf-8",
        )
    path = _media_path(artifact)
    size = path.stat().st_size
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    start, end, status = 0, size - 1, 200
    header = request.headers.get("Range", "")
    match = _RANGE.match(header.strip()) if header else None
    if header and match is None and header.startswith("bytes="):
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    if match:
        first, last = match.groups()
        if first == "" and last == "":
            pass
        elif first == "":  # suffix: the last N bytes
            start = max(0, size - int(last))
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        status = 206
    length = end - start + 1
    response = StreamingHttpResponse(_file_chunks(path, start, length), status=status, content_type=content_type)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="job{pk}-{os.path.basename(path)}"'
    return response


# --- second factor ----------------------------------------------------------------------------


def _pending_device(user) -> TOTPDevice:
    """The user's authenticator being set up (unconfirmed): its key is shown until it is confirmed."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    return device or TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)


@never_cache
@require_http_methods(["GET", "POST"])
@console_view(None, second_factor=False)
def two_factor_setup(request: HtmxHttpRequest) -> HttpResponse:
    """Any staff user turns on their own second factor: scan the key, confirm with a code it makes."""
    confirmed = next(iter(devices_for_user(request.user)), None)
    target = safe_next(request, reverse("console:dashboard"))
    if confirmed is not None:
        if request.method == "POST":
            return redirect(target)
        return TemplateResponse(
            request, "console/two_factor.html", _context(request, title="Two-factor authentication", device=confirmed)
        )
    pending = _pending_device(request.user)
    if request.method == "POST":
        with transaction.atomic():  # a code confirms one device once
            device = TOTPDevice.objects.select_for_update().get(pk=pending.pk)
            allowed, _ = device.verify_is_allowed()  # django-otp's wait after wrong codes
            ok = device.verify_token(request.POST.get("otp_token", "").strip())
            if ok:
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                TOTPDevice.objects.filter(user=request.user, confirmed=False).delete()
        if ok:
            otp_login(request, device)  # this session has just given its second factor
            messages.success(request, "Two-factor authentication is on: every login now asks for a code.")
            return redirect(target)
        if not allowed:
            messages.error(request, "Too many wrong codes in a row: wait a few seconds, then enter the current one.")
        else:
            messages.error(request, "That code is not right: enter the 6 digits your app shows now for this key.")
        return redirect(request.get_full_path())
    return TemplateResponse(
        request,
        "console/two_factor.html",
        _context(
            request,
            title="Two-factor authentication",
            device=None,
            secret=base64.b32encode(pending.bin_key).decode(),
            required=two_factor.needs_setup(request),
            next=target,
        ),
    )


@never_cache
@require_GET
@console_view(None, second_factor=False)
def two_factor_qr(request: HtmxHttpRequest) -> HttpResponse:
    """The key being set up as a QR code (SVG). Never for a confirmed device: its key is not shown again."""
    if next(iter(devices_for_user(request.user)), None) is not None:
        raise Http404("two-factor authentication is already on")
    response = HttpResponse(content_type="image/svg+xml")
    write_qrcode_image(_pending_device(request.user).config_url, response)
    return response


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    return redirect("console:dashboard")
