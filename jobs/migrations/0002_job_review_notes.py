import jobs.models
from django.db import migrations, models


def copy_notes(apps, schema_editor):
    """Jobs reviewed before this field existed: their notes come from the review history."""
    Job = apps.get_model("jobs", "Job")
    ReviewDecision = apps.get_model("jobs", "ReviewDecision")
    notes: dict[int, list[str]] = {}
    for job_id, text in (
        ReviewDecision.objects.filter(decision="request_changes")
        .exclude(notes="")
        .order_by("decided_at", "id")
        .values_list("job_id", "notes")
    ):
        notes.setdefault(job_id, []).append(text)
    for job_id, texts in notes.items():
        Job.objects.filter(pk=job_id).update(review_notes=texts)


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='review_notes',
            field=models.JSONField(blank=True, default=jobs.models._list),
        ),
        migrations.RunPython(copy_notes, migrations.RunPython.noop),
    ]
