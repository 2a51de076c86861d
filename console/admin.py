"""API tokens in the admin: made here, shown once, revoked here. The hash is never displayed."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from console.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created", "last_used", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    actions = ["revoke"]
    fields = ["user", "name", "prefix", "created", "last_used", "revoked_at"]
    readonly_fields = ["prefix", "created", "last_used", "revoked_at"]
    raw_id_fields = ["user"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        # a token belongs to its user for life: re-assigning one would hand someone else's secret over
        return [*self.readonly_fields, "user"] if obj is not None else [*self.readonly_fields]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return ["user", "name"] if obj is None else list(self.fields)

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        """On add: generate the token, store its hash, show the token to this admin once."""
        raw = None if change else obj.set_new_token()
        super().save_model(request, obj, form, change)
        if raw is not None:
            self.message_user(
                request,
                f"API token for {obj.user}: {raw} — copy it now; it is not stored and will not be shown again.",
                messages.WARNING,
            )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = [token.prefix for token in queryset if token.revoke()]
        if done:
            self.message_user(request, f"Revoked: {', '.join(done)}", messages.SUCCESS)
        else:
            self.message_user(request, "Those tokens were already revoked.", messages.INFO)
