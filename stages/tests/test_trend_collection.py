"""trend_collection: bundled feeds, upserts, partial failures, and HTTP against a local server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jobs.models import Trend
from stages import trend_collection
from stages.base import PermanentStageError, TransientStageError
from stages.demo import DEMO_THEME
from stages.feeds import FeedSource, parse_feed
from stages.tests.helpers import make_context

FEEDS = Path(trend_collection.__file__).resolve().parent / "assets" / "feeds"

RSS_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:slash="http://purl.org/rss/1.0/modules/slash/">
  <channel>
    <title>Gadget Wire</title>
    <link>https://gadgetwire.example/</link>
    <description>Gadget news</description>
    {items}
  </channel>
</rss>
"""


def rss_item(guid: str, title: str, comments: int, when: str = "Sat, 28 Nov 2026 10:00:00 +0000") -> str:
    return f"""<item>
      <title>{title}</title>
      <link>https://gadgetwire.example/{guid}</link>
      <guid isPermaLink="false">{guid}</guid>
      <pubDate>{when}</pubDate>
      <slash:comments>{comments}</slash:comments>
      <description>&lt;p&gt;Story {guid} in full.&lt;/p&gt;</description>
    </item>"""


def write_feed(path: Path, *items: str) -> Path:
    path.write_text(RSS_TEMPLATE.format(items="\n".join(items)), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _feed_cache(settings, tmp_path):
    """Validators (ETags) live under VAR_DIR: one per test, so tests never see each other's."""
    settings.VAR_DIR = tmp_path / "var"
    settings.TRENDREEL_SOURCE_DIRS = [tmp_path]  # the tests' own feed files


def collect(tmp_path: Path, sources: list[dict], **kwargs):
    log: list[tuple[float, str]] = []
    ctx = make_context(tmp_path, "trend_collection", theme={"sources": sources, **kwargs}, progress_log=log)
    return trend_collection.run(ctx), log, ctx


# -- a local HTTP server -----------------------------------------------------------------------
@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    handler: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]] | None = None


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(self.path.split("?", 1)[0], Route(status=404, body=b"not found"))
                if route.delay:
                    time.sleep(route.delay)
                status, headers, body = (route.status, route.headers, route.body)
                if route.handler is not None:
                    status, headers, body = route.handler(self)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    if status != 304:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if status != 304:
                        self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def requests_to(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.requests if p.split("?", 1)[0] == path]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def etag_route(body: bytes, etag: str = '"v1"', last_modified: str = "Sat, 28 Nov 2026 10:00:00 GMT") -> Route:
    def handle(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("If-None-Match") == etag:
            return 304, {"ETag": etag}, b""
        return (
            200,
            {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": etag, "Last-Modified": last_modified},
            body,
        )

    return Route(handler=handle)


# -- bundled feeds ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_it_collects_the_bundled_demo_feeds(tmp_path):
    result, log, ctx = collect(tmp_path, DEMO_THEME["sources"])
    out = result.output

    assert [s["name"] for s in out["sources"]] == ["thecircuit", "planet-devtools", "reddit-technology", "hn-frontpage"]
    assert [s["kind"] for s in out["sources"]] == ["rss", "atom", "reddit", "hn"]
    assert all(s["error"] is None and 8 <= s["items"] <= 15 and s["new"] == s["items"] for s in out["sources"])
    assert out["count"] == len(out["trend_ids"]) == Trend.objects.count() == sum(s["items"] for s in out["sources"])
    assert sorted(out["trend_ids"]) == sorted(Trend.objects.values_list("id", flat=True))

    reddit = Trend.objects.get(source="reddit-technology", external_id="t3_1p8kq2z")
    assert reddit.engagement == 18342 + 1204
    assert reddit.title.endswith("no cloud, no GPU 🚀")
    hn = Trend.objects.get(source="hn-frontpage", external_id="https://news.ycombinator.com/item?id=46120311")
    assert hn.engagement == 812 + 391
    assert hn.summary == ""  # hnrss boilerplate (Article URL, Points...) is not a summary
    assert hn.raw["points"] == 812
    rss = Trend.objects.get(source="thecircuit", external_id="thecircuit-84213")
    assert rss.engagement == 214 and rss.raw["author"] == "Maëlle Durand"
    assert rss.summary.startswith("The Oslo-based lab's Fjord-2B model")
    assert "<" not in rss.summary
    assert Trend.objects.filter(title="Café owners in Lyon cut food waste by 30% with an AI forecasting tool").exists()
    assert Trend.objects.filter(published__isnull=True).count() == 0

    assert any("reddit-technology" in message for _, message in log)
    assert log[-1][0] == 1.0
    listing = json.loads((ctx.work_dir / "collection.json").read_text(encoding="utf-8"))
    assert len(listing["stories"]) == out["count"]


@pytest.mark.django_db
def test_it_upserts_on_rerun_without_duplicates(tmp_path):
    feed = write_feed(
        tmp_path / "gadgets.xml",
        rss_item("g-1", "Foldable phone gets a 7-day battery", 10),
        rss_item("g-2", "Smart ring tracks sleep — and your stress", 4),
        rss_item("g-1", "Foldable phone gets a 7-day battery", 12),  # the feed repeats a guid
    )
    sources = [{"name": "gadgets", "path": str(feed)}]
    first, _, _ = collect(tmp_path, sources)
    assert first.output["sources"][0] | {"location": None} == {
        "name": "gadgets",
        "kind": "rss",
        "items": 3,
        "new": 2,
        "updated": 0,
        "skipped": 0,
        "skip_reasons": {},
        "error": None,
        "error_kind": None,
        "not_modified": False,
        "location": None,
        "notes": [],
    }
    assert Trend.objects.count() == 2
    before = Trend.objects.get(external_id="g-1")
    assert before.engagement == 12

    write_feed(
        feed,
        rss_item("g-1", "Foldable phone gets a 7-day battery, reviewers confirm", 95),
        rss_item("g-2", "Smart ring tracks sleep — and your stress", 4),
    )
    second, _, _ = collect(tmp_path, sources)
    assert Trend.objects.count() == 2
    assert second.output["sources"][0]["new"] == 0 and second.output["sources"][0]["updated"] == 2
    assert sorted(second.output["trend_ids"]) == sorted(first.output["trend_ids"])
    after = Trend.objects.get(external_id="g-1")
    assert after.pk == before.pk
    assert after.engagement == 95
    assert after.title == "Foldable phone gets a 7-day battery, reviewers confirm"
    assert after.first_seen == before.first_seen
    assert after.last_seen > before.last_seen


@pytest.mark.django_db
def test_it_keeps_non_ascii_and_emoji_titles_intact(tmp_path):
    feed = write_feed(
        tmp_path / "intl.xml",
        rss_item("i-1", "Zürich’s naïve café robot serves crème brûlée 🤖☕", 3),  # noqa: RUF001
        rss_item("i-2", "東京のスタートアップが新しいチップを発表", 1),
    )
    result, _, _ = collect(tmp_path, [{"name": "intl", "path": str(feed)}])
    titles = set(Trend.objects.filter(id__in=result.output["trend_ids"]).values_list("title", flat=True))
    assert titles == {"Zürich’s naïve café robot serves crème brûlée 🤖☕", "東京のスタートアップが新しいチップを発表"}  # noqa: RUF001


@pytest.mark.django_db
def test_it_fails_permanently_on_a_malformed_feed_naming_the_source(tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>Half a feed</ti', encoding="utf-8")
    with pytest.raises(PermanentStageError) as exc:
        collect(tmp_path, [{"name": "broken-wire", "path": str(bad)}])
    assert "broken-wire" in exc.value.message
    assert "not a readable feed" in exc.value.message
    assert Trend.objects.count() == 0


@pytest.mark.django_db
def test_it_accepts_an_empty_feed(tmp_path):
    feed = write_feed(tmp_path / "quiet.xml")
    result, log, _ = collect(tmp_path, [{"name": "quiet", "path": str(feed)}])
    assert result.output["count"] == 0
    assert result.output["trend_ids"] == []
    assert result.output["sources"][0]["items"] == 0 and result.output["sources"][0]["error"] is None
    assert any("quiet: 0 items" in message for _, message in log)


@pytest.mark.django_db
def test_it_records_a_failing_source_beside_a_good_one(tmp_path):
    good = write_feed(tmp_path / "good.xml", rss_item("ok-1", "Battery breakthrough doubles e-bike range", 7))
    result, _, _ = collect(
        tmp_path,
        [{"name": "missing", "path": "feeds/does-not-exist.xml"}, {"name": "good", "path": str(good)}],
    )
    missing, ok = result.output["sources"]
    assert "missing" in missing["error"] and "not found" in missing["error"]
    assert missing["items"] == 0
    assert ok["error"] is None and ok["items"] == 1
    assert result.output["count"] == 1


@pytest.mark.django_db
def test_it_fails_permanently_when_every_source_is_broken(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": {"children": [', encoding="utf-8")
    with pytest.raises(PermanentStageError) as exc:
        collect(tmp_path, [{"name": "r-bad", "path": str(bad)}, {"name": "gone", "path": str(tmp_path / "gone.xml")}])
    assert "all 2 sources failed" in exc.value.message
    assert "r-bad" in exc.value.message and "not valid JSON" in exc.value.message
    assert "gone" in exc.value.message


@pytest.mark.django_db
def test_it_rejects_bad_source_configuration(tmp_path):
    with pytest.raises(PermanentStageError, match="has no sources"):
        collect(tmp_path, [])
    with pytest.raises(PermanentStageError, match=r"hn.*exactly one of 'url' or 'path'"):
        collect(tmp_path, [{"name": "hn"}])
    with pytest.raises(PermanentStageError, match="unsupported scheme 'ftp'"):
        collect(tmp_path, [{"name": "old", "url": "ftp://example.org/feed.xml"}])
    with pytest.raises(PermanentStageError, match="used twice"):
        collect(tmp_path, [{"name": "x", "path": "feeds/technews.xml"}, {"name": "x", "path": "feeds/devblogs.atom"}])


# -- parsing formats the demo does not bundle --------------------------------------------------
def test_it_reads_hacker_news_firebase_and_algolia_json():
    source = FeedSource(name="hn-api", kind=None, url="https://hacker-news.firebaseio.com/v0/items", location="hn-api")
    items = [
        {
            "by": "pg",
            "descendants": 71,
            "id": 8863,
            "score": 111,
            "time": 1175714200,
            "title": "My YC app: Dropbox",
            "type": "story",
            "url": "http://www.getdropbox.com/u/2/screencast.html",
        },
        {"by": "someone", "id": 8864, "parent": 8863, "text": "a comment", "time": 1175714300, "type": "comment"},
        {
            "by": "asker",
            "descendants": 12,
            "id": 121003,
            "score": 25,
            "text": "<p>What&#x27;s your stack?</p>",
            "time": 1203647620,
            "title": "Ask HN: What's your stack?",
            "type": "story",
        },
        {"deleted": True, "id": 9000, "type": "story"},
    ]
    read = parse_feed(source, json.dumps(items).encode())
    assert read.kind == "hn"
    assert [i.external_id for i in read.items] == [
        "https://news.ycombinator.com/item?id=8863",
        "https://news.ycombinator.com/item?id=121003",
    ]
    assert read.items[0].engagement == 111 + 71
    assert read.items[1].url == "https://news.ycombinator.com/item?id=121003"
    assert read.items[1].summary == "What's your stack?"
    assert read.items[0].published.year == 2007

    algolia = {
        "hits": [
            {
                "objectID": "42",
                "title": "Show HN: A café POS in 300 lines",
                "url": "https://example.org/pos",
                "points": 88,
                "num_comments": 9,
                "created_at_i": 1795860000,
            }
        ]
    }
    read = parse_feed(source, json.dumps(algolia).encode())
    assert read.items[0].engagement == 97 and read.items[0].title == "Show HN: A café POS in 300 lines"


def test_it_reads_a_reddit_atom_listing():
    atom = """<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">
    <category term="programming" label="r/programming"/><updated>2026-11-28T18:01:11+00:00</updated>
    <icon>https://www.redditstatic.com/icon.png/</icon><id>/r/programming.rss</id>
    <link rel="self" href="https://www.reddit.com/r/programming.rss" type="application/atom+xml" />
    <link rel="alternate" href="https://www.reddit.com/r/programming" type="text/html" />
    <subtitle>Computer Programming</subtitle><title>programming</title>
    <entry><author><name>/u/ferris_fan</name><uri>https://www.reddit.com/user/ferris_fan</uri></author>
    <category term="programming" label="r/programming"/>
    <content type="html">&lt;table&gt;&lt;tr&gt;&lt;td&gt; submitted by &lt;a href=&quot;https://www.reddit.com/user/ferris_fan&quot;&gt; /u/ferris_fan &lt;/a&gt; &lt;br/&gt; &lt;span&gt;&lt;a href=&quot;https://ferrous-notes.example/slow-rust-builds/&quot;&gt;[link]&lt;/a&gt;&lt;/span&gt;&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;</content>
    <id>t3_1p7q2aa</id><link href="https://www.reddit.com/r/programming/comments/1p7q2aa/why_your_rust_build_is_slow/" />
    <updated>2026-11-27T11:02:00+00:00</updated><published>2026-11-27T11:02:00+00:00</published>
    <title>Why your Rust build is slow, and how to fix it</title></entry></feed>"""
    source = FeedSource(name="r-programming", kind=None, url="https://www.reddit.com/r/programming.rss", location="x")
    read = parse_feed(source, atom.encode())
    assert read.kind == "reddit"
    assert read.items[0].external_id == "t3_1p7q2aa"
    assert read.items[0].title == "Why your Rust build is slow, and how to fix it"
    assert read.items[0].engagement == 0


def test_it_rejects_json_that_is_no_listing():
    source = FeedSource(
        name="ids-only", kind="hn", url="https://hacker-news.firebaseio.com/v0/topstories.json", location="x"
    )
    with pytest.raises(PermanentStageError, match=r"ids-only.*only item ids"):
        parse_feed(source, b"[46120311, 46121507]")
    with pytest.raises(PermanentStageError, match=r"ids-only.*neither a Reddit listing"):
        parse_feed(source, b'{"status": "ok"}')


# -- HTTP ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_it_fetches_over_http_and_sends_validators_back(tmp_path, server):
    body = (FEEDS / "technews.xml").read_bytes()
    server.routes["/feed.xml"] = etag_route(body)
    sources = [{"name": "circuit-http", "url": server.url("/feed.xml")}]

    first, _, _ = collect(tmp_path, sources)
    report = first.output["sources"][0]
    assert report["kind"] == "rss" and report["items"] == 10 and report["new"] == 10 and not report["not_modified"]
    assert "if-none-match" not in server.requests_to("/feed.xml")[0]
    assert "trendreel" in server.requests_to("/feed.xml")[0]["user-agent"].lower()

    second, _, _ = collect(tmp_path, sources)
    headers = server.requests_to("/feed.xml")[1]
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == "Sat, 28 Nov 2026 10:00:00 GMT"
    report = second.output["sources"][0]
    assert report["not_modified"] is True
    assert (report["items"], report["new"], report["updated"], report["error"]) == (0, 0, 0, None)
    # Not modified still hands analysis the stories the feed holds.
    assert second.output["trend_ids"] == first.output["trend_ids"]
    assert Trend.objects.count() == 10


@pytest.mark.django_db
def test_it_reads_in_full_when_a_304_names_rows_the_database_lacks(tmp_path, server):
    server.routes["/feed.xml"] = etag_route((FEEDS / "hn-frontpage.xml").read_bytes())
    sources = [{"name": "hn-http", "url": server.url("/feed.xml")}]
    collect(tmp_path, sources)
    Trend.objects.all().delete()  # a fresh database, an old cache file

    result, _, _ = collect(tmp_path, sources)
    conditional, unconditional = server.requests_to("/feed.xml")[1:]
    assert conditional["if-none-match"] == '"v1"'
    assert "if-none-match" not in unconditional
    assert result.output["sources"][0]["new"] == 12 and result.output["sources"][0]["kind"] == "hn"
    assert Trend.objects.count() == 12


@pytest.mark.django_db
def test_it_reads_reddit_listing_json_over_http(tmp_path, server):
    server.routes["/r/technology/hot.json"] = Route(
        body=(FEEDS / "reddit-technology.json").read_bytes(),
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    result, _, _ = collect(tmp_path, [{"name": "reddit", "url": server.url("/r/technology/hot.json")}])
    assert result.output["sources"][0]["kind"] == "reddit"
    assert result.output["count"] == 11


@pytest.mark.django_db
def test_it_treats_http_500_as_transient(tmp_path, server):
    server.routes["/feed.xml"] = Route(status=503, body=b"upstream down", headers={"Retry-After": "30"})
    with pytest.raises(TransientStageError) as exc:
        collect(tmp_path, [{"name": "flaky", "url": server.url("/feed.xml")}])
    assert "flaky" in exc.value.message and "HTTP 503" in exc.value.message
    assert exc.value.retry_after == 30.0


@pytest.mark.django_db
def test_it_treats_http_404_as_permanent(tmp_path, server):
    with pytest.raises(PermanentStageError) as exc:
        collect(tmp_path, [{"name": "moved", "url": server.url("/old-feed.xml")}])
    assert "moved" in exc.value.message and "HTTP 404" in exc.value.message


@pytest.mark.django_db
def test_it_treats_a_timeout_as_transient(tmp_path, server):
    server.routes["/slow.xml"] = Route(body=b"<rss/>", delay=1.5)
    started = time.monotonic()
    with pytest.raises(TransientStageError) as exc:
        collect(
            tmp_path,
            [{"name": "sloth", "url": server.url("/slow.xml")}],
            settings={"trend_collection": {"timeout": 0.3}},
        )
    assert time.monotonic() - started < 1.4
    assert "sloth" in exc.value.message and "timed out" in exc.value.message


@pytest.mark.django_db
def test_it_treats_a_refused_connection_as_transient(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientStageError, match="nobody-home: cannot reach"):
        collect(tmp_path, [{"name": "nobody-home", "url": f"http://127.0.0.1:{port}/feed.xml"}])


@pytest.mark.django_db
def test_it_is_transient_when_any_failure_was_transient(tmp_path, server):
    server.routes["/feed.xml"] = Route(status=500, body=b"boom")
    with pytest.raises(TransientStageError) as exc:
        collect(
            tmp_path,
            [{"name": "down", "url": server.url("/feed.xml")}, {"name": "typo", "path": "feeds/tech-news.xml"}],
        )
    assert "down" in exc.value.message and "typo" in exc.value.message


@pytest.mark.django_db
def test_it_serves_a_good_http_source_beside_a_failing_one(tmp_path, server):
    server.routes["/good.atom"] = Route(
        body=(FEEDS / "devblogs.atom").read_bytes(), headers={"Content-Type": "application/atom+xml"}
    )
    server.routes["/bad.xml"] = Route(status=502, body=b"bad gateway")
    result, _, _ = collect(
        tmp_path,
        [{"name": "bad", "url": server.url("/bad.xml")}, {"name": "blogs", "url": server.url("/good.atom")}],
    )
    bad, blogs = result.output["sources"]
    assert "HTTP 502" in bad["error"]
    assert blogs["kind"] == "atom" and blogs["items"] == 9
    assert result.output["count"] == 9


@pytest.mark.django_db
def test_it_never_reads_a_local_file_named_by_a_feed_body(tmp_path, server):
    # feedparser opens a bytes argument as a file name when it can; a body must stay a body.
    server.routes["/feed.xml"] = Route(body=str(FEEDS / "technews.xml").encode())
    with pytest.raises(PermanentStageError, match=r"sneaky: .* is not a readable feed"):
        collect(tmp_path, [{"name": "sneaky", "url": server.url("/feed.xml")}])
    assert Trend.objects.count() == 0


@pytest.mark.django_db
def test_it_creates_and_restores_the_demo_theme():
    from jobs.models import Theme
    from stages.demo import ensure_demo_theme

    theme = ensure_demo_theme()
    theme.full_clean()
    Theme.objects.filter(pk=theme.pk).update(keywords=["edited"], sources=[])
    again = ensure_demo_theme()
    assert again.pk == theme.pk and Theme.objects.filter(slug="demo").count() == 1
    assert again.keywords == DEMO_THEME["keywords"] and again.sources == DEMO_THEME["sources"]
    assert again.target_seconds == 30 and again.name == "Tech pulse"
    assert all((FEEDS.parent / s["path"]).is_file() for s in again.sources)


@pytest.mark.django_db
def test_it_keeps_credentials_out_of_messages_and_outputs(tmp_path, server):
    server.routes["/private.xml"] = Route(status=403, body=b"forbidden")
    secret_url = server.url("/private.xml?token=s3cr3t-t0ken&lang=en").replace("http://", "http://reader:hunter2@")
    with pytest.raises(PermanentStageError) as exc:
        collect(tmp_path, [{"name": "private", "url": secret_url}])
    assert "HTTP 403" in exc.value.message and "lang=en" in exc.value.message
    assert "s3cr3t" not in exc.value.message and "hunter2" not in exc.value.message
    sent = server.requests_to("/private.xml")[0]
    assert sent["authorization"] == "Basic cmVhZGVyOmh1bnRlcjI="  # reader:hunter2, as a header

    server.routes["/ok.xml"] = etag_route((FEEDS / "technews.xml").read_bytes())
    ok_url = server.url("/ok.xml?api_key=s3cr3t-t0ken")
    result, _, _ = collect(tmp_path, [{"name": "ok", "url": ok_url}])
    assert "s3cr3t" not in json.dumps(result.output)
    cache_files = list((tmp_path / "var" / "feed-cache").iterdir())
    assert len(cache_files) == 1 and "s3cr3t" not in cache_files[0].read_text(encoding="utf-8")


class ExplodingReader:
    """A reader that fails in a way no parser foresaw for one source (a bug, say), else reads."""

    def __init__(self, inner, victim: str) -> None:
        self.inner, self.victim = inner, victim

    def read(self, source, *, conditional=True):
        if source.name == self.victim:
            raise KeyError("entries")
        return self.inner.read(source, conditional=conditional)


@pytest.mark.django_db
def test_an_unexpected_error_in_one_source_is_that_sources_error(tmp_path):
    from stages.feeds import FeedReader

    ctx = make_context(tmp_path, "trend_collection")
    sources = trend_collection.load_sources({"sources": DEMO_THEME["sources"][:2]})
    result = trend_collection.collect(ctx, sources, ExplodingReader(FeedReader(), "thecircuit"))
    circuit, devtools = result.output["sources"]
    assert circuit["error_kind"] == "unexpected" and "unexpected KeyError" in circuit["error"]
    assert devtools["error"] is None and devtools["items"] == 9
    assert result.output["failed_sources"] == 1

    with pytest.raises(PermanentStageError, match=r"all 1 sources failed - thecircuit: .*unexpected KeyError"):
        trend_collection.collect(ctx, sources[:1], ExplodingReader(FeedReader(), "thecircuit"))


@pytest.mark.django_db
def test_a_bad_source_entry_is_that_sources_error(tmp_path):
    result, _, _ = collect(
        tmp_path,
        [
            {"name": "typo", "url": "ftp://example.org/feed.xml"},
            {"name": "badkind", "path": "feeds/technews.xml", "kind": "podcast"},
            "just a string",
            {"name": "circuit", "path": "feeds/technews.xml"},
        ],
    )
    typo, badkind, string, circuit = result.output["sources"]
    assert "unsupported scheme 'ftp'" in typo["error"] and typo["error_kind"] == "permanent"
    assert "unknown kind 'podcast'" in badkind["error"]
    assert string["name"] == "#3" and "is not an object" in string["error"]
    assert circuit["items"] == 10 and result.output["failed_sources"] == 3
