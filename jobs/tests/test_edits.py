"""Targeted edits in the engine: only what depends on an edit runs again, the rest is reused, and an
approval never covers a composition made after it (``jobs.orchestrator.edit_job``, ``stages.edits``)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from jobs import orchestrator
from jobs.models import Job, JobEdit, StageRun
from jobs.orchestrator import gate
from jobs.tests.conftest import params
from jobs.tests.stagefns import calls
from stages import edits as editing
from stages import pipeline

pytestmark = pytest.mark.django_db(transaction=True)
README = Path(__file__).resolve().parents[2] / "README.md"  # a file that is not media
RS = StageRun.Status
BEFORE_REVIEW = list(pipeline.STAGE_KEYS[: pipeline.index(pipeline.GATE)])


@pytest.fixture
def editor(db) -> User:
    u = User.objects.create_user("edith", password="pw", is_staff=True)
    u.user_permissions.add(*Permission.objects.filter(codename__in=["view_job", "change_job"]))
    return User.objects.get(pk=u.pk)


@pytest.fixture
def in_review(engine, theme, call_log, tmp_path) -> Job:
    job = orchestrator.run_inline(orchestrator.start_job(theme, params=params(call_log, tmp_path)).pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    assert [s for s, _ in calls(call_log)] == BEFORE_REVIEW
    call_log.write_text("")  # from here on the log shows what the edit ran
    return job


def checkpoint(job: Job, stage: str) -> StageRun:
    return job.runs.get(stage=stage, status=RS.SUCCEEDED, superseded_at__isnull=True)


def checkpoints(job: Job) -> dict[str, int]:
    return {s: checkpoint(job, s).pk for s in BEFORE_REVIEW}


def edit_and_run(job: Job, edits: list[dict], user=None, **kwargs) -> tuple[Job, JobEdit]:
    record = orchestrator.edit_job(job.pk, edits, user=user, **kwargs)
    return orchestrator.run_inline(job.pk), record


def test_a_caption_edit_reruns_composition_only(in_review, editor, call_log):
    job, before = in_review, checkpoints(in_review)
    job, record = edit_and_run(job, [{"kind": "caption", "index": 2, "text": "Words on screen"}], editor, notes="typo")
    assert job.status == Job.Status.AWAITING_REVIEW
    assert calls(call_log) == [("composition", 2)]
    after = checkpoints(job)
    assert {s: after[s] for s in BEFORE_REVIEW[:-1]} == {s: before[s] for s in BEFORE_REVIEW[:-1]}  # reused
    assert after["composition"] != before["composition"]
    output = checkpoint(job, "composition").output
    assert output["overrides"] == {"segments": {"2": {"caption": "Words on screen"}}}
    assert output["base_attempt"] == 1 and output["base_dir_exists"]  # its own previous checkpoint
    assert (record.stages, record.items) == (["composition"], ["caption 2", "composition"])
    assert (record.user, record.notes, record.composition_run_id) == (editor, "typo", before["composition"])
    assert record.edits == [{"kind": "caption", "index": 2, "text": "Words on screen"}]
    assert job.runs.filter(stage="review", status=RS.WAITING).count() == 1  # a new review


def test_a_scene_edit_runs_scenes_and_composition_and_skips_the_voiceover(in_review, call_log):
    before = checkpoints(in_review)
    job, record = edit_and_run(in_review, [{"kind": "scene", "index": 1, "pick": "next"}], actor="cli-user")
    assert calls(call_log) == [("scene_generation", 2), ("composition", 2)]
    after = checkpoints(job)
    assert after["voiceover"] == before["voiceover"] and after["script_generation"] == before["script_generation"]
    assert job.runs.filter(stage="voiceover").count() == 1
    scenes = checkpoint(job, "scene_generation").output
    assert scenes["overrides"]["segments"]["1"]["scene"] == {"take": 1, "pick": 1}
    assert scenes["base_attempt"] == 1
    assert record.stages == ["scene_generation", "composition"] and record.actor == "cli-user"
    assert Job.objects.get(pk=job.pk).skip_stages == ["voiceover"]


def test_a_script_line_edit_skips_the_scenes_unless_its_headline_changes(in_review, call_log):
    job, _ = edit_and_run(in_review, [{"kind": "script_line", "index": 3, "text": "A new line."}])
    assert calls(call_log) == [("script_generation", 2), ("voiceover", 2), ("composition", 2)]
    assert job.runs.filter(stage="scene_generation").count() == 1
    call_log.write_text("")
    job, record = edit_and_run(job, [{"kind": "script_line", "index": 3, "text": "Again.", "headline": "New card"}])
    assert [s for s, _ in calls(call_log)] == ["script_generation", "scene_generation", "voiceover", "composition"]
    assert record.items == ["script line 3", "scene 3", "voice 3", "composition"]
    # overrides are cumulative: every stage sees every edit so far
    assert checkpoint(job, "composition").output["overrides"]["segments"]["3"] == {
        "narration": "Again.",
        "headline": "New card",
    }


def test_a_voice_edit_reruns_the_voiceover_and_bumps_the_take(in_review, call_log):
    job, _ = edit_and_run(in_review, [{"kind": "voice", "index": 2}, {"kind": "voice", "index": 2, "voice": "alloy"}])
    assert calls(call_log) == [("voiceover", 2), ("composition", 2)]
    assert checkpoint(job, "voiceover").output["overrides"]["segments"]["2"] == {"voice_take": 2, "voice": "alloy"}
    job, record = edit_and_run(job, [{"kind": "voice", "voice": "en_US-amy-low"}])
    assert record.items == ["the whole voice", "composition"]
    assert checkpoint(job, "voiceover").output["overrides"]["voice"] == "en_US-amy-low"


def test_an_edit_is_refused_while_the_job_runs_or_before_its_composition(engine, theme, call_log, tmp_path):
    job = orchestrator.start_job(theme, params=params(call_log, tmp_path, scene_generation=["permanent"]))
    with pytest.raises(orchestrator.InvalidState, match="pending"):
        orchestrator.edit_job(job.pk, [{"kind": "caption", "index": 1, "text": "x"}])
    job = orchestrator.run_inline(job.pk)
    assert (job.status, job.error_stage) == (Job.Status.FAILED, "scene_generation")
    with pytest.raises(orchestrator.InvalidState, match="no composition"):
        orchestrator.edit_job(job.pk, [{"kind": "caption", "index": 1, "text": "x"}])
    assert not JobEdit.objects.exists()


def test_an_edit_is_refused_while_its_rerun_runs(in_review):
    orchestrator.edit_job(in_review.pk, [{"kind": "caption", "index": 1, "text": "x"}])
    assert Job.objects.get(pk=in_review.pk).status == Job.Status.RUNNING
    with pytest.raises(orchestrator.InvalidState, match="running"):
        orchestrator.edit_job(in_review.pk, [{"kind": "caption", "index": 1, "text": "y"}])
    assert JobEdit.objects.count() == 1


def test_an_approval_before_an_edit_does_not_publish_after_it(engine, in_review, reviewer, editor, call_log):
    """Approve; publish fails at a destination; edit: the new composition waits for a new review, and
    publish may not be re-run on the old approval."""
    job = approve_and_fail_publish(engine, in_review, reviewer)
    orchestrator.edit_job(job.pk, [{"kind": "caption", "index": 1, "text": "Better words"}], user=editor)
    assert_needs_a_new_review(job, editor)
    assert [s for s, _ in calls(call_log)].count("publish") == 1


def test_a_published_job_is_not_edited(engine, in_review, reviewer):
    orchestrator.review_job(in_review.pk, "approve", user=reviewer)
    job = orchestrator.run_inline(in_review.pk)
    assert job.status == Job.Status.COMPLETED
    with pytest.raises(orchestrator.InvalidState, match="published"):
        orchestrator.edit_job(job.pk, [{"kind": "caption", "index": 1, "text": "x"}])


def test_invalid_edits_change_nothing_and_say_which_field_is_wrong(in_review):
    bad = [
        {"kind": "caption", "index": 9, "text": "x"},
        {"kind": "scene", "index": 1, "upload": "0123456789abcdef.png"},
        {"kind": "script_line", "index": 1, "text": "<b> </b>"},
        {"kind": "voice", "index": 1, "voice": "a b; rm -rf"},
        {"kind": "scene", "index": 1, "text": "x", "pick": "next"},
        {"kind": "dance"},
        {"kind": "caption", "index": 1, "text": "ok", "color": "red"},
    ]
    with pytest.raises(editing.EditError) as caught:
        orchestrator.edit_job(in_review.pk, bad)
    errors = {(e["edit"], e["field"]) for e in caught.value.errors}
    assert errors == {(1, "index"), (2, "upload"), (3, "text"), (4, "voice"), (5, ""), (6, "kind"), (7, "color")}
    assert "segments 1 to 3" in str(caught.value)
    job = Job.objects.get(pk=in_review.pk)
    assert (job.status, job.overrides, job.edits.count()) == (Job.Status.AWAITING_REVIEW, {}, 0)


def test_a_failed_edit_resumes_without_redoing_what_it_skipped(engine, in_review, call_log):
    Job.objects.filter(pk=in_review.pk).update(
        params={**in_review.params, "behave": {"scene_generation": ["ok", "permanent", "ok"]}}
    )
    job, _ = edit_and_run(in_review, [{"kind": "scene", "index": 2, "text": "New card text"}])
    assert (job.status, job.error_stage) == (Job.Status.FAILED, "scene_generation")
    voiceover = checkpoint(job, "voiceover").pk
    orchestrator.retry_job(job.pk)  # resume: the edit's plan still holds
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    assert checkpoint(job, "voiceover").pk == voiceover
    assert [s for s, _ in calls(call_log)] == ["scene_generation", "scene_generation", "composition"]
    # an operator's re-run from a stage runs every stage after it again
    orchestrator.retry_job(job.pk, from_stage="scene_generation")
    job = orchestrator.run_inline(job.pk)
    assert checkpoint(job, "voiceover").pk != voiceover
    assert Job.objects.get(pk=job.pk).skip_stages == []


# --- stages.edits on its own ------------------------------------------------------------------


def test_merge_bumps_takes_and_keeps_earlier_edits():
    first = editing.merge(
        {}, [{"kind": "scene", "index": 1, "text": "A"}, {"kind": "caption", "index": 2, "text": "c"}]
    )
    second = editing.merge(first, [{"kind": "scene", "index": 1, "pick": "next"}])
    third = editing.merge(
        second, [{"kind": "scene", "index": 1, "upload": "x.png"}], upload=lambda u: (f"jobs/1/uploads/{u}", "image")
    )
    assert first["segments"]["1"]["scene"] == {"take": 1, "text": "A"}
    assert second["segments"]["1"]["scene"] == {"take": 2, "pick": 1}
    assert third["segments"]["1"]["scene"] == {"take": 3, "upload": "jobs/1/uploads/x.png", "media": "image"}
    assert third["segments"]["2"] == {"caption": "c"}
    assert first["segments"]["1"]["scene"]["take"] == 1  # merge never changes its input


def test_plan_follows_the_pipeline_order():
    stages, items = editing.plan(
        [
            {"kind": "caption", "index": 1, "text": "c"},
            {"kind": "script_line", "index": 2, "text": "t", "headline": "h"},
        ]
    )
    assert stages == ["script_generation", "scene_generation", "voiceover", "composition"]
    assert items == ["caption 1", "script line 2", "scene 2", "voice 2", "composition"]
    assert editing.skipped(["script_generation", "voiceover", "composition"]) == ["scene_generation"]
    assert editing.skipped(["composition"]) == []


def test_texts_are_cleaned_and_capped():
    clean = editing.validate([{"kind": "caption", "index": 1, "text": "  <i>Hi</i>\u200b there  "}], segments=1)
    assert clean[0]["text"] == "Hi there"
    with pytest.raises(editing.EditError, match="at most 300"):
        editing.validate([{"kind": "caption", "index": 1, "text": "x" * 301}], segments=1)
    with pytest.raises(editing.EditError, match="at least one edit"):
        editing.validate([], segments=1)
    with pytest.raises(editing.EditError, match="index"):
        editing.validate([{"kind": "caption", "index": True, "text": "x"}], segments=1)


# --- manage.py edit_job -----------------------------------------------------------------------


def approve_and_fail_publish(engine, job: Job, reviewer) -> Job:
    """An approved job whose publish failed for good: editable, and its approval covers its composition."""
    engine.TRENDREEL_STAGE_POLICY["publish"]["max_attempts"] = 1
    Job.objects.filter(pk=job.pk).update(params={**job.params, "behave": {"publish": ["permanent", "ok"]}})
    orchestrator.review_job(job.pk, "approve", user=reviewer)
    job = orchestrator.run_inline(job.pk)
    assert (job.status, job.error_stage) == (Job.Status.FAILED, "publish") and gate.problem(job.pk) is None
    return job


def assert_needs_a_new_review(job: Job, user) -> None:
    job = orchestrator.run_inline(job.pk)
    assert job.status == Job.Status.AWAITING_REVIEW
    assert "nobody has approved" in gate.problem(job.pk)
    orchestrator.cancel_job(job.pk, user=user)
    with pytest.raises(orchestrator.InvalidState, match="approv"):
        orchestrator.retry_job(job.pk, from_stage="publish", user=user)


def edit_command(*args: str) -> str:
    out = io.StringIO()
    call_command("edit_job", *args, stdout=out)
    return out.getvalue()


def test_the_command_edits_as_a_user_and_the_old_approval_is_void(engine, in_review, reviewer, editor, call_log):
    job = approve_and_fail_publish(engine, in_review, reviewer)
    call_log.write_text("")
    out = edit_command(str(job.pk), "--caption", "2", "--text", "Fixed", "--scene", "3", "--pick",
                       "--notes", "two fixes", "--user", "edith")  # fmt: skip
    assert "re-runs scene_generation, composition (caption 2, scene 3, composition)" in out
    record = JobEdit.objects.get()
    assert (record.user, record.notes) == (editor, "two fixes")
    assert record.edits == [
        {"kind": "caption", "index": 2, "text": "Fixed"},
        {"kind": "scene", "index": 3, "pick": "next"},
    ]
    assert_needs_a_new_review(job, editor)
    assert [s for s, _ in calls(call_log)] == ["scene_generation", "composition"]


def test_the_command_stores_an_image_and_names_it(in_review, editor, tmp_path):
    from PIL import Image

    path = tmp_path / "mine.jpg"
    Image.new("RGB", (30, 50), (1, 2, 3)).save(path, format="JPEG")
    edit_command(str(in_review.pk), "--scene", "1", "--image", str(path), "--user", "edith")
    (edit,) = JobEdit.objects.get().edits
    assert edit["kind"] == "scene" and edit["upload"].endswith(".jpg")
    assert Job.objects.get(pk=in_review.pk).overrides["segments"]["1"]["scene"]["media"] == "image"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--user", "edith"], 2, "no edit given"),
        (["--text", "x", "--user", "edith"], 2, "must follow --scene"),
        (["--caption", "two", "--text", "x", "--user", "edith"], 2, "segment number"),
        (["--caption", "9", "--text", "x", "--user", "edith"], 2, "edit 1 index: is 9; the script has segments 1 to 3"),
        (["--caption", "1", "--text", "x"], 2, "--user"),
        (["--caption", "1", "--text", "x", "--user", "nobody"], 2, "no user"),
        (["--caption", "1", "--text", "x", "--user", "viewer"], 1, "change_job"),
        (["--scene", "1", "--image", "/no/such/file.png", "--user", "edith"], 2, "--image /no/such/file.png"),
        (["--scene", "1", "--clip", str(README), "--user", "edith"], 2, "not an image or clip"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line(in_review, editor, args, code, words):
    User.objects.create_user("viewer", password="pw", is_staff=True)
    with pytest.raises(CommandError, match=re.escape(words)) as caught:
        edit_command(str(in_review.pk), *args)
    assert caught.value.returncode == code
    assert not JobEdit.objects.exists()


def test_the_command_refuses_an_edit_while_the_job_runs(in_review, editor):
    orchestrator.retry_job(in_review.pk, from_stage="composition")
    with pytest.raises(CommandError, match="running") as caught:
        edit_command(str(in_review.pk), "--caption", "1", "--text", "x", "--user", "edith")
    assert caught.value.returncode == 1
    with pytest.raises(CommandError, match="no job with id 999999"):
        edit_command("999999", "--caption", "1", "--text", "x", "--user", "edith")


def test_an_edit_after_a_failed_edit_finishes_what_the_first_left_undone(engine, in_review, call_log):
    Job.objects.filter(pk=in_review.pk).update(
        params={**in_review.params, "behave": {"scene_generation": ["ok", "permanent", "ok"]}}
    )
    job, _ = edit_and_run(in_review, [{"kind": "scene", "index": 2, "pick": "next"}])
    assert (job.status, job.error_stage) == (Job.Status.FAILED, "scene_generation")
    job, record = edit_and_run(job, [{"kind": "caption", "index": 1, "text": "Fine"}])
    assert record.stages == ["scene_generation", "composition"]
    assert record.items == ["caption 1", "scene_generation (unfinished)", "composition"]
    assert job.status == Job.Status.AWAITING_REVIEW
    assert [s for s, _ in calls(call_log)] == ["scene_generation", "scene_generation", "composition"]
    assert job.runs.filter(stage="voiceover").count() == 1


def test_edits_are_read_only_in_the_admin_for_everyone(in_review, admin_client):
    record = orchestrator.edit_job(in_review.pk, [{"kind": "caption", "index": 1, "text": "x"}], notes="why")
    listing = admin_client.get(reverse("admin:jobs_jobedit_changelist"))
    assert listing.status_code == 200 and "why" in listing.content.decode()
    page = admin_client.get(reverse("admin:jobs_jobedit_change", args=[record.pk]))
    assert page.status_code == 200 and 'name="notes"' not in page.content.decode()  # shown, not editable
    assert admin_client.get(reverse("admin:jobs_jobedit_add")).status_code == 403
    assert admin_client.post(reverse("admin:jobs_jobedit_delete", args=[record.pk]), {"post": "yes"}).status_code == 403
    assert (
        admin_client.post(reverse("admin:jobs_jobedit_change", args=[record.pk]), {"notes": "rewritten"}).status_code
        == 403
    )
    job_page = admin_client.get(reverse("admin:jobs_job_change", args=[in_review.pk])).content.decode()
    assert "jobedit" in job_page.lower() and "why" in job_page  # the job's page lists its edits
    assert JobEdit.objects.get().notes == "why"
