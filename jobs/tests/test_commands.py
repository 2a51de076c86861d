"""Management commands: the same actions as the console, with one-line errors and exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs.models import Job
from jobs.tests.conftest import ROOT, TEST_FUNCTIONS, database_url, params

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_run_pipeline_inline_wait_shows_progress_and_exits_0_at_review(engine, theme, call_log, tmp_path):
    out = run(
        "run_pipeline", "--theme", "test", "--inline", "--wait", "--params", json.dumps(params(call_log, tmp_path))
    )
    job = Job.objects.get()
    assert out.splitlines()[0] == str(job.pk)
    assert "composition" in out and "succeeded" in out
    assert f"job {job.pk}: awaiting review" in out
    assert job.status == Job.Status.AWAITING_REVIEW


def test_run_pipeline_exits_1_when_the_job_fails(engine, theme, call_log, tmp_path):
    p = params(call_log, tmp_path, trend_analysis=["permanent"])
    with pytest.raises(SystemExit) as exc:
        run("run_pipeline", "--theme", "test", "--inline", "--wait", "--params", json.dumps(p))
    assert exc.value.code == 1
    assert Job.objects.get().status == Job.Status.FAILED


def test_retry_cancel_and_review_commands_drive_the_orchestrator(engine, theme, call_log, tmp_path, reviewer):
    with pytest.raises(SystemExit):
        run(
            "run_pipeline",
            "--theme",
            "test",
            "--inline",
            "--params",
            json.dumps(params(call_log, tmp_path, voiceover=["permanent", "ok"])),
        )
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED
    assert "failed" in run("jobs", "--status", "failed")
    assert "voiceover" in run("retry_job", str(job.pk))
    from jobs.orchestrator import run_inline

    assert run_inline(job.pk).status == Job.Status.AWAITING_REVIEW
    with pytest.raises(CommandError, match="needs --from-stage") as exc:
        run("review_job", str(job.pk), "--request-changes", "--notes", "x")
    assert exc.value.returncode == 2
    assert "running" in run(
        "review_job",
        str(job.pk),
        "--request-changes",
        "--from-stage",
        "script_generation",
        "--notes",
        "shorter",
        "--user",
        reviewer.username,
    )
    assert "cancelled" in run("cancel_job", str(job.pk))
    with pytest.raises(CommandError, match="nothing to cancel") as exc:
        run("cancel_job", str(job.pk))
    assert exc.value.returncode == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["retry_job", "999"], "no job with id 999"),
        (["retry_job", "abc"], "no job with id abc"),
        (["cancel_job", "999"], "no job with id 999"),
        (["review_job", "999", "--approve"], "no job with id 999"),
        (["run_pipeline", "--theme", "nope"], "no theme 'nope'"),
        (["run_pipeline", "--theme", "test", "--params", "{bad"], "not valid JSON"),
        (["jobs", "--status", "weird"], "unknown status"),
    ],
)
def test_unknown_ids_themes_and_values_exit_2_with_one_line(theme, args, message):
    with pytest.raises(CommandError, match=message) as exc:
        run(*args)
    assert exc.value.returncode == 2
    assert "\n" not in str(exc.value)


def test_an_unknown_stage_exits_2_from_the_shell(engine, theme):
    job = Job.objects.create(theme=theme, status=Job.Status.FAILED)
    env = {
        "DATABASE_URL": database_url(),
        "TRENDREEL_STAGE_FUNCTIONS": json.dumps(TEST_FUNCTIONS),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "retry_job", str(job.pk), "--from-stage", "bogus"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "CommandError: unknown stage 'bogus'; stages are: "
        + ", ".join(
            [
                "trend_collection",
                "trend_analysis",
                "script_generation",
                "scene_generation",
                "voiceover",
                "composition",
                "review",
                "publish",
            ]
        )
    ]
