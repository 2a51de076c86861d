"""The feedback loop: past videos' views weigh the patterns trend analysis picks (synthetic
histories): the choice moves toward the better pattern and still explores; every choice explained."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, Publication, PublicationMetrics, Theme
from stages import feedback, publish, script_generation
from stages.base import PermanentStageError
from stages.tests.helpers import make_context
from stages.tests.test_trend_analysis import analyse, trend
from stages.tests.test_webhook import publish_ctx

_n = itertools.count(1)


def video(theme: Theme, views: int, *, days_ago: float = 2, **patterns) -> Job:
    """A published, measured video of ``theme`` made with ``patterns``."""
    when = timezone.now() - timedelta(days=days_ago)
    job = Job.objects.create(theme=theme, status=Job.Status.COMPLETED, created=when)
    pub = Publication.objects.create(
        job=job,
        destination="youtube",
        external_id=f"v{next(_n)}",
        created=when,
        meta={"state": "published", "title": f"Video {job.pk}", "patterns": patterns},
    )
    PublicationMetrics.objects.create(publication=pub, views=views, likes=views // 20)
    return job


def ctx_for(tmp_path, theme: Theme, job_id: int, settings: dict | None = None, params: dict | None = None):
    data = theme.as_input()
    data["settings"] = {"trend_analysis": {"feedback": settings or {}}}
    ctx = make_context(tmp_path, "trend_analysis", theme=data, params=params)
    ctx.job_id = job_id
    return ctx


@pytest.fixture
def history(db) -> Theme:
    """Eight videos that opened with the subject did ~5000 views; eight plain ones ~300. Every one
    had a "title" caption; nobody tried "hook" or "summary" captions yet."""
    theme = Theme.objects.create(name="Tech pulse", slug="tech-feedback", target_seconds=30)
    for i in range(8):
        video(theme, 4000 + 250 * i, hook="subject", caption_style="title", length=30, keywords=["robot"])
        video(theme, 200 + 25 * i, hook="plain", caption_style="title", length=30, keywords=["heat"])
    return theme


@pytest.mark.django_db
def test_the_choice_prefers_the_better_pattern_and_still_explores(tmp_path, history):
    picks = {"hook": Counter(), "caption_style": Counter()}
    for job_id in range(10_000, 10_300):
        plan = feedback.plan(ctx_for(tmp_path, history, job_id), [], keywords_of=lambda c: [])
        for name in picks:
            picks[name][plan.chosen[name]] += 1
    # the subject hook did 15x the views: chosen most of the time ...
    assert picks["hook"]["subject"] >= 0.85 * 300
    # ... and the plain one is still tried now and then (the 10 % exploration floor at least)
    assert 3 <= picks["hook"]["plain"] <= 0.15 * 300
    # untried caption styles get their turn: new patterns are learnt about, not ignored
    assert picks["caption_style"]["hook"] >= 15 and picks["caption_style"]["summary"] >= 15


@pytest.mark.django_db
def test_the_analysis_says_which_weights_it_used_and_why(tmp_path, history):
    plan = feedback.plan(ctx_for(tmp_path, history, 4242), [], keywords_of=lambda c: [])
    out = plan.explain()
    assert out["active"] is True and out["history"]["videos"] == 16 and "Thompson sampling" in out["model"]
    hook = out["dimensions"]["hook"]
    weights = {o["value"]: o["weight"] for o in hook["options"]}
    assert weights["subject"] > 1 > weights["plain"]  # x times the theme's typical views
    assert {o["value"]: o["videos"] for o in hook["options"]} == {"subject": 8, "plain": 8}
    assert {o["value"]: o["mean_views"] for o in hook["options"]}["plain"] == pytest.approx(283, abs=2)
    assert hook["chosen"] == out["chosen"]["hook"] and hook["why"]
    assert out["dimensions"]["length"]["why"].startswith("the only option")
    assert "voice" not in out["dimensions"]  # the theme lists no voices to compare
    # the same job always makes the same choice (seeded by the job id)
    again = feedback.plan(ctx_for(tmp_path, history, 4242), [], keywords_of=lambda c: []).explain()
    assert again["chosen"] == out["chosen"] and again["seed"] == out["seed"]


@pytest.mark.django_db
def test_old_videos_and_this_jobs_own_do_not_count(tmp_path, history):
    theme = Theme.objects.create(name="Fresh", slug="fresh-feedback")
    video(theme, 100, days_ago=200, hook="plain")
    own = video(theme, 100, hook="plain")
    video(theme, 100, hook="plain")
    plan = feedback.plan(ctx_for(tmp_path, theme, own.pk), [], keywords_of=lambda c: [])
    assert plan.active is False and plan.chosen == {}
    assert "it has 1 in the last 90 days" in plan.reason and "defaults apply" in plan.reason


@pytest.mark.django_db
def test_the_story_ranking_moves_toward_keywords_that_did_well(tmp_path, history):
    robots = trend("wire", "Robot bartender pours a perfect pint", hours_ago=2, engagement=300)
    heat = trend("forum", "Heat pumps outsell gas boilers", engagement=300)  # newer: first without feedback
    theme = history.as_input()
    plain = analyse(tmp_path / "none", [robots, heat], theme={**theme, "id": None})  # no theme id: no history
    assert plain["topic"]["trend_id"] == heat.id and plain["patterns"]["active"] is False

    wins = Counter()
    for job_id in range(20_000, 20_030):
        out = analyse(tmp_path / str(job_id), [robots, heat], theme=theme, job_id=job_id)
        wins[out["topic"]["trend_id"]] += 1
    assert wins[robots.id] >= 27  # robot videos did 15x the views of heat videos for this theme

    out = analyse(tmp_path / "explain", [robots, heat], theme=theme, job_id=20_000)
    words = {k["keyword"]: k for k in out["patterns"]["keywords"]["topic"]}
    assert words["robot"]["videos"] == 8 and words["robot"]["weight"] > 1
    assert out["patterns"]["keywords"]["bonus"] > 0 and out["patterns"]["keywords"]["weight"] == 0.15
    components = {c["trend_id"]: c["components"] for c in out["candidates"]}
    assert components[robots.id]["feedback"] > 0 > components[heat.id]["feedback"]


@pytest.mark.django_db
def test_a_batch_shares_one_story_ranking(tmp_path, history):
    titles = [
        "Robot bartender pours a perfect pint",
        "Warehouse robot learns to fold laundry",
        "Heat pumps outsell gas boilers",
        "City heat map shows cooler parks",
        "Solar kiosk charges phones in Nairobi",
    ]
    stories = [trend("wire", title, engagement=100 + i) for i, title in enumerate(titles)]
    batch = {"batch": "b-feedback", "batch_size": 3}
    picks = [
        analyse(
            tmp_path / str(i), stories, theme=history.as_input(), params={**batch, "topic_rank": i}, job_id=30_000 + i
        )
        for i in range(3)
    ]
    assert len({p["topic"]["trend_id"] for p in picks}) == 3  # siblings never collide on a story
    assert len({tuple(c["trend_id"] for c in p["candidates"]) for p in picks}) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"explore": 2}, "explore=2"),
        ({"prior_weight": "lots"}, "prior_weight"),
        ({"options": {"hook": ["shout"]}}, "options.hook"),
        ({"options": {"mood": ["calm"]}}, "options are lists"),
        ({"surprise": True}, "unknown settings surprise"),
    ],
)
def test_bad_feedback_settings_are_refused_with_a_hint(tmp_path, history, config, message):
    with pytest.raises(PermanentStageError, match=message) as exc:
        feedback.plan(ctx_for(tmp_path, history, 1, config), [], keywords_of=lambda c: [])
    assert "feedback" in exc.value.hint


@pytest.mark.django_db
def test_feedback_can_be_switched_off(tmp_path, history):
    plan = feedback.plan(ctx_for(tmp_path, history, 1, {"enabled": False}), [], keywords_of=lambda c: [])
    assert plan.active is False and plan.chosen == {} and "switched off" in plan.reason


@pytest.mark.django_db
def test_listed_lengths_are_compared_too(tmp_path, history):
    theme = Theme.objects.create(name="Lengths", slug="lengths-feedback")
    for i in range(6):
        video(theme, 6000 + i, length=45)
        video(theme, 150 + i, length=30)
    chosen = Counter(
        feedback.plan(
            ctx_for(tmp_path, theme, job_id, {"options": {"length": [30, 45, 60]}}), [], keywords_of=lambda c: []
        ).chosen["length"]
        for job_id in range(100)
    )
    assert chosen[45] > chosen[30] and chosen[60] > 0


def test_script_generation_follows_the_chosen_hook_and_length(tmp_path):
    topic = {
        "trend_id": 3,
        "title": "Nordlys unveils the Fjord-2B model",
        "summary": "It runs on a Pi.",
        "angle": "breaking",
    }
    for hook in ("subject", "plain"):
        ctx = make_context(
            tmp_path / hook,
            "script_generation",
            upstream={"trend_analysis": {"topic": topic, "patterns": {"chosen": {"hook": hook, "length": 45}}}},
        )
        out = script_generation.run(ctx).output
        assert out["patterns"] == {"hook": hook, "length": 45} and out["target_seconds"] == 45
        assert ("Fjord-2B" in out["hook"] or "Nordlys" in out["hook"]) is (hook == "subject")
    # without a choice the writer keeps its own odds and still says which pool it used
    out = script_generation.run(
        make_context(tmp_path / "free", "script_generation", upstream={"trend_analysis": {"topic": topic}})
    ).output
    assert out["patterns"]["hook"] in ("subject", "plain") and out["patterns"]["length"] == 30


@pytest.mark.django_db
def test_each_publication_records_what_its_video_was_made_with(tmp_path, job, composed):
    ctx = publish_ctx(tmp_path, job, composed, {"destinations": ["outbox"]})
    ctx.upstream["script_generation"]["patterns"] = {"hook": "plain", "length": 45}
    ctx.upstream["script_generation"]["target_seconds"] = 45
    ctx.upstream["trend_analysis"]["topic"]["keywords"] = ["AI", "raspberry pi", "fjord"]
    ctx.upstream["trend_analysis"]["patterns"] = {"chosen": {"caption_style": "summary"}}
    ctx.upstream["voiceover"] = {"voice": "en_US-joe-medium"}
    publish.run(ctx)
    assert Publication.objects.get(job=job, destination="outbox").meta["patterns"] == {
        "hook": "plain",
        "length": 45,
        "caption_style": "summary",
        "voice": "en_US-joe-medium",
        "keywords": ["ai", "raspberry pi", "fjord"],
    }
