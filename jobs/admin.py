"""Admin registrations. A job's record is read-only for everyone (status is the orchestrator's, the rest
is its audit trail): every change goes through the orchestrator's actions. Secrets are masked on every
page that shows configuration, params or messages."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from console.secrets import (
    MOVED_KEYS_HELP,
    job_secrets,
    mask_secrets,
    masked,
    restore_secrets,
    scrub,
    unbind_moved_secrets,
)
from jobs import orchestrator, schedules
from jobs.models import (
    Artifact,
    FailedStageRun,
    Job,
    JobEdit,
    Publication,
    PublicationMetrics,
    ReviewDecision,
    StageRun,
    Theme,
    Trend,
)
from jobs.validation import BATCH_MAX


def _each(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, verb: str, fn) -> None:
    """Apply an orchestrator action to each selected job; report successes and refusals."""
    done, refused = [], []
    for pk in queryset.values_list("pk", flat=True):
        try:
            fn(pk)
            done.append(str(pk))
        except (orchestrator.InvalidState, PermissionError, ValueError) as exc:
            refused.append(str(exc))
    if done:
        modeladmin.message_user(request, f"{verb}: job {', '.join(done)}", messages.SUCCESS)
    for text in refused:
        modeladmin.message_user(request, text, messages.WARNING)


def shown_json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, default=str))


def scrubbed(field: str, description: str | None = None, *, as_json: bool = False):
    """An admin display of a job's or stage run's ``field`` with the job's secrets masked, as the API shows it."""

    @admin.display(description=description or field.replace("_", " "))
    def show(modeladmin, obj) -> str:
        job = obj if isinstance(obj, Job) else obj.job
        value = masked(getattr(obj, field), job_secrets(job))
        return shown_json(value) if as_json else (value or "")

    return show


class ThemeForm(forms.ModelForm):
    """Shows sources and settings with their secrets masked; a mask sent back keeps the stored value,
    unless the URL it is sent to moved to another host (``unbind_moved_secrets``)."""

    class Meta:
        model = Theme
        fields = "__all__"

    SECRET_FIELDS = ("sources", "settings")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cleared_keys: list[str] = []
        for name in self.SECRET_FIELDS:
            if name in self.fields:
                self.initial[name] = mask_secrets(self.initial.get(name))
                self.fields[name].help_text = f"{self.fields[name].help_text} {MOVED_KEYS_HELP}"

    def _restore(self, name: str):
        stored = getattr(self.instance, name, None) if self.instance.pk else None
        submitted, cleared = unbind_moved_secrets(self.cleaned_data.get(name), stored)
        self.cleared_keys += [f"{name}.{c}" for c in cleared]
        return restore_secrets(submitted, stored)

    def clean_sources(self):
        return self._restore("sources")

    def clean_settings(self):
        return self._restore("settings")


