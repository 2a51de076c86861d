"""trend_collection's API sources (reddit, hackernews, google_trends) against the local FakeServer."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from jobs.models import Trend
from stages import trend_collection
from stages.base import PermanentStageError, TransientStageError
from stages.feeds import FeedSource
from stages.providers.google_trends import parse_traffic
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context

FEEDS = Path(trend_collection.__file__).resolve().parent / "assets" / "feeds"
REDDIT_PATH = "/r/technology/hot.json"
HN_TOP = "/v0/topstories.json"
GT_PATH = "/trending/rss"

GOOGLE_TRENDS_RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss xmlns:atom="http://www.w3.org/2005/Atom" xmlns:ht="https://trends.google.com/trending/rss" version="2.0">
  <channel>
    <title>Daily Search Trends</title>
    <description>Recent searches</description>
    <link>https://trends.google.com/trending/rss?geo=US</link>
    <atom:link href="https://trends.google.com/trending/rss?geo=US" rel="self" type="application/rss+xml"/>
    <item>
      <title>nvidia earnings</title>
      <ht:approx_traffic>200,000+</ht:approx_traffic>
      <description></description>
      <link>https://trends.google.com/trending/rss?geo=US</link>
      <pubDate>Sat, 28 Nov 2026 09:40:00 -0800</pubDate>
      <ht:picture>https://encrypted-tbn0.gstatic.com/images?q=tbn:abc</ht:picture>
      <ht:picture_source>Reuters</ht:picture_source>
      <ht:news_item>
        <ht:news_item_title>Nvidia beats estimates as AI chip demand soars</ht:news_item_title>
        <ht:news_item_url>https://www.reuters.example/technology/nvidia-q3</ht:news_item_url>
        <ht:news_item_picture>https://encrypted-tbn0.gstatic.com/images?q=tbn:def</ht:news_item_picture>
        <ht:news_item_source>Reuters</ht:news_item_source>
      </ht:news_item>
      <ht:news_item>
        <ht:news_item_title>What Nvidia&apos;s results mean for the market</ht:news_item_title>
        <ht:news_item_url>https://www.cnbc.example/nvidia-results</ht:news_item_url>
        <ht:news_item_source>CNBC</ht:news_item_source>
      </ht:news_item>
    </item>
    <item>
      <title>raspberry pi 6</title>
      <ht:approx_traffic>20K+</ht:approx_traffic>
      <link>https://trends.google.com/trending/rss?geo=US</link>
      <pubDate>Sat, 28 Nov 2026 08:10:00 -0800</pubDate>
      <ht:news_item>
        <ht:news_item_title>Raspberry Pi 6 launches with an NPU</ht:news_item_title>
        <ht:news_item_url>https://www.theverge.example/raspberry-pi-6</ht:news_item_url>
        <ht:news_item_source>The Verge</ht:news_item_source>
      </ht:news_item>
    </item>
    <item>
      <title>café robot</title>
      <ht:approx_traffic>2,000+</ht:approx_traffic>
      <link>https://trends.google.com/trending/rss?geo=US</link>
    </item>
  </channel>
</rss>
""".encode()

HN_IDS = [46120311, 46121507, 46119988, 46118000, 46117777]
HN_ITEMS = {
    46120311: {
        "by": "ferris",
        "descendants": 391,
        "id": 46120311,
        "kids": [46120400],
        "score": 812,
        "time": 1795860000,
        "title": "Show HN: I built a 300-line café POS",
        "type": "story",
        "url": "https://example.org/pos",
    },
    46121507: {
        "by": "asker",
        "descendants": 45,
        "id": 46121507,
        "score": 120,
        "text": "<p>What&#x27;s your stack?</p>",
        "time": 1795861000,
        "title": "Ask HN: What's your stack in 2026?",
        "type": "story",
    },
    46119988: {
        "by": "chipfan",
        "descendants": 12,
        "id": 46119988,
        "score": 64,
        "time": 1795859000,
        "title": "RISC-V laptop ships with 64 GB",
        "type": "story",
        "url": "https://example.org/riscv",
    },
}


