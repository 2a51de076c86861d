"""The feed corpus through the real trend_collection stage, each file beside one good source.

``stages/tests/corpus/feeds`` holds real-world-style feeds of every format we read and hostile ones
(``corpus/build.py`` says how each was made). For every file: the stage never fails while the good
source delivers, the file's own outcome is the expected one (items, skipped items and why, or that
source's error), and no stored title carries a control or bidi character, a Python repr or entity
text. Files are served by a local HTTP server (so relative links resolve against a real URL);
a few are read as local ``path`` sources too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jobs.models import Trend
from stages import trend_collection
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context
from stages.text import has_invisible

CORPUS = Path(__file__).resolve().parent / "corpus" / "feeds"
GOOD = {"name": "good", "path": "feeds/technews.xml"}  # the bundled RSS: 10 stories
GOOD_ITEMS = 10


@dataclass
class Expect:
    items: int | None = None  # stored items of the corpus source (None: an error is expected)
    error: str = ""  # a piece of that source's error
    titles: list[str] = field(default_factory=list)  # titles that must be stored exactly
    urls: list[str] = field(default_factory=list)  # links that must be stored exactly
    skipped: dict[str, int] = field(default_factory=dict)
    note: str = ""  # a piece of one of the source's notes
    kind: str = ""
    engagement: dict[str, int] = field(default_factory=dict)  # title -> engagement


EXPECT: dict[str, Expect] = {
    # real-world formats
    "rss20_news.xml": Expect(5, kind="rss", engagement={"Solar farm on a lake powers a small town through winter": 12}),
    "rss091_netscape.xml": Expect(
        3,
        titles=[
            "Café de la gare: réouverture après travaux",
            "Météo: épisode neigeux à Lyon",
            "Grève des contrôleurs: trafic perturbé",
        ],
    ),
    "rss092_enclosures.xml": Expect(2),
    "rss10_rdf.xml": Expect(2, titles=["Comet makes its closest pass in 400 years"]),
    "atom10_xml_base.xml": Expect(
        2,
        kind="atom",
        titles=["Why we moved to SQLite"],
        urls=["https://blog.example/posts/sqlite", "https://other.example/dir/caching.html"],
    ),
    "atom03_legacy.xml": Expect(1),
    "jsonfeed_10.json": Expect(
        2, kind="jsonfeed", urls=["https://micro.example/2026/ferry"], note="JSON Feed 1"
    ),  # relative url, resolved against feed_url
    "jsonfeed_11.json": Expect(
        2,
        kind="jsonfeed",
        titles=["Database maintenance finished early. All services are back.", "Planned maintenance tonight"],
    ),
    "reddit_listing.json": Expect(
        2,
        kind="reddit",
        skipped={"not a post (t1)": 1, "not a post (more)": 1},
        engagement={"Volunteers map every tree in the city": 5120 + 301},
    ),
    "reddit_atom.xml": Expect(1, kind="reddit"),
    "hn_firebase_items.json": Expect(2, kind="hn", skipped={"not a story (comment)": 1, "deleted or dead": 2}),
    "hn_algolia.json": Expect(2, kind="hn", titles=["Rust 2.0 roadmap"]),
    "hnrss.xml": Expect(3, kind="hn", engagement={"Solar farm on a lake powers a small town through winter": 110}),
    "google_trends.xml": Expect(
        2, kind="google_trends", engagement={"snow day": 50_000, "cup final": 2_000_000}
    ),  # detected by its namespace, no kind declared
    "youtube_channel.atom": Expect(1, urls=["https://www.youtube.com/watch?v=abc123"]),
    "wordpress_content_encoded.xml": Expect(2),
    "podcast_itunes.xml": Expect(1),
    "stylesheet_pi.xml": Expect(2),
    "github_releases.atom": Expect(1, titles=["v3.0.0"]),
    "mastodon_untitled.xml": Expect(2, titles=["#cycling Snow tyres on, ready for winter."]),
    "cdata_html_titles.xml": Expect(2, titles=["Bold claims about batteries", "Tom & Jerry get a reboot"]),
    # encodings
    "koi8r_undeclared.xml": Expect(3, titles=["Центробанк сохранил ключевую ставку"], note="detected koi8-r"),
    "shiftjis_undeclared.xml": Expect(3, titles=["日銀が金融政策の現状維持を決定"], note="detected cp932"),
    "gb2312_undeclared.xml": Expect(3, titles=["央行宣布维持基准利率不变"], note="detected gb18030"),
    "cp1251_declared.xml": Expect(3, titles=["Учёные создали новый аккумулятор"]),
    "latin1_declared_utf8_bytes.xml": Expect(
        2, titles=["Café owners in Lyon cut food waste", "Zürich trams run all night"], note="bytes are UTF-8"
    ),
    "double_encoded_mojibake.xml": Expect(
        2, titles=["Café culture returns to the old town", "über-fast trains, finally"]
    ),
    "utf8_bom.xml": Expect(2, titles=["Byte order marks are invisible"]),
    "utf16le_bom.xml": Expect(2, titles=["Ünïcödé in sixteen bits"]),
    "jsonfeed_bom.json": Expect(1, titles=["A JSON Feed with a BOM"]),
    "cp1252_declared_utf8.xml": Expect(2, titles=["“Smart quotes” in a declared-UTF-8 feed", "Em—dashes everywhere"]),
    # hostile text
    "bidi_zero_width.xml": Expect(
        4,
        titles=[
            "Safe title exe.fdp with an override",
            "Zerowidth joiners and a BOM",
            "Isolates left and right marks",
            "Family emoji stays 👨\u200d👩\u200d👧 but stray goes",
        ],
    ),
    "control_chars.xml": Expect(
        3, titles=["Bell and backspace in a title", "Char refs to controls", "Vertical tab form feed"]
    ),
    "entities_unresolved.xml": Expect(
        4,
        titles=[
            "Unknown and entities",
            "HTML entities été and—dashes",
            "Double escaped & and <tag>",
            "Broken and refs",
        ],
    ),
    "html_script_titles.xml": Expect(2, titles=["Headline with a script", "Image in a title"]),
    "relative_links.xml": Expect(
        4,
        urls=[
            "{base}/news/relative-1",
            "{base}/corpus/stories/relative-2",
            "http://cdn.wire.example/relative-3",
        ],
    ),
    "future_and_undated.xml": Expect(5),
    "huge_title.xml": Expect(2),
    "emoji_titles.xml": Expect(2, titles=["Launch day 🚀🔥 for the new rover"]),
    "mixed_garbage_items.xml": Expect(2, skipped={"no title": 3}),
    "duplicate_guids.xml": Expect(1),
    # attacks
    "billion_laughs.xml": Expect(
        1, skipped={"no title": 1}, note="never expanded", titles=["Laughs aside, a real story"]
    ),
    "quadratic_blowup.xml": Expect(2, note="never expanded"),
    "xxe_file.xml": Expect(2, titles=["Leak:", "XXE neighbour story"]),
    "xxe_parameter_entity.xml": Expect(1),
    "xxe_external_dtd.xml": Expect(1, titles=["External DTD attempt"]),
    "entity_outside_doctype.xml": Expect(error="declares XML entities"),
    "deep_nesting.xml": Expect(1),
    "deep_nesting.json": Expect(error="nests deeper than 64 levels"),
    "deep_nesting_listing.json": Expect(error="nests deeper than 64 levels"),
    "huge_numbers_reddit.json": Expect(
        4,
        engagement={
            "Score of 1e999": 2**31 - 1,
            "Infinity comments": 10,
            "NaN score": 0,
            "A 400-digit score": 2**31 - 1,
        },
    ),
    "huge_numbers_hn.json": Expect(
        2, skipped={"no usable id": 1}, engagement={"Points beyond counting": 2**31 - 1, "Negative everything": 0}
    ),
    "huge_numbers_slash.xml": Expect(
        4, engagement={"Comments 1e999": 2**31 - 1, "Comments NaN": 0, "Comments lots": 0}
    ),
    "wrong_types_reddit.json": Expect(
        1,
        titles=["A proper post among wrong types"],
        skipped={
            "title is list, not text": 1,
            "title is bool, not text": 1,
            "title is int, not text": 1,
            "title is dict, not text": 1,
            "child is not a post object": 3,
        },
    ),
    "reddit_children_not_a_list.json": Expect(error="a Reddit listing whose children is int, not a list"),
    "wrong_types_hn.json": Expect(
        1, skipped={"title is list, not text": 1, "no usable id": 2, "type is list, not text": 1}
    ),
    "jsonfeed_wrong_types.json": Expect(
        2, skipped={"title is int, not text": 1, "no title": 1, "item is not an object": 1}
    ),
    "jsonfeed_items_not_a_list.json": Expect(error="a JSON Feed whose items is str, not a list"),
    # not feeds
    "html_page.html": Expect(error="an HTML page, not a feed"),
    "xhtml_page.xml": Expect(error="an HTML page, not a feed"),
    "binary_garbage.bin": Expect(error="binary data"),
    "gzip_body.xml": Expect(error="gzip-compressed data"),
    "zlib_body.xml": Expect(error="binary data"),
    "png_image.xml": Expect(error="a PNG image"),
    "empty_file.xml": Expect(error="empty: no content at all"),
    "whitespace_only.xml": Expect(error="empty: no content at all"),
    "empty_rss.xml": Expect(0, note="the feed holds no items"),
    "empty_atom.xml": Expect(0, note="the feed holds no items"),
    "empty_jsonfeed.json": Expect(0, note="the feed holds no items"),
    "empty_reddit.json": Expect(0, note="the feed holds no items"),
    "not_a_feed.xml": Expect(error="its root element is <note>"),
    "sitemap.xml": Expect(error="its root element is <urlset>"),
    "truncated.xml": Expect(3, note="read leniently"),
    "truncated.json": Expect(error="not valid JSON"),
    "plain_text.txt": Expect(error="plain text: neither XML nor JSON"),
    "json_not_a_feed.json": Expect(error="neither a Reddit listing, a JSON Feed nor Hacker News items"),
    "ids_only.json": Expect(error="lists only item ids"),
    "json_scalar.json": Expect(error="neither a Reddit listing"),
    "json_null.json": Expect(error="neither a Reddit listing"),
}
LOCAL = ["rss091_netscape.xml", "koi8r_undeclared.xml", "billion_laughs.xml", "deep_nesting.json", "empty_file.xml"]
_REPR = re.compile(r"^\[.*\]$|^\{.*\}$|^(True|False|None)$|\['|\{'|t3_\[")
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#\w+);")


def test_the_corpus_is_complete():
    files = sorted(p.name for p in CORPUS.iterdir())
    assert len(files) >= 50
    assert files == sorted(EXPECT), "every corpus file has its expectation, and every expectation its file"


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.TRENDREEL_SOURCE_DIRS = [CORPUS]


@pytest.fixture(scope="module")
def server():
    with FakeServer() as srv:
        for path in CORPUS.iterdir():
            srv.route("GET", f"/corpus/{path.name}", Reply(200, body=path.read_bytes()))
        yield srv


def collect(tmp_path: Path, source: dict) -> dict:
    ctx = make_context(tmp_path, "trend_collection", theme={"sources": [source, GOOD]})
    return trend_collection.run(ctx).output  # never raises while the good source delivers


def check(name: str, out: dict, base: str) -> None:
    expect = EXPECT[name]
    report, good = out["sources"]
    assert good["error"] is None and good["items"] == GOOD_ITEMS
    if expect.items is None:
        assert report["error"] and expect.error in report["error"], report
        assert report["error_kind"] in ("permanent", "transient") and report["items"] == 0
        assert out["failed_sources"] == 1
    else:
        assert report["error"] is None, report["error"]
        assert report["items"] >= expect.items and report["skip_reasons"] == expect.skipped, report
        if expect.error:
            raise AssertionError("an expectation has items and an error")
    if expect.note:
        assert any(expect.note in n for n in report["notes"]), report["notes"]
    if expect.kind:
        assert report["kind"] == expect.kind
    rows = Trend.objects.filter(source=report["name"])
    titles = set(rows.values_list("title", flat=True))
    assert set(expect.titles) <= titles, titles
    urls = set(rows.values_list("url", flat=True))
    assert {u.format(base=base) for u in expect.urls} <= urls, urls
    for title, engagement in expect.engagement.items():
        assert rows.get(title=title).engagement == engagement, title
    for trend in Trend.objects.all():  # every stored title, the good source's included
        for text in (trend.title, trend.summary):
            assert not has_invisible(text), repr(text)
            assert not _REPR.search(text), text
            assert not _ENTITY.search(text), text
        assert trend.title.strip() and len(trend.title) <= 500
        assert not trend.url or trend.url.startswith(("http://", "https://"))


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(EXPECT))
def test_a_corpus_feed_beside_a_good_source(tmp_path, server, name):
    out = collect(tmp_path, {"name": f"corpus-{Path(name).stem}"[:60], "url": server.url(f"/corpus/{name}")})
    check(name, out, server.url(""))


@pytest.mark.django_db
@pytest.mark.parametrize("name", LOCAL)
def test_a_corpus_file_read_as_a_local_path(tmp_path, name):
    out = collect(tmp_path, {"name": f"local-{Path(name).stem}", "path": str(CORPUS / name)})
    check(name, out, "")