@admin.register(Theme)
class ThemeAdmin(admin.ModelAdmin):
    form = ThemeForm
    list_display = ["name", "slug", "target_seconds", "voice", "schedule_cron", "created"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["run_now"]
    change_form_template = "admin/jobs/theme/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "slug", "keywords", "sources"]}),
        ("Video", {"fields": ["target_seconds", "voice", "settings"]}),
        ("Schedule", {"fields": ["schedule_cron", "schedule_batch"]}),
        ("Budget", {"fields": ["daily_budget"]}),
    ]

    @admin.action(description="Run now (start a job for each selected theme)", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for theme in queryset:
            try:
                job = orchestrator.start_job(theme, user=request.user)
            except orchestrator.BudgetSpent as exc:
                self.message_user(request, f"Not started: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"Started job {job.pk} for {theme.slug}", messages.SUCCESS)

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.add_job")

    def render_change_form(self, request, context, *args, **kwargs):
        context["batch_max"] = BATCH_MAX  # the "Run a batch" field's bounds, as the server checks them
        return super().render_change_form(request, context, *args, **kwargs)

    @admin.display(description="Sources")
    def shown_sources(self, theme: Theme) -> str:
        return shown_json(mask_secrets(theme.sources))

    @admin.display(description="Settings")
    def shown_settings(self, theme: Theme) -> str:
        return shown_json(mask_secrets(theme.settings))

    def get_fieldsets(self, request: HttpRequest, obj: Theme | None = None):
        """A user who may only view a theme sees its configuration masked (the form masks it for editors):
        a read-only page shows the stored values themselves."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        masked = {"sources": "shown_sources", "settings": "shown_settings"}
        return [(name, {**opts, "fields": [masked.get(f, f) for f in opts["fields"]]}) for name, opts in fieldsets]

    def get_readonly_fields(self, request: HttpRequest, obj: Theme | None = None):
        return ["shown_sources", "shown_settings"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        schedules.sync_schedule(obj)
        for cleared in getattr(form, "cleared_keys", []):
            path, host = cleared.split(": ", 1)
            self.message_user(
                request,
                f"{path.removeprefix('settings.')} was cleared: its URL now points at {host}. "
                "Enter the key for that host if it should have one.",
                messages.WARNING,
            )

    def delete_model(self, request, obj) -> None:
        obj.schedule_cron = ""
        schedules.sync_schedule(obj)
        super().delete_model(request, obj)


class StageRunInline(admin.TabularInline):
    model = StageRun
    extra = 0
    can_delete = False
    show_change_link = True
    fields = [
        "stage",
        "attempt",
        "status",
        "progress",
        "shown_message",
        "error_kind",
        "shown_error_message",
        "started_at",
        "finished_at",
        "superseded_at",
        "cost",
    ]
    readonly_fields = fields
    ordering = ["queued_at", "id"]
    shown_message = scrubbed("message")
    shown_error_message = scrubbed("error_message")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("job__theme")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class JobEditInline(admin.TabularInline):
    """The job's targeted edits: an audit trail, read-only for everyone (like review decisions)."""

    model = JobEdit
    extra = 0
    can_delete = False
    fields = ["created_at", "by", "edits", "notes", "stages", "items", "composition_run"]
    readonly_fields = fields
    ordering = ["created_at", "id"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "console_link",
        "theme",
        "status_pill",
        "current_stage",
        "stage_progress",
        "created",
        "error_summary",
    ]
    list_display_links = ["id"]
    list_per_page = 50
    list_filter = ["status", "current_stage", "theme", "created"]
    list_select_related = ["theme"]
    search_fields = ["id", "theme__name", "error_message"]
    date_hierarchy = "created"
    inlines = [StageRunInline, JobEditInline]
    # the whole record is read-only for everyone, superusers included (see has_change_permission)
    fields = [
        "theme",
        "status",
        "current_stage",
        "shown_params",
        "created_by",
        "created",
        "started",
        "finished",
        "updated",
        "error_stage",
        "error_kind",
        "shown_error_message",
        "shown_error_hint",
        "review_notes",
        "media_purged_at",
        "overrides",
        "skip_stages",
    ]
    readonly_fields = fields
    shown_params = scrubbed("params", "Params", as_json=True)
    shown_error_message = scrubbed("error_message")
    shown_error_hint = scrubbed("error_hint")
    actions = ["retry", "rerun_from", "cancel", "approve", "reject"]

    def has_add_permission(self, request) -> bool:
        return False  # jobs start from a theme ("Run now"), the API or run_pipeline

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        """``change_job`` allows the list's actions (through the orchestrator), never editing a job's
        record: its status is the orchestrator's and the rest (theme, params, review notes, retention)
        is the audit trail. A job's page is view-only for everyone; a POST to it is refused."""
        if obj is not None:
            return False
        return super().has_change_permission(request, obj)

    def get_queryset(self, request):
        # One extra query for the whole page's stage runs (the progress column), never one per row.
        runs = StageRun.objects.only("id", "job_id", "stage", "attempt", "status", "progress").order_by("attempt")
        return super().get_queryset(request).prefetch_related(Prefetch("runs", queryset=runs))

    @admin.display(description="Console")
    def console_link(self, job: Job) -> str:
        return format_html('<a href="{}">open</a>', reverse("console:job_detail", args=[job.pk]))

    @admin.display(description="Status", ordering="status")
    def status_pill(self, job: Job) -> str:
        return format_html('<span class="pill s-{}">{}</span>', job.status, job.get_status_display())

    @admin.display(description="Stages")
    def stage_progress(self, job: Job) -> str:
        latest: dict[str, StageRun] = {}
        for run in job.runs.all():
            latest[run.stage] = run
        from stages.pipeline import STAGES

        return format_html(
            '<span class="steps">{}</span>',
            format_html_join(
                "",
                '<span class="s-{}" title="{}: {}"></span>',
                (
                    (
                        latest[s.key].status if s.key in latest else "none",
                        s.label,
                        latest[s.key].status if s.key in latest else "not started",
                    )
                    for s in STAGES
                ),
            ),
        )

    @admin.display(description="Error")
    def error_summary(self, job: Job) -> str:
        if not job.error_stage:
            return ""
        return f"{job.error_stage}: {scrub(job.error_message, job_secrets(job))[:80]}"

    @admin.action(description="Re-run from a chosen stage…", permissions=["change"])
    def rerun_from(self, request, queryset):
        from stages.pipeline import STAGES

        stage = request.POST.get("from_stage")
        if stage and request.POST.get("confirm"):
            _each(
                self,
                request,
                queryset,
                f"Re-running from {stage}",
                lambda pk: orchestrator.retry_job(pk, from_stage=stage, user=request.user),
            )
            return None
        return TemplateResponse(
            request,
            "admin/jobs/job/rerun_from.html",
            {
                **self.admin_site.each_context(request),
                "title": "Re-run from a chosen stage",
                "jobs": queryset,
                "stages": [s for s in STAGES if not s.gate],
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description="Retry (resume from the failed stage)", permissions=["change"])
    def retry(self, request, queryset) -> None:
        _each(self, request, queryset, "Resumed", lambda pk: orchestrator.retry_job(pk, user=request.user))

    @admin.action(description="Cancel", permissions=["change"])
    def cancel(self, request, queryset) -> None:
        _each(self, request, queryset, "Cancelled", lambda pk: orchestrator.cancel_job(pk, user=request.user))

    @admin.action(description="Approve (publish)", permissions=["review"])
    def approve(self, request, queryset) -> None:
        _each(self, request, queryset, "Approved", lambda pk: orchestrator.review_job(pk, "approve", user=request.user))

    @admin.action(description="Reject", permissions=["review"])
    def reject(self, request, queryset) -> None:
        _each(self, request, queryset, "Rejected", lambda pk: orchestrator.review_job(pk, "reject", user=request.user))

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("jobs.review_job")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StageRun)
class StageRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "stage", "attempt", "status", "error_kind", "started_at", "finished_at", "worker"]
    list_filter = ["status", "stage", "error_kind"]
    list_select_related = ["job__theme"]
    search_fields = ["job__id", "error_message"]
    # every text a stage or provider wrote, with the job's secrets masked (as the API shows them)
    fields = [
        "job",
        "stage",
        "attempt",
        "retry_index",
        "status",
        "shown_reason",
        "queued_at",
        "not_before",
        "enqueued_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "progress",
        "shown_message",
        "error_kind",
        "shown_error_message",
        "shown_error_hint",
        "shown_error_traceback",
        "shown_log_tail",
        "shown_input",
        "shown_output",
        "output_dir",
        "superseded_at",
        "worker",
    ]
    shown_reason = scrubbed("reason")
    shown_message = scrubbed("message")
    shown_error_message = scrubbed("error_message")
    shown_error_hint = scrubbed("error_hint")
    shown_error_traceback = scrubbed("error_traceback")
    shown_log_tail = scrubbed("log_tail")
    shown_input = scrubbed("input", as_json=True)
    shown_output = scrubbed("output", as_json=True)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("job__theme")


@admin.register(FailedStageRun)
class FailedStageRunAdmin(StageRunAdmin):
    list_display = ["id", "job", "stage", "attempt", "status", "error_kind", "shown_error_message", "finished_at"]


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "kind", "path", "size", "created"]
    list_filter = ["kind"]


