"""API tokens: per-user bearer tokens for the JSON API. Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

PREFIX_LENGTH = 8
# last_used is written at most once per this interval (a busy client must not write on every call)
TOUCH_INTERVAL = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def usable(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, user__is_active=True)


class ApiToken(models.Model):
    """A bearer token for one user. The token itself is shown once, when it is made, and never stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text='What the token is for, e.g. "n8n workflow".')
    prefix = models.CharField(
        max_length=PREFIX_LENGTH, editable=False, help_text="First characters of the token, to tell tokens apart."
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def set_new_token(self) -> str:
        """Give this (unsaved) token a fresh secret; returns the raw token, to be shown once."""
        raw = secrets.token_urlsafe(32)
        self.prefix = raw[:PREFIX_LENGTH]
        self.token_hash = hash_token(raw)
        return raw

    @classmethod
    def issue(cls, user, name: str) -> tuple[ApiToken, str]:
        token = cls(user=user, name=name)
        raw = token.set_new_token()
        token.save()
        return token, raw

    @classmethod
    def authenticate(cls, raw: str) -> ApiToken | None:
        """The usable token for ``raw`` (not revoked, active user), or None.

        Looked up by its hash: the hash of a 256-bit random token leaks nothing through timing.
        """
        if not raw or len(raw) > 200:
            return None
        token = cls.objects.usable().select_related("user").filter(token_hash=hash_token(raw)).first()
        if token is not None:
            token.touch()
        return token

    def touch(self) -> None:
        """Record use, at most once per ``TOUCH_INTERVAL`` (a conditional UPDATE, no race)."""
        now = timezone.now()
        if self.last_used is not None and now - self.last_used < TOUCH_INTERVAL:
            return
        stale = models.Q(last_used__isnull=True) | models.Q(last_used__lt=now - TOUCH_INTERVAL)
        if ApiToken.objects.filter(stale, pk=self.pk).update(last_used=now):
            self.last_used = now

    def revoke(self) -> bool:
        if self.revoked_at is not None:
            return False
        self.revoked_at = timezone.now()
        ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=self.revoked_at)
        return True


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` one user sent with ``POST /api/generate``, the request it came with, and its job.

    Scoped per user (one user's key never returns another user's job). The unique (user, key) row
    is inserted in the transaction that starts the job, before the job: of concurrent requests
    with one key exactly one inserts it and starts a job; the others wait on the unique index,
    fail, and answer from the winner's row (the same job, or 409 when their body differs).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    # SHA-256 of the request as parsed (theme and params, canonical JSON): the same request in
    # other whitespace or key order is the same request
    body_hash = models.CharField(max_length=64)
    job = models.ForeignKey("jobs.Job", null=True, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id})"
