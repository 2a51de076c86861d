"""Trendreel's records. Status fields are written only by ``jobs.orchestrator``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import connection, models
from django.db.models import Sum
from django.db.models.functions import Coalesce, Extract, RowNumber, TruncDate
from django.utils import timezone

from jobs.prices import QUANTUM
from jobs.validation import batch_count
from stages.pipeline import STAGE_CHOICES, STAGE_KEYS


def _list() -> list:
    return []


def _dict() -> dict:
    return {}


class Theme(models.Model):
    """What a job is about: where trends come from and how the video should look and sound."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    keywords = models.JSONField(
        default=_list, blank=True, help_text='Words that make a trend relevant, e.g. ["ai", "python"].'
    )
    sources = models.JSONField(
        default=_list,
        blank=True,
        help_text='Feeds to read: [{"name": "hn", "url": "https://…/rss"} or {"name": "local", "path": "feeds/x.xml"}].',
    )
    target_seconds = models.PositiveSmallIntegerField(default=30, help_text="Target video length (30-60 s).")
    voice = models.CharField(max_length=120, blank=True, default="", help_text="Voice name for the voiceover provider.")
    settings = models.JSONField(default=_dict, blank=True, help_text='Per-stage settings: {"voiceover": {…}, …}.')
    schedule_cron = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text='Cron expression for automatic runs, e.g. "0 9 * * 1-5"; empty: no schedule.',
    )
    schedule_batch = models.PositiveSmallIntegerField(
        default=1, help_text="Jobs per scheduled run (one per top topic)."
    )
    created = models.DateTimeField(default=timezone.now)
    daily_budget = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="US dollars the theme's jobs may spend per UTC day; once spent, new jobs are refused "
        "until 00:00 UTC (running jobs go on). Empty: no budget.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.keywords, list) or not all(isinstance(k, str) for k in self.keywords):
            errors["keywords"] = "Keywords must be a list of strings."
        if not isinstance(self.sources, list) or not all(
            isinstance(s, dict) and (s.get("url") or s.get("path")) for s in self.sources
        ):
            errors["sources"] = "Sources must be a list of objects, each with a url or a path."
        if not isinstance(self.settings, dict):
            errors["settings"] = "Settings must be an object keyed by stage."
        else:
            unknown = set(self.settings) - set(STAGE_KEYS) - {"providers"}
            if unknown:
                errors["settings"] = f"Unknown stages in settings: {', '.join(sorted(unknown))}."
            else:
                from stages.look import validate  # the look (captions, aspect, music...): one sentence

                problem = validate(self.settings)
                if problem:
                    errors["settings"] = problem
        if self.schedule_cron:
            from croniter import croniter

            if not croniter.is_valid(self.schedule_cron):
                errors["schedule_cron"] = "Not a valid cron expression (minute hour day month weekday)."
        try:
            batch_count(self.schedule_batch)
        except ValueError as exc:
            errors["schedule_batch"] = str(exc).capitalize() + "."
        if not 5 <= (self.target_seconds or 0) <= 180:
            errors["target_seconds"] = "Target length must be between 5 and 180 seconds."
        if errors:
            raise ValidationError(errors)

    def spent_today(self, now: datetime | None = None) -> Decimal:
        """The cost of the theme's attempts that finished today (UTC), one query."""
        return StageRun.objects.filter(job__theme_id=self.pk).finished_since(utc_midnight(now)).cost_total()

    def as_input(self) -> dict:
        """The theme as stages see it (plain data, no ORM objects)."""
        return {
            "id": self.pk,
            "name": self.name,
            "slug": self.slug,
            "keywords": list(self.keywords or []),
            "sources": list(self.sources or []),
            "target_seconds": self.target_seconds,
            "voice": self.voice,
            "settings": dict(self.settings or {}),
        }