@pytest.fixture(autouse=True)
def _feed_cache(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.TRENDREEL_SOURCE_DIRS = [tmp_path]  # the tests' own feed files


def collect(tmp_path: Path, sources: list[dict], timeout: float | None = None):
    settings = {"trend_collection": {"timeout": timeout}} if timeout else {}
    ctx = make_context(tmp_path, "trend_collection", theme={"sources": sources, "settings": settings})
    return trend_collection.run(ctx)


def reddit_source(srv: FakeServer, **extra) -> dict:
    return {"name": "r-tech", "kind": "reddit", "subreddit": "technology", "base_url": srv.url(), **extra}


def hn_source(srv: FakeServer, limit: int = 3) -> dict:
    return {"name": "hn-api", "kind": "hackernews", "limit": limit, "base_url": srv.url("/v0")}


def gt_source(srv: FakeServer) -> dict:
    return {"name": "trends-us", "kind": "google_trends", "geo": "US", "url": srv.url(GT_PATH + "?geo=US")}


def serve_reddit(srv: FakeServer, first: list[Reply] | None = None) -> None:
    body = (FEEDS / "reddit-technology.json").read_bytes()
    ok = Reply(200, body=body, headers={"Content-Type": "application/json; charset=UTF-8"})
    srv.route("GET", REDDIT_PATH, [*(first or []), ok])


def serve_hn(srv: FakeServer, first: list[Reply] | None = None) -> None:
    srv.route("GET", HN_TOP, [*(first or []), Reply(200, json=HN_IDS)])
    for item_id, item in HN_ITEMS.items():
        srv.route("GET", f"/v0/item/{item_id}.json", Reply(200, json=item))


def serve_gt(srv: FakeServer, first: list[Reply] | None = None) -> None:
    ok = Reply(200, body=GOOGLE_TRENDS_RSS, headers={"Content-Type": "application/rss+xml; charset=UTF-8"})
    srv.route("GET", GT_PATH, [*(first or []), ok])


KINDS = {
    # kind: (source builder, server set-up, primary path, items expected)
    "reddit": (reddit_source, serve_reddit, REDDIT_PATH, 11),
    "hackernews": (hn_source, serve_hn, HN_TOP, 3),
    "google_trends": (gt_source, serve_gt, GT_PATH, 3),
}


def hits(srv: FakeServer, path: str) -> list:
    return [r for r in srv.requests if r.path == path]


# -- success, per kind -----------------------------------------------------------------------
@pytest.mark.django_db
def test_reddit_reads_the_listing_json_with_a_descriptive_user_agent(tmp_path):
    with FakeServer() as srv:
        serve_reddit(srv)
        result = collect(tmp_path, [reddit_source(srv, limit=10)])
    report = result.output["sources"][0]
    assert (report["kind"], report["items"], report["error"]) == ("reddit", 11, None)
    request = hits(srv, REDDIT_PATH)[0]
    assert parse_qs(request.query)["limit"] == ["10"]
    assert "trendreel" in request.headers["user-agent"].lower()
    row = Trend.objects.get(source="r-tech", external_id="t3_1p8kq2z")
    assert row.engagement == 18342 + 1204


@pytest.mark.django_db
def test_reddit_top_listing_asks_for_the_day(tmp_path):
    with FakeServer() as srv:
        body = (FEEDS / "reddit-technology.json").read_bytes()
        srv.route("GET", "/r/technology/top.json", Reply(200, body=body))
        collect(tmp_path, [reddit_source(srv, listing="top", user_agent="web:trendreel-test:1.0 (by /u/someone)")])
    request = hits(srv, "/r/technology/top.json")[0]
    assert parse_qs(request.query)["t"] == ["day"]
    assert request.headers["user-agent"] == "web:trendreel-test:1.0 (by /u/someone)"


@pytest.mark.django_db
def test_hackernews_reads_top_ids_then_items_as_one_source(tmp_path):
    with FakeServer() as srv:
        serve_hn(srv)
        result = collect(tmp_path, [hn_source(srv, limit=3)])
    out = result.output
    assert len(out["sources"]) == 1
    report = out["sources"][0]
    assert (report["kind"], report["items"], report["new"], report["error"]) == ("hackernews", 3, 3, None)
    assert len(hits(srv, HN_TOP)) == 1
    item_paths = sorted(r.path for r in srv.requests if r.path.startswith("/v0/item/"))
    assert item_paths == sorted(f"/v0/item/{i}.json" for i in HN_IDS[:3])  # the limit holds
    # Trend order follows the ranking, not the order the parallel reads finished in.
    titles = [Trend.objects.get(id=i).title for i in out["trend_ids"]]
    assert titles == [HN_ITEMS[i]["title"] for i in HN_IDS[:3]]
    pos = Trend.objects.get(external_id="https://news.ycombinator.com/item?id=46120311")
    assert pos.engagement == 812 + 391 and pos.raw["points"] == 812 and pos.url == "https://example.org/pos"


@pytest.mark.django_db
def test_hackernews_skips_a_missing_item_and_survives_one_failing(tmp_path):
    with FakeServer() as srv:
        serve_hn(srv)
        srv.route("GET", "/v0/item/46121507.json", Reply(200, body=b"null"))  # deleted: Firebase says null
        srv.route("GET", "/v0/item/46119988.json", Reply(404, json={"error": "gone"}))
        result = collect(tmp_path, [hn_source(srv, limit=3)])
    report = result.output["sources"][0]
    assert report["items"] == 1 and report["error"] is None


@pytest.mark.django_db
def test_google_trends_parses_traffic_and_news_items(tmp_path):
    with FakeServer() as srv:
        serve_gt(srv)
        result = collect(tmp_path, [gt_source(srv)])
    report = result.output["sources"][0]
    assert (report["kind"], report["items"], report["error"]) == ("google_trends", 3, None)
    rows = {t.title: t for t in Trend.objects.filter(source="trends-us")}
    nvidia = rows["nvidia earnings"]
    assert nvidia.engagement == 200_000
    assert nvidia.url == "https://www.reuters.example/technology/nvidia-q3"
    assert nvidia.summary.startswith("Nvidia beats estimates") and "What Nvidia's results" in nvidia.summary
    assert [n["source"] for n in nvidia.raw["news"]] == ["Reuters", "CNBC"]
    assert nvidia.raw["traffic"] == "200,000+" and nvidia.published.year == 2026
    assert rows["raspberry pi 6"].engagement == 20_000
    assert rows["café robot"].engagement == 2_000 and rows["café robot"].url.startswith("https://trends.google.com/")


def test_traffic_strings_become_numbers():
    assert parse_traffic("20,000+") == 20000
    assert parse_traffic("2K+") == 2000
    assert parse_traffic("1M+") == 1_000_000
    assert parse_traffic("500+") == 500
    assert parse_traffic("") == 0


def test_api_sources_build_their_urls_and_validate():
    reddit = FeedSource.from_config({"kind": "reddit", "subreddit": "r/technology", "listing": "top"}, 0)
    assert reddit.url.startswith("https://www.reddit.com/r/technology/top.json?") and reddit.name == "r-technology"
    hn = FeedSource.from_config({"kind": "hackernews"}, 0)
    assert hn.url == "https://hacker-news.firebaseio.com/v0/topstories.json" and hn.options["limit"] == 30
    gt = FeedSource.from_config({"kind": "google_trends", "geo": "de"}, 0)
    assert gt.url == "https://trends.google.com/trending/rss?geo=DE" and gt.name == "google-trends-de"
    with pytest.raises(PermanentStageError, match="subreddit"):
        FeedSource.from_config({"kind": "reddit", "subreddit": "no spaces please"}, 0)
    with pytest.raises(PermanentStageError, match="listing"):
        FeedSource.from_config({"kind": "reddit", "subreddit": "technology", "listing": "best-ever"}, 0)
    with pytest.raises(PermanentStageError, match="limit"):
        FeedSource.from_config({"kind": "hackernews", "limit": 0}, 0)
    with pytest.raises(PermanentStageError, match="geo"):
        FeedSource.from_config({"kind": "google_trends", "geo": "United States"}, 0)
    # The URL form of a reddit source still works as before.
    assert (
        FeedSource.from_config({"kind": "reddit", "url": "https://x.example/r.json"}, 0).url
        == "https://x.example/r.json"
    )


# -- failure matrix, every kind ------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_a_short_429_retry_after_is_waited_in_call(tmp_path, kind):
    make, serve, path, expected = KINDS[kind]
    with FakeServer() as srv:
        serve(srv, [Reply(429, json={"error": "slow down"}, headers={"Retry-After": "0.2"})])
        started = time.monotonic()
        result = collect(tmp_path, [make(srv)])
        assert time.monotonic() - started >= 0.2
    assert result.output["sources"][0]["items"] == expected
    assert len(hits(srv, path)) == 2


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_a_long_429_retry_after_goes_to_the_orchestrator(tmp_path, kind):
    make, serve, path, _ = KINDS[kind]
    with FakeServer() as srv:
        srv.route("GET", path, Reply(429, json={"error": "slow down"}, headers={"Retry-After": "120"}))
        with pytest.raises(TransientStageError) as exc:
            collect(tmp_path, [make(srv)])
    assert exc.value.retry_after == 120 and "HTTP 429" in exc.value.message
    assert len(hits(srv, path)) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_a_500_then_success(tmp_path, kind):
    make, serve, path, expected = KINDS[kind]
    with FakeServer() as srv:
        serve(srv, [Reply(500, body=b"oops")])
        result = collect(tmp_path, [make(srv)])
    report = result.output["sources"][0]
    assert report["error"] is None and report["items"] == expected
    assert len(hits(srv, path)) == 2


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_a_404_is_permanent_and_not_retried(tmp_path, kind):
    make, _, path, _ = KINDS[kind]
    with FakeServer() as srv:
        srv.route("GET", path, Reply(404, body=b"not found"))
        with pytest.raises(PermanentStageError) as exc:
            collect(tmp_path, [make(srv)])
    assert "HTTP 404" in exc.value.message and make(srv)["name"] in exc.value.message
    assert len(hits(srv, path)) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_a_timeout_is_transient(tmp_path, kind):
    make, serve, path, _ = KINDS[kind]
    with FakeServer() as srv:
        serve(srv, [Reply(200, json=[], delay=1.0)])
        started = time.monotonic()
        with pytest.raises(TransientStageError, match="timed out"):
            collect(tmp_path, [make(srv)], timeout=0.3)
        assert time.monotonic() - started < 0.9  # not retried in-call: the read already waited


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("reddit", b'{"data": {"children": [', "not valid JSON"),
        ("reddit", b'{"kind": "Listing"}', "neither a Reddit listing"),
        ("hackernews", b"[46120311, 4612", "not valid JSON"),
        ("hackernews", b'{"ids": [1, 2]}', "not a list of story ids"),
        ("google_trends", b"<rss><channel><item><title>half", "not a readable feed"),
        ("google_trends", b'{"trends": []}', "not a readable feed"),
    ],
)
def test_a_malformed_body_is_permanent(tmp_path, kind, body, message):
    make, _, path, _ = KINDS[kind]
    with FakeServer() as srv:
        srv.route("GET", path, Reply(200, body=body))
        with pytest.raises(PermanentStageError, match=message):
            collect(tmp_path, [make(srv)])
    assert Trend.objects.count() == 0


