"""Targeted edits in the console: the form's data, the edit history, the form's POST (``job_edit``).

The job page and the review page include ``partials/edit_form.html`` and ``partials/edit_history.html``;
those load what they show through the ``edits`` template tags (``console/templatetags/edits.py``), so
the pages' views need nothing of their own. Every edit goes through ``orchestrator.edit_job``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.views import console_view, safe_next
from jobs import orchestrator
from jobs.models import Job, JobEdit
from stages import edits as editing
from stages import pipeline, uploads

JS = Job.Status
KINDS = [("scene", "Scene"), ("script_line", "Script line"), ("caption", "Caption"), ("voice", "Voice")]
ENVELOPE = 64 * 1024  # the form's other fields and the multipart boundaries, beside the file


def panel(request: HttpRequest, job: Job, checkpoints: dict) -> dict:
    """What the edit form shows: whether this user may edit, why the job cannot be edited now, its segments."""
    script = (checkpoints["script_generation"].output or {}) if "script_generation" in checkpoints else {}
    segments = [s for s in script.get("segments") or [] if isinstance(s, dict)]
    blocked = ""
    if job.status in (JS.PENDING, JS.RUNNING, JS.PUBLISHING):
        blocked = "Edits are possible once the job waits for review."
    elif job.status == JS.COMPLETED:
        blocked = "This video is published: start a new job for another version."
    elif job.media_purged_at is not None:
        blocked = "The media was removed by retention."
    elif pipeline.REVIEWED not in checkpoints and job.status not in (JS.FAILED, JS.CANCELLED):
        blocked = "Edits change a finished composition, and this job has none yet."
    return {
        "can_edit": request.user.has_perm("jobs.change_job"),
        "blocked": blocked,
        "kinds": KINDS,
        "segments": [(n, s.get("headline") or s.get("id") or "") for n, s in enumerate(segments, start=1)],
        "upload_mb": settings.TRENDREEL_UPLOAD_MB,
    }


def history(job: Job) -> list[JobEdit]:
    """The job's edits, oldest first, each with ``described``: one line per edit for people."""
    records = job.edit_records()
    for record in records:
        record.described = [editing.describe(e) for e in record.edits or []]
    return records


def _edit_from_form(request: HttpRequest, job: Job) -> dict:
    """One edit from the form (only the fields its kind takes); an uploaded file is stored first."""
    post = request.POST
    kind = post.get("kind", "")
    edit: dict = {"kind": kind}
    if post.get("index"):
        edit["index"] = int(post["index"]) if post["index"].isdigit() else post["index"]
    text = post.get("text", "").strip()
    if kind in ("script_line", "caption") or (kind == "scene" and text):
        edit["text"] = text
    if kind == "script_line" and post.get("headline", "").strip():
        edit["headline"] = post["headline"].strip()
    if kind == "voice" and post.get("voice", "").strip():
        edit["voice"] = post["voice"].strip()
    if kind == "scene":
        if request.FILES.get("file"):
            edit["upload"] = uploads.store(job.pk, request.FILES["file"]).id
        if post.get("pick"):
            edit["pick"] = "next"
    return edit


@require_POST
@console_view("jobs.change_job")
def job_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """One targeted edit from the job or review page (the API and the command take several at once)."""
    job = get_object_or_404(Job, pk=pk)
    target = safe_next(request, reverse("console:job_detail", args=[job.pk]))
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > uploads.max_bytes() + ENVELOPE:
            raise uploads.UploadError(f"the file is over the upload limit of {settings.TRENDREEL_UPLOAD_MB} MB")
        record = orchestrator.edit_job(
            job.pk, [_edit_from_form(request, job)], notes=request.POST.get("notes", ""), user=request.user
        )
        messages.success(request, f"Job {job.pk}: {', '.join(record.items)} will be redone; then review it again.")
    except (orchestrator.InvalidState, ValueError) as exc:  # EditError and UploadError are ValueErrors
        messages.error(request, f"Edit not made: {exc}")
    return redirect(target)
