"""trend_analysis: scoring, near-duplicate merging, topic reuse and determinism."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.models import Job, StageRun, Theme, Trend
from stages import trend_analysis, trend_collection
from stages.base import PermanentStageError
from stages.demo import DEMO_THEME
from stages.tests.helpers import make_context
from stages.trend_analysis import similar, title_tokens

NEWEST = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
_ids = itertools.count(1)


def trend(
    source: str, title: str, *, hours_ago: float = 0, engagement: int = 0, url: str = "", summary: str = ""
) -> Trend:
    n = next(_ids)
    return Trend.objects.create(
        source=source,
        external_id=f"{source}-{n}",
        title=title,
        url=url or f"https://{source}.example/story-{n}",
        summary=summary,
        published=NEWEST - timedelta(hours=hours_ago),
        engagement=engagement,
    )


def analyse(
    tmp_path: Path, trends: list[Trend], *, theme: dict | None = None, params: dict | None = None, job_id: int = 1
):
    ctx = make_context(
        tmp_path,
        "trend_analysis",
        theme=theme,
        params=params,
        upstream={"trend_collection": {"trend_ids": [t.id for t in trends], "count": len(trends), "sources": []}},
    )
    ctx.job_id = job_id
    return trend_analysis.run(ctx).output


@pytest.mark.django_db
def test_it_picks_the_same_demo_topic_every_time(tmp_path, settings):
    settings.VAR_DIR = tmp_path / "var"
    collected = trend_collection.run(make_context(tmp_path, "trend_collection", theme=DEMO_THEME)).output
    upstream = {"trend_collection": collected}

    first = trend_analysis.run(
        make_context(tmp_path / "a", "trend_analysis", theme=DEMO_THEME, upstream=upstream)
    ).output
    second = trend_analysis.run(
        make_context(tmp_path / "b", "trend_analysis", theme=DEMO_THEME, upstream=upstream)
    ).output

    assert first == second
    topic = first["topic"]
    assert "Raspberry Pi" in topic["title"] and "open-source AI model" in topic["title"]
    assert {r["source"] for r in topic["related"]} | {topic["source"]} == {
        "thecircuit",
        "planet-devtools",
        "reddit-technology",
        "hn-frontpage",
    }
    assert topic["keywords"][:2] == ["ai", "open source"]
    assert topic["hashtags"][:2] == ["#AI", "#OpenSource"]
    assert topic["hashtags"][-1] == "#TechPulse"
    assert all(h.startswith("#") and " " not in h for h in topic["hashtags"])
    assert topic["angle"] == "breaking"
    assert topic["summary"].startswith("The Oslo-based lab")
    assert first["reference_time"] == "2026-11-28T17:02:44+00:00"  # the newest item, not the wall clock

    candidates = first["candidates"]
    assert len(candidates) == 5
    assert candidates[0]["trend_id"] == topic["trend_id"]
    assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)
    assert candidates[0]["components"]["sources"] == 4
    assert set(candidates[0]["components"]) == {"recency", "engagement", "keywords", "sources"}
    assert (tmp_path / "a" / "trend_analysis" / "attempt-1.partial" / "analysis.json").exists()


@pytest.mark.django_db
def test_it_is_deterministic_for_equal_scores(tmp_path):
    twins = [
        trend(f"feed-{i}", title, engagement=5)
        for i, title in enumerate(["Solar kiosk charges phones", "Tidal clock keeps time"])
    ]
    outputs = {analyse(tmp_path / str(n), twins)["topic"]["trend_id"] for n in range(3)}
    assert outputs == {twins[0].id}  # equal scores: collection order decides, every time


def test_it_recognises_near_duplicate_titles():
    def same(a: str, b: str) -> bool:
        return similar(title_tokens(a), title_tokens(b))

    assert same(
        "Tessera unveils a 3nm RISC-V laptop chip",
        "Tessera Semiconductor unveils 3 nm RISC-V laptop chip with 20-hour battery claim",
    )
    assert same(
        "Major CDN outage knocks thousands of websites offline for 90 minutes",
        "CDN outage takes thousands of websites offline",
    )
    assert same(
        "Café owners in Lyon cut food waste by 30% with an AI forecasting tool",
        "Lyon cafés are using AI to cut food waste by 30 %",
    )
    assert not same("Laptop makers rush to RISC-V", "Tessera unveils a 3nm RISC-V laptop chip")
    assert not same(
        "Smartphone shipments grow for the fourth straight quarter",
        "Smartphone shipments up again as mid-range phones get cheaper",
    )


@pytest.mark.django_db
def test_it_merges_near_duplicates_across_sources(tmp_path):
    stories = [
        trend("hn", "Tessera unveils a 3nm RISC-V laptop chip", hours_ago=2, engagement=498),
        trend(
            "circuit",
            "Tessera Semiconductor unveils 3 nm RISC-V laptop chip with 20-hour battery claim",
            hours_ago=3,
            engagement=96,
            summary="Eight RISC-V cores and a neural engine.",
        ),
        trend(
            "reddit",
            "Tessera's 3 nm RISC-V laptop chip promises 20 hours of battery life",
            hours_ago=1,
            engagement=6962,
        ),
        trend("circuit", "Laptop makers rush to RISC-V", hours_ago=0, engagement=10),
        trend("reddit", "Smart ring tracks sleep and stress", hours_ago=0, engagement=40),
    ]
    out = analyse(tmp_path, stories, theme={"keywords": ["chip"]})
    topic = out["topic"]
    assert sorted(topic["trend_ids"]) == sorted(s.id for s in stories[:3])
    assert {r["title"] for r in topic["related"]} | {topic["title"]} == {s.title for s in stories[:3]}
    assert len(topic["related"]) == 2
    assert topic["summary"] == "Eight RISC-V cores and a neural engine."  # the lead had none: a member's summary
    assert out["candidates"][0]["components"]["sources"] == 3
    assert len(out["candidates"]) == 3  # five stories, three candidates


@pytest.mark.django_db
def test_it_merges_stories_that_link_the_same_page(tmp_path):
    a = trend(
        "hn",
        "Show HN: Zero-dependency SQLite replication",
        url="https://tinylog.example/sqlite-replication/",
        engagement=377,
    )
    b = trend(
        "blogs",
        "Replicating SQLite, the hard way",
        url="https://www.tinylog.example/sqlite-replication?utm_source=rss",
        engagement=19,
    )
    out = analyse(tmp_path, [a, b])
    assert sorted(out["topic"]["trend_ids"]) == sorted([a.id, b.id])


@pytest.mark.django_db
def test_it_scores_theme_keywords_on_word_boundaries(tmp_path):
    theme = {"keywords": ["ai", "open source", "robot"]}
    plain = trend("wire", "Painters said the detailing looks plain and brainy", engagement=50)
    hits = trend("blog", "Open-source robots learn to paint with AI", engagement=50)
    summary_only = trend(
        "news", "Gallery opens a new wing", engagement=50, summary="The curators used an AI model to hang the works."
    )
    out = analyse(tmp_path, [plain, hits, summary_only], theme=theme)
    by_id = {c["trend_id"]: c for c in out["candidates"]}
    assert by_id[plain.id]["components"]["keywords"] == 0.0  # "ai" inside "painters" does not count
    assert by_id[hits.id]["components"]["keywords"] == round(1 - 0.5**3, 4)
    assert by_id[summary_only.id]["components"]["keywords"] == round(1 - 0.5**0.5, 4)
    assert out["topic"]["trend_id"] == hits.id
    assert out["topic"]["keywords"][:3] == ["ai", "open source", "robot"]
    assert out["topic"]["hashtags"][:3] == ["#AI", "#OpenSource", "#Robot"]


@pytest.mark.django_db
def test_it_measures_recency_from_the_newest_item_or_params_now(tmp_path):
    fresh = trend("wire", "Heat pump sales overtake gas boilers", hours_ago=0)
    day_old = trend("desk", "Drone delivers defibrillator in four minutes", hours_ago=24)
    out = analyse(tmp_path, [fresh, day_old])
    by_id = {c["trend_id"]: c for c in out["candidates"]}
    assert by_id[fresh.id]["components"]["recency"] == 1.0
    assert by_id[day_old.id]["components"]["recency"] == 0.5  # one half-life (24 h)
    assert out["reference_time"] == NEWEST.isoformat()

    later = analyse(tmp_path / "later", [fresh, day_old], params={"now": (NEWEST + timedelta(hours=24)).isoformat()})
    by_id = {c["trend_id"]: c for c in later["candidates"]}
    assert by_id[fresh.id]["components"]["recency"] == 0.5
    assert by_id[day_old.id]["components"]["recency"] == 0.25


@pytest.mark.django_db
def test_it_normalises_engagement_within_each_source(tmp_path):
    reddit_top = trend("reddit", "Robot bartender pours a perfect pint", engagement=20000)
    reddit_low = trend("reddit", "Printer ink prices fall again", engagement=200)
    hn_top = trend("hn", "A tiny Lisp in 1 KB of assembly", engagement=500)
    hn_low = trend("hn", "Plain text is all you need", engagement=5)
    out = analyse(tmp_path, [reddit_top, reddit_low, hn_top, hn_low])
    by_id = {c["trend_id"]: c["components"]["engagement"] for c in out["candidates"]}
    assert by_id[reddit_top.id] == by_id[hn_top.id] == 1.0


def make_job(theme: Theme, status: str, topic: dict | None) -> Job:
    job = Job.objects.create(theme=theme, status=status)
    if topic is not None:
        StageRun.objects.create(
            job=job,
            stage="trend_analysis",
            attempt=1,
            status=StageRun.Status.SUCCEEDED,
            output={"topic": topic, "candidates": []},
        )
    return job


@pytest.mark.django_db
def test_it_skips_topics_used_by_recent_jobs_of_the_theme(tmp_path):
    theme = Theme.objects.create(name="Tech pulse", slug="tech-pulse-skip", keywords=["ai"])
    other_theme = Theme.objects.create(name="Other", slug="other-skip")
    best = trend("wire", "AI model runs on a Raspberry Pi", engagement=900)
    repost = trend("forum", "Tiny open-source AI model runs on a Raspberry Pi 5 board", hours_ago=30, engagement=1)
    second = trend("wire", "AI forecasting cuts café food waste", hours_ago=2, engagement=300)
    third = trend("wire", "Heat pumps outsell gas boilers", hours_ago=3, engagement=100)

    done = make_job(theme, Job.Status.COMPLETED, {"trend_id": best.id, "title": best.title, "related": []})
    make_job(theme, Job.Status.FAILED, {"trend_id": second.id, "title": second.title, "related": []})  # never published
    make_job(other_theme, Job.Status.COMPLETED, {"trend_id": second.id, "title": second.title})  # another theme
    current = make_job(
        theme, Job.Status.RUNNING, {"trend_id": second.id, "title": second.title}
    )  # this job's earlier run

    theme_input = theme.as_input()
    out = analyse(tmp_path, [best, repost, second, third], theme=theme_input, job_id=current.id)
    assert out["topic"]["trend_id"] == second.id
    assert out["skipped"] == [{"trend_id": best.id, "title": best.title, "reason": f"used by job {done.id}"}]

    # Collected without the original, the repost is a story of its own: its title gives it away.
    newer = make_job(theme, Job.Status.COMPLETED, {"trend_id": second.id, "title": second.title, "related": []})
    out = analyse(tmp_path / "again", [repost, second, third], theme=theme_input, job_id=current.id)
    assert out["topic"]["trend_id"] == third.id
    assert {s["trend_id"]: s["reason"] for s in out["skipped"]} == {
        second.id: f"used by job {newer.id}",
        repost.id: f"similar to the topic of job {done.id}",
    }


@pytest.mark.django_db
def test_it_fails_with_a_hint_when_every_topic_was_used(tmp_path):
    theme = Theme.objects.create(name="Tech pulse", slug="tech-pulse-used")
    only = trend("wire", "Quantum sensor finds water pipes leaks")
    make_job(theme, Job.Status.COMPLETED, {"trend_id": only.id, "title": only.title, "related": []})
    current = make_job(theme, Job.Status.RUNNING, None)
    with pytest.raises(PermanentStageError) as exc:
        analyse(tmp_path, [only], theme=theme.as_input(), job_id=current.id)
    assert "all 1 candidate stories were used" in exc.value.message
    assert "add sources" in exc.value.hint


@pytest.mark.django_db
def test_it_fails_with_a_hint_when_nothing_was_collected(tmp_path):
    with pytest.raises(PermanentStageError) as exc:
        analyse(tmp_path, [])
    assert "no stories" in exc.value.message and "add sources" in exc.value.hint


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("How to cut your Rust build time in half", "how-to"),
        ("Should AI pull requests be banned? Maintainers are split", "debate"),
        ("Chipmaker unveils a 3 nm laptop processor", "breaking"),
        ("Why the leap second broke our scheduler", "explainer"),
        ("A quiet afternoon with a soldering iron", "explainer"),
    ],
)
def test_it_reads_the_angle_from_title_cues(tmp_path, title, expected):
    assert analyse(tmp_path, [trend("wire", title)])["topic"]["angle"] == expected


@pytest.mark.django_db
def test_it_lets_a_theme_tune_the_weights(tmp_path):
    popular = trend("wire", "Robot bartender pours a perfect pint", hours_ago=20, engagement=9000)
    fresh = trend("wire", "Heat pumps outsell gas boilers", hours_ago=0, engagement=3)
    assert analyse(tmp_path, [popular, fresh])["topic"]["trend_id"] == popular.id
    only_recency = {"trend_analysis": {"weights": {"engagement": 0, "keywords": 0, "sources": 0}}}
    assert analyse(tmp_path / "w", [popular, fresh], theme={"settings": only_recency})["topic"]["trend_id"] == fresh.id
    with pytest.raises(PermanentStageError, match="weight recency='high'"):
        analyse(tmp_path / "bad", [popular], theme={"settings": {"trend_analysis": {"weights": {"recency": "high"}}}})


@pytest.mark.django_db
def test_it_gives_each_job_of_a_batch_its_own_rank(tmp_path):
    theme = Theme.objects.create(name="Tech pulse", slug="tech-pulse-batch")
    stories = [
        trend("wire", "Robot bartender pours a perfect pint", engagement=900),
        trend("wire", "Heat pumps outsell gas boilers", engagement=300),
        trend("wire", "Drone delivers defibrillator in four minutes", engagement=100),
        trend("wire", "Solar kiosk charges phones in Nairobi", engagement=10),
    ]
    old = make_job(theme, Job.Status.COMPLETED, {"trend_id": stories[1].id, "title": stories[1].title, "related": []})
    batch = {"batch": "20261129-abcd", "batch_size": 3}
    jobs = [Job.objects.create(theme=theme, params={**batch, "topic_rank": i}) for i in range(3)]

    # The first sibling finishes analysis before the others start: it must not shift their ranks.
    StageRun.objects.create(
        job=jobs[0],
        stage="trend_analysis",
        attempt=1,
        status=StageRun.Status.SUCCEEDED,
        output={"topic": {"trend_id": stories[0].id, "title": stories[0].title}},
    )
    picks = [
        analyse(tmp_path / str(i), stories, theme=theme.as_input(), params=job.params, job_id=job.pk)
        for i, job in enumerate(jobs)
    ]
    assert [p["topic"]["trend_id"] for p in picks] == [stories[0].id, stories[2].id, stories[3].id]
    assert [p["rank"] for p in picks] == [0, 1, 2]
    assert picks[1]["skipped"] == [
        {"trend_id": stories[1].id, "title": stories[1].title, "reason": f"used by job {old.pk}"}
    ]

    with pytest.raises(PermanentStageError, match="no topic for rank 4: only 3 new candidate stories") as exc:
        analyse(tmp_path / "4", stories, theme=theme.as_input(), params={**batch, "topic_rank": 3}, job_id=jobs[0].pk)
    assert "smaller batch" in exc.value.hint
    with pytest.raises(PermanentStageError, match="topic_rank='first'"):
        analyse(tmp_path / "5", stories, params={"topic_rank": "first"})


@pytest.mark.django_db
def test_it_keeps_hyphenated_words_together_in_keywords_and_hashtags(tmp_path):
    story = trend("blog", "A year of free-threaded Python in production", summary="The free-threaded build of Python.")
    topic = analyse(tmp_path, [story], theme={"keywords": ["python"], "name": "Tech pulse"})["topic"]
    assert topic["keywords"][:2] == ["python", "free-threaded"]
    assert topic["hashtags"][:2] == ["#Python", "#FreeThreaded"]


# -- dates that cannot be trusted ----------------------------------------------------------------
def fetched(title: str, *, published: datetime | None, seen: datetime, source: str = "wire", engagement: int = 50):
    n = next(_ids)
    return Trend.objects.create(
        source=source,
        external_id=f"{source}-{n}",
        title=title,
        url=f"https://{source}.example/story-{n}",
        published=published,
        engagement=engagement,
        first_seen=seen,
        last_seen=seen,
    )


@pytest.mark.django_db
def test_a_date_far_in_the_future_is_clamped_and_does_not_become_now(tmp_path):
    seen = NEWEST + timedelta(hours=2)  # fetched two hours after the newest real story
    stories = [
        fetched("Chip maker doubles output at its new plant", published=NEWEST, seen=seen),
        fetched("City opens a second tram line downtown", published=NEWEST - timedelta(hours=3), seen=seen),
        fetched("Mystery gadget promises to end all gadgets", published=datetime(9999, 12, 31, tzinfo=UTC), seen=seen),
    ]
    out = analyse(tmp_path, stories, theme={"keywords": []})
    assert datetime.fromisoformat(out["reference_time"]) == NEWEST  # the trusted newest date, not 9999
    by_title = {c["title"]: c for c in out["candidates"]}
    future = by_title["Mystery gadget promises to end all gadgets"]
    assert future["flags"] == ["future date clamped to the fetch time"]
    assert future["components"]["recency"] <= 0.5
    assert by_title["Chip maker doubles output at its new plant"]["components"]["recency"] == 1.0
    assert by_title["City opens a second tram line downtown"]["components"]["recency"] > 0.9  # not 0
    assert out["topic"]["title"] == "Chip maker doubles output at its new plant"


@pytest.mark.django_db
def test_a_date_a_little_ahead_is_a_clock_skew_not_a_lie(tmp_path):
    seen = NEWEST
    stories = [
        fetched("Skewed clock story about rockets", published=NEWEST + timedelta(minutes=20), seen=seen),
        fetched("Older story about trains", published=NEWEST - timedelta(hours=30), seen=seen),
    ]
    out = analyse(tmp_path, stories, theme={"keywords": []})
    first = out["candidates"][0]
    assert first["title"] == "Skewed clock story about rockets" and "flags" not in first


@pytest.mark.django_db
def test_undated_items_get_the_fetch_time_with_a_penalty_never_the_top_score(tmp_path):
    seen = NEWEST + timedelta(minutes=30)
    stories = [
        # The undated story is the most engaged one: with full recency it used to win.
        fetched("Undated story about a robot chef", published=None, seen=seen, engagement=500, source="blog"),
        fetched("Dated story about a battery record", published=NEWEST, seen=seen, engagement=400),
        fetched("Dated story about a bridge repair", published=NEWEST - timedelta(hours=6), seen=seen, engagement=10),
    ]
    out = analyse(tmp_path, stories, theme={"keywords": []})
    assert datetime.fromisoformat(out["reference_time"]) == NEWEST
    by_title = {c["title"]: c for c in out["candidates"]}
    undated = by_title["Undated story about a robot chef"]
    assert undated["flags"] == ["undated: fetch time used"]
    assert (
        undated["components"]["recency"]
        <= 0.5
        < by_title["Dated story about a battery record"]["components"]["recency"]
    )
    assert out["topic"]["title"] == "Dated story about a battery record"
    assert out["candidates"][0]["title"] != "Undated story about a robot chef"


@pytest.mark.django_db
def test_a_set_without_any_trusted_date_measures_from_the_fetch(tmp_path):
    seen = NEWEST
    stories = [
        fetched("Undated one about satellites", published=None, seen=seen),
        fetched("Future one about satellites and moons", published=NEWEST + timedelta(days=400), seen=seen),
    ]
    out = analyse(tmp_path, stories, theme={"keywords": []})
    assert datetime.fromisoformat(out["reference_time"]) == seen
    assert all(c["components"]["recency"] <= 0.5 for c in out["candidates"])