@pytest.mark.django_db
def test_hackernews_fails_when_every_item_fails(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", HN_TOP, Reply(200, json=HN_IDS[:2]))
        srv.route("GET", f"/v0/item/{HN_IDS[0]}.json", Reply(200, body=b"{broken"))
        srv.route("GET", f"/v0/item/{HN_IDS[1]}.json", Reply(200, body=b"{broken"))
        with pytest.raises(PermanentStageError, match=r"hn-api: item \d+ is not valid JSON"):
            collect(tmp_path, [hn_source(srv)])


@pytest.mark.django_db
def test_one_failing_source_beside_delivering_ones(tmp_path):
    with FakeServer() as srv:
        serve_gt(srv)
        serve_reddit(srv)
        srv.route("GET", HN_TOP, Reply(503, body=b"down", headers={"Retry-After": "60"}))
        result = collect(tmp_path, [hn_source(srv), gt_source(srv), reddit_source(srv)])
    hn, gt, reddit = result.output["sources"]
    assert hn["name"] == "hn-api" and hn["kind"] == "hackernews" and "HTTP 503" in hn["error"]
    assert gt["error"] is None and gt["items"] == 3
    assert reddit["error"] is None and reddit["items"] == 11
    assert result.output["count"] == 14
    listing = json.loads((tmp_path / "trend_collection" / "attempt-1.partial" / "collection.json").read_text())
    assert listing["sources"][0]["error"] == hn["error"]


# -- conditional requests ------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_conditional_request_round_trip(tmp_path, kind):
    make, serve, path, expected = KINDS[kind]
    with FakeServer() as srv:
        serve(srv)
        first_ok = srv.routes[("GET", path)][-1]
        first_ok.headers = {**first_ok.headers, "ETag": '"v7"', "Last-Modified": "Sat, 28 Nov 2026 10:00:00 GMT"}
        srv.routes[("GET", path)] = [first_ok, Reply(304, headers={"ETag": '"v7"'})]
        first = collect(tmp_path, [make(srv)])
        requests_after_first = len(srv.requests)
        second = collect(tmp_path, [make(srv)])
    conditional = hits(srv, path)[1]
    assert "if-none-match" not in hits(srv, path)[0].headers
    assert conditional.headers["if-none-match"] == '"v7"'
    assert conditional.headers["if-modified-since"] == "Sat, 28 Nov 2026 10:00:00 GMT"
    report = second.output["sources"][0]
    assert report["not_modified"] is True and report["error"] is None and report["kind"] == kind
    assert second.output["trend_ids"] == first.output["trend_ids"] and len(first.output["trend_ids"]) == expected
    assert len(srv.requests) == requests_after_first + 1  # a 304 on the id list: no item reads either