class Trend(models.Model):
    """One item seen in a feed. Upserted on (source, external_id): re-reading a feed adds nothing."""

    source = models.CharField(max_length=200)
    external_id = models.CharField(max_length=500)
    title = models.CharField(max_length=500)
    url = models.URLField(max_length=1000, blank=True, default="")
    summary = models.TextField(blank=True, default="")
    published = models.DateTimeField(null=True, blank=True)
    engagement = models.IntegerField(default=0, help_text="Score/points/comments where the feed has them.")
    raw = models.JSONField(default=_dict, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "external_id"], name="trend_source_external_id")]
        indexes = [models.Index(fields=["-published"], name="trend_published")]

    def __str__(self) -> str:
        return self.title


def utc_midnight(now: datetime | None = None) -> datetime:
    """The start of ``now``'s UTC day (the budget's day)."""
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


MONEY = models.DecimalField(max_digits=14, decimal_places=6)


def _money(value: Decimal | None) -> Decimal:
    """A database sum as money (SQLite's sums come back with extra digits)."""
    return Decimal(value or 0).quantize(QUANTUM)


class JobQuerySet(models.QuerySet):
    def active(self) -> JobQuerySet:
        return self.filter(status__in=Job.ACTIVE)

    def for_dashboard(self) -> JobQuerySet:
        return self.select_related("theme")

    def status_counts(self) -> dict[str, int]:
        """``{status: number of jobs}`` in one grouped query (statuses without jobs are absent)."""
        return {row["status"]: row["n"] for row in self.values("status").annotate(n=models.Count("id")).order_by()}

    def with_open_runs(self) -> JobQuerySet:
        """Each job's queued and running attempts, newest first, as ``job.open_runs`` (one more query)."""
        runs = StageRun.objects.filter(status__in=[StageRun.Status.RUNNING, StageRun.Status.QUEUED]).order_by("-id")
        return self.prefetch_related(models.Prefetch("runs", queryset=runs, to_attr="open_runs"))

    def with_cost(self) -> JobQuerySet:
        """Each job with ``total_cost``: the sum of its attempts' recorded cost (0 without any)."""
        return self.annotate(total_cost=Coalesce(Sum("runs__cost"), Decimal(0), output_field=MONEY))