@admin.register(Trend)
class TrendAdmin(admin.ModelAdmin):
    list_display = ["title", "source", "engagement", "published", "last_seen"]
    list_filter = ["source"]
    search_fields = ["title", "external_id"]


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(ReadOnlyAdmin):
    list_display = ["job", "decision", "from_stage", "decided_by", "decided_at"]
    list_filter = ["decision"]


@admin.register(JobEdit)
class JobEditAdmin(ReadOnlyAdmin):
    list_display = ["job", "created_at", "by", "stages", "items", "notes"]
    list_select_related = ["user"]
    search_fields = ["job__id", "notes", "actor"]


@admin.register(Publication)
class PublicationAdmin(ReadOnlyAdmin):
    list_display = ["job", "destination", "location", "created"]
    exclude = ["meta"]
    readonly_fields = ["shown_meta"]

    @admin.display(description="Meta")
    def shown_meta(self, obj: Publication) -> str:
        """The record without a YouTube upload session URI: whoever holds one can upload into it."""
        meta = dict(obj.meta or {})
        if meta.get("session"):
            meta["session"] = "(hidden: an upload session URI grants upload access)"
        return format_html("<pre>{}</pre>", json.dumps(meta, indent=2, ensure_ascii=False, default=str))


@admin.register(PublicationMetrics)
class PublicationMetricsAdmin(ReadOnlyAdmin):
    """The scheduled analytics pull's readings (``jobs.analytics``), newest first."""

    list_display = ["publication", "fetched_at", "views", "likes", "comments", "shares", "avg_view_seconds"]
    list_filter = ["publication__destination"]
    list_select_related = ["publication"]
    ordering = ["-fetched_at"]
