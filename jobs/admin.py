"""Admin registrations. Status fields are read-only: every change goes through the orchestrator."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs import orchestrator
from jobs.models import Artifact, FailedStageRun, Job, Publication, ReviewDecision, StageRun, Theme, Trend


def _each(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, verb: str, fn) -> None:
    """Apply an orchestrator action to each selected job; report successes and refusals."""
    done, refused = [], []
    for pk in queryset.values_list("pk", flat=True):
        try:
            fn(pk)
            done.append(str(pk))
        except (orchestrator.InvalidState, ValueError) as exc:
            refused.append(str(exc))
    if done:
        modeladmin.message_user(request, f"{verb}: job {', '.join(done)}", messages.SUCCESS)
    for text in refused:
        modeladmin.message_user(request, text, messages.WARNING)


@admin.register(Theme)
class ThemeAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "target_seconds", "voice", "created"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["run_now"]

    @admin.action(description="Run now (start a job for each selected theme)", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for theme in queryset:
            job = orchestrator.start_job(theme, user=request.user)
            self.message_user(request, f"Started job {job.pk} for {theme.slug}", messages.SUCCESS)


class StageRunInline(admin.TabularInline):
    model = StageRun
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["stage", "attempt", "status", "progress", "message", "error_kind", "error_message", "started_at", "finished_at", "superseded_at"]
    readonly_fields = fields
    ordering = ["queued_at", "id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "theme", "status", "current_stage", "created", "finished", "error_stage"]
    list_filter = ["status", "current_stage", "theme", "created"]
    list_select_related = ["theme"]
    search_fields = ["id", "theme__name", "error_message"]
    date_hierarchy = "created"
    inlines = [StageRunInline]
    readonly_fields = [
        "status", "current_stage", "cancel_requested", "started", "finished", "updated", "created",
        "error_stage", "error_kind", "error_message", "error_hint", "created_by", "idempotency_key",
    ]
    actions = ["retry", "cancel", "approve", "reject"]

    def has_add_permission(self, request) -> bool:
        return False  # jobs start from a theme ("Run now"), the API or run_pipeline

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


@admin.register(FailedStageRun)
class FailedStageRunAdmin(StageRunAdmin):
    list_display = ["id", "job", "stage", "attempt", "status", "error_kind", "error_message", "finished_at"]


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


@admin.register(Publication)
class PublicationAdmin(ReadOnlyAdmin):
    list_display = ["job", "destination", "location", "created"]