class Job(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        PUBLISHING = "publishing", "Publishing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"

    ACTIVE = (Status.PENDING, Status.RUNNING, Status.AWAITING_REVIEW, Status.PUBLISHING)
    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.REJECTED)

    theme = models.ForeignKey(Theme, on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    current_stage = models.CharField(max_length=40, choices=STAGE_CHOICES, blank=True, default="")
    params = models.JSONField(default=_dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(default=timezone.now)
    error_stage = models.CharField(max_length=40, blank=True, default="")
    error_kind = models.CharField(max_length=20, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_hint = models.TextField(blank=True, default="")
    # every "request changes" round's notes, oldest first: what stages see as ``ctx.review_notes``
    # (kept on the job so a stage's context needs no query of the review history)
    review_notes = models.JSONField(default=_list, blank=True)
    # set when retention removed the job's media files (``manage.py prune_media``); the records stay
    media_purged_at = models.DateTimeField(null=True, blank=True)
    # targeted edits (issue 14): every edit so far, merged (``stages.edits``; stages see it as
    # ``ctx.overrides``), and the stages the current edit's re-run skips (their checkpoint stays
    # current). Both are loaded by the worker's claim with the job's row: no query of their own.
    overrides = models.JSONField(default=_dict, blank=True)
    skip_stages = models.JSONField(default=_list, blank=True)

    objects = JobQuerySet.as_manager()

    def edit_records(self) -> list[JobEdit]:
        """The job's targeted edits, oldest first, with their users: one query per Job instance,
        shared by the pages' edit history and the lineage panel."""
        cached = getattr(self, "_edit_records", None)
        if cached is None:
            cached = self._edit_records = list(self.edits.select_related("user"))
        return cached

    class Meta:
        ordering = ["-created"]
        permissions = [("review_job", "Can approve, reject or request changes on a job in review")]
        indexes = [
            # dashboard: counts by status, running jobs, review queue, recent failures
            models.Index(fields=["status", "-created"], name="job_status_created"),
            models.Index(fields=["-created"], name="job_created"),
            models.Index(fields=["theme", "-created"], name="job_theme_created"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.theme_id and self.theme.slug})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class Median(models.Aggregate):
    """PostgreSQL's ``percentile_cont(0.5) WITHIN GROUP (ORDER BY …)``, ``FILTER`` included."""

    function = "percentile_cont"
    name = "Median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = models.FloatField()


class StageRunQuerySet(models.QuerySet):
    def for_timeline(self) -> StageRunQuerySet:
        """One job's attempts in the order they were queued (the job page's timeline and attempts)."""
        return self.order_by("queued_at", "id")

    def stage_stats(self, day, week) -> dict[str, dict[str, tuple]]:
        """Per stage, the attempts finished since ``day`` and since ``week``: ``{stage: {"day": (total,
        succeeded, median seconds of the succeeded or None), "week": (...)}}``.

        PostgreSQL computes both windows in one pass with ``percentile_cont``; SQLite counts per
        window and picks the median with a window function. Either way the cost does not grow with
        the number of jobs shown (the ``stagerun_finished_stage`` index).
        """
        ok = StageRun.Status.SUCCEEDED
        finished = self.filter(started_at__isnull=False, finished_at__isnull=False)
        took = models.ExpressionWrapper(
            models.F("finished_at") - models.F("started_at"), output_field=models.DurationField()
        )
        raw: dict[str, dict[str, tuple]] = {}
        if connection.vendor == "postgresql":
            seconds = Extract(took, "epoch")
            recent, succeeded = models.Q(finished_at__gte=day), models.Q(status=ok)
            rows = (
                finished.filter(finished_at__gte=week)
                .values("stage")
                .annotate(
                    d_total=models.Count("id", filter=recent),
                    d_ok=models.Count("id", filter=recent & succeeded),
                    d_med=Median(seconds, filter=recent & succeeded),
                    w_total=models.Count("id"),
                    w_ok=models.Count("id", filter=succeeded),
                    w_med=Median(seconds, filter=succeeded),
                )
                .order_by()
            )
            for r in rows:
                raw[r["stage"]] = {
                    "day": (r["d_total"], r["d_ok"], r["d_med"]),
                    "week": (r["w_total"], r["w_ok"], r["w_med"]),
                }
            return raw
        for label, since in (("day", day), ("week", week)):
            window = finished.filter(finished_at__gte=since)
            counts: dict[str, dict[str, int]] = {}
            for row in window.values("stage", "status").annotate(n=models.Count("id")).order_by():
                counts.setdefault(row["stage"], {})[row["status"]] = row["n"]
            medians = {
                row["stage"]: row["d"].total_seconds()
                for row in window.filter(status=ok)
                .annotate(
                    d=took,
                    rn=models.Window(RowNumber(), partition_by=[models.F("stage")], order_by=models.F("d").asc()),
                    cnt=models.Window(models.Count("id"), partition_by=[models.F("stage")]),
                )
                .filter(rn=(models.F("cnt") + 1) / 2)
                .values("stage", "d")
            }
            for stage, c in counts.items():
                raw.setdefault(stage, {})[label] = (sum(c.values()), c.get(ok, 0), medians.get(stage))
        return raw

    # the cost ledger's sums, computed by the database

    def finished_since(self, since: datetime) -> StageRunQuerySet:
        return self.filter(finished_at__gte=since)

    def cost_total(self) -> Decimal:
        return _money(self.aggregate(total=Coalesce(Sum("cost"), Decimal(0), output_field=MONEY))["total"])

    def cost_by_stage(self) -> dict[str, Decimal]:
        """stage -> cost of its attempts (a job's runs: the job page's per-stage subtotal)."""
        rows = self.order_by().values("stage").annotate(total=Sum("cost")).values_list("stage", "total")
        return {stage: _money(total) for stage, total in rows}

    def cost_by_theme_day(self, days: int = 14, now: datetime | None = None) -> list[dict]:
        """``[{"theme", "name", "day", "total"}]``: the cost of attempts finished per theme and UTC
        day, over the last ``days`` days (today included), days without cost left out."""
        since = utc_midnight(now) - timedelta(days=days - 1)
        rows = list(
            self.finished_since(since)
            .filter(cost__gt=0)
            .order_by()
            .values(theme=models.F("job__theme__slug"), name=models.F("job__theme__name"))
            .annotate(day=TruncDate("finished_at", tzinfo=UTC), total=Sum("cost"))
            .order_by("day", "theme")
        )
        return [{**row, "total": _money(row["total"])} for row in rows]


class StageRun(models.Model):
    """One attempt of one stage of one job. Never deleted or rewritten by a retry."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        WAITING = "waiting", "Waiting for review"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        CRASHED = "crashed", "Crashed"

    class ErrorKind(models.TextChoices):
        TRANSIENT = "transient", "Transient"
        PERMANENT = "permanent", "Permanent"
        TIMEOUT = "timeout", "Time limit"
        CRASHED = "crashed", "Worker lost"
        CANCELLED = "cancelled", "Cancelled"
        UNEXPECTED = "unexpected", "Unexpected error"

    OPEN = (Status.QUEUED, Status.RUNNING, Status.WAITING)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="runs")
    stage = models.CharField(max_length=40, choices=STAGE_CHOICES)
    attempt = models.PositiveIntegerField(default=1)
    # 0 for a run the pipeline or an operator started, +1 for each automatic retry after it:
    # the retry budget (max_attempts) counts from the last operator action.
    retry_index = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=200, blank=True, default="", help_text="Why this attempt exists.")
    queued_at = models.DateTimeField(default=timezone.now)
    not_before = models.DateTimeField(null=True, blank=True, help_text="Backoff: not started before this time.")
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="Last push to the broker.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True, default="")
    error_kind = models.CharField(max_length=20, choices=ErrorKind.choices, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_hint = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")
    log_tail = models.TextField(blank=True, default="")
    input = models.JSONField(default=_dict, blank=True, help_text="Operator input for this attempt (review notes).")
    output = models.JSONField(null=True, blank=True)
    output_dir = models.CharField(
        max_length=500, blank=True, default="", help_text="Checkpoint folder, relative to MEDIA_ROOT."
    )
    superseded_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when an operator re-ran an earlier stage."
    )
    worker = models.CharField(max_length=200, blank=True, default="", help_text="host:pid of the claiming worker.")
    # child processes the attempt started, as recorded by its watchdog ({"pid", "start", "boot"}):
    # the sweeper kills them, on their own host, when the worker died without them
    processes = models.JSONField(default=_list, blank=True)
    # the cost ledger: what the attempt consumed ({provider: {metric: amount}}, stages.base.Usage)
    # and what that cost at the price table of the time it ended (jobs.prices), succeeded or not
    usage = models.JSONField(default=_dict, blank=True)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0), help_text="US dollars.")

    objects = StageRunQuerySet.as_manager()

    class Meta:
        ordering = ["job_id", "queued_at", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "stage", "attempt"], name="stagerun_job_stage_attempt")]
        indexes = [
            # sweeper: running attempts by heartbeat, queued attempts by due time
            models.Index(fields=["status", "heartbeat_at"], name="stagerun_status_heartbeat"),
            models.Index(fields=["status", "not_before"], name="stagerun_status_due"),
            # dashboard: per-stage stats over 24 h / 7 days
            models.Index(fields=["finished_at", "stage"], name="stagerun_finished_stage"),
        ]

    def __str__(self) -> str:
        return f"{self.stage} #{self.attempt} of job {self.job_id}"

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    @property
    def is_checkpoint(self) -> bool:
        return self.status == self.Status.SUCCEEDED and self.superseded_at is None


class FailedStageRunManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(status__in=[StageRun.Status.FAILED, StageRun.Status.CRASHED])


class FailedStageRun(StageRun):
    """Admin list of failed and crashed attempts (proxy)."""

    objects = FailedStageRunManager()

    class Meta:
        proxy = True
        verbose_name = "failed stage run"


class Artifact(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    stage_run = models.ForeignKey(StageRun, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=20)
    label = models.CharField(max_length=200, blank=True, default="")
    path = models.CharField(max_length=500, help_text="Relative to MEDIA_ROOT.")
    size = models.BigIntegerField(default=0)
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the file.")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stage_run", "path"], name="artifact_run_path")]

    def __str__(self) -> str:
        return self.path


class ReviewDecision(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve", "Approved"
        REJECT = "reject", "Rejected"
        REQUEST_CHANGES = "request_changes", "Changes requested"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="reviews")
    stage_run = models.ForeignKey(StageRun, on_delete=models.SET_NULL, null=True, related_name="+")
    # the checkpoint the reviewer saw (composition): an approval covers that one alone
    composition_run = models.ForeignKey(StageRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    from_stage = models.CharField(max_length=40, choices=STAGE_CHOICES, blank=True, default="")
    notes = models.TextField(blank=True, default="")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["decided_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} job {self.job_id}"


class JobEdit(models.Model):
    """One targeted edit request (API, command, console): who asked what, why, and what it re-ran.

    An audit row: written once by ``jobs.orchestrator.edit_job``, never changed.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="edits")
    created_at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=150, blank=True, default="", help_text="Who asked, by name (commands).")
    edits = models.JSONField(default=_list, blank=True, help_text="The validated edit list.")
    notes = models.TextField(blank=True, default="")
    stages = models.JSONField(default=_list, blank=True, help_text="The stages that run again.")
    items = models.JSONField(default=_list, blank=True, help_text='What is redone, e.g. ["scene 3", "composition"].')
    # the composition checkpoint the edit was made against (what the editor saw)
    composition_run = models.ForeignKey(StageRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Edit {self.pk} of job {self.job_id}"

    @property
    def by(self) -> str:
        return self.user.get_username() if self.user_id and self.user else (self.actor or "system")


class Publication(models.Model):
    """One delivery of one job to one destination: the unique key makes publishing idempotent."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="publications")
    destination = models.CharField(max_length=200)
    external_id = models.CharField(max_length=500, blank=True, default="")
    location = models.CharField(max_length=1000, blank=True, default="")
    meta = models.JSONField(default=_dict, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "destination"], name="publication_job_destination")]

    def __str__(self) -> str:
        return f"{self.destination}: job {self.job_id}"


class PublicationMetrics(models.Model):
    """One reading of a published video's numbers (``jobs.analytics`` pulls them on a schedule).

    A time series per Publication: rows are added, never updated, so the job page can draw how a
    video grew and the feedback loop (``stages.feedback``) reads the latest reading. A platform
    that does not report a number leaves it empty (TikTok has no average view duration).
    """

    publication = models.ForeignKey(Publication, on_delete=models.CASCADE, related_name="metrics")
    fetched_at = models.DateTimeField(default=timezone.now)
    views = models.BigIntegerField(null=True, blank=True)
    likes = models.BigIntegerField(null=True, blank=True)
    comments = models.BigIntegerField(null=True, blank=True)
    shares = models.BigIntegerField(null=True, blank=True)
    avg_view_seconds = models.FloatField(null=True, blank=True)
    raw = models.JSONField(default=_dict, blank=True)  # the platform's own fields, for the record

    class Meta:
        ordering = ["publication_id", "fetched_at", "id"]
        verbose_name_plural = "publication metrics"
        indexes = [
            # the latest reading per publication (job page, dashboard, feedback history)
            models.Index(fields=["publication", "-fetched_at"], name="pubmetrics_pub_fetched"),
        ]

    def __str__(self) -> str:
        return f"{self.publication_id} at {self.fetched_at:%Y-%m-%d %H:%M}: {self.views} views"
