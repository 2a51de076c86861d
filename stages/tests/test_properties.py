"""Property-based tests (Hypothesis) for every parser of a network response or feed body.

Each property feeds hostile input - arbitrary bytes, JSON of any shape with NaN/Infinity and huge
numbers, documents with the right shape and wrong types in every field, XML with DTDs, entities,
control and bidi characters, truncated at any byte - to one parser and checks that it

* raises nothing but the stage's error types (or the parser's own documented one),
* never hangs (every example has a deadline),
* stays within bounded memory (``tracemalloc`` peak per example),
* and keeps its output's promises (text is text, links are http(s), numbers are in range).

Examples are bounded and derandomized (the ``trendreel`` profile in ``stages/tests/conftest.py``),
so CI is deterministic and stays within its time budget.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import math
import tracemalloc
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from stages import egress, http
from stages.base import StageError
from stages.feeds import FeedSource, parse_feed
from stages.feeds.documents import Document, DocumentError, safe_xml
from stages.feeds.items import ENGAGEMENT_MAX, FeedRead
from stages.payload import PayloadError, as_float, as_int, json_safe, loads
from stages.providers import cloud_tts, google_trends, hackernews, llm, pexels, webhook, youtube
from stages.scripts import validate_script
from stages.tests.helpers import make_context
from stages.text import has_invisible, plain_text, split_sentences, strip_invisible

MEMORY_LIMIT = 64 * 1024 * 1024  # a 10 MB feed parses in far less; an explosion would not


@contextlib.contextmanager
def bounded_memory() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"peak {peak / 1e6:.0f} MB"


# -- strategies ----------------------------------------------------------------------------------
HOSTILE_CHARS = "\u202e\u202d\u2066\u2069\u200b\u200d\u2060\ufeff\x00\x01\x07\x1b\x7f\x85\ud7ff\ue000\U0001f680"
hostile_text = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(HOSTILE_CHARS + "&;<>\"'#[]{}")), max_size=40
) | st.sampled_from(["&lol9;", "&#0;", "&#x110000;", "['a', 'b']", "True", "1e999", "NaN", "<b>x</b>", ""])
numbers = (
    st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([10**400, -(10**400), 2**63, -1, 0, 1e999, -1e308])
)
scalars = st.none() | st.booleans() | numbers | hostile_text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=20,
)


urls = st.sampled_from(
    ["https://x.example/a", "/relative", "//cdn.example/x", "javascript:alert(1)", "http://[::1", ""]
)
PLAUSIBLE = {  # what a key usually holds: half the values are plausible, half anything at all
    "title": hostile_text, "story_title": hostile_text, "selftext": hostile_text, "text": hostile_text,
    "summary": hostile_text, "content_text": hostile_text, "content_html": hostile_text, "alt": hostile_text,
    "url": urls, "permalink": urls, "link": urls, "external_url": urls, "url_overridden_by_dest": urls,
    "score": numbers, "points": numbers, "num_comments": numbers, "descendants": numbers, "ups": numbers,
    "time": numbers, "created_utc": numbers, "created_at_i": numbers, "size": numbers, "width": numbers,
    "id": st.integers(-5, 2**60) | hostile_text, "objectID": st.text(alphabet="0123456789", max_size=20),
    "type": st.sampled_from(["story", "comment", "job", "poll", None]), "date_published": st.sampled_from(
        ["2026-11-28T10:00:00Z", "9999-12-31T23:59:59Z", "yesterday", ""]
    ),
}  # fmt: skip


def fields(keys: list[str], required: tuple[str, ...] = ()) -> st.SearchStrategy[dict]:
    """Objects with the keys a parser reads, each holding a plausible or any value, plus noise."""

    def value(key: str) -> st.SearchStrategy:
        return st.one_of(PLAUSIBLE.get(key, hostile_text), PLAUSIBLE.get(key, hostile_text), json_values)

    return st.fixed_dictionaries(
        {k: value(k) for k in required}, optional={k: value(k) for k in keys if k not in required}
    ) | st.dictionaries(hostile_text, json_values, max_size=3)


REDDIT_KEYS = ["title", "name", "id", "score", "ups", "num_comments", "created_utc", "permalink", "url"]
REDDIT_KEYS += ["url_overridden_by_dest", "selftext", "subreddit", "author"]
reddit_listings = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["Listing", "Listing", "Listing", None, 5]),
        "data": st.fixed_dictionaries(
            {
                "children": st.lists(
                    st.fixed_dictionaries(
                        {"kind": st.sampled_from(["t3", "t1", "more", 5, None]), "data": fields(REDDIT_KEYS)}
                    )
                    | json_values,
                    max_size=6,
                )
                | json_values
            }
        ),
    }
)
HN_KEYS = ["id", "objectID", "type", "title", "story_title", "url", "score", "points", "descendants", "num_comments"]
HN_KEYS += ["time", "created_at_i", "text", "story_text", "by", "author", "deleted", "dead"]
hn_documents = st.lists(fields(HN_KEYS, ("id", "type", "title")), max_size=6) | st.fixed_dictionaries(
    {"hits": st.lists(fields(HN_KEYS, ("objectID", "title")), max_size=6), "nbHits": numbers}
)
JSONFEED_KEYS = ["id", "title", "url", "external_url", "content_html", "content_text", "summary"]
JSONFEED_KEYS += ["date_published", "date_modified", "authors", "author", "tags"]
json_feeds = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1"]),
        "items": st.lists(fields(JSONFEED_KEYS, ("id", "title")) | json_values, max_size=6) | json_values,
        "feed_url": json_values,
        "home_page_url": json_values,
    }
)


def dump(value: object) -> bytes:
    return json.dumps(value, allow_nan=True, default=str).encode("utf-8", "surrogatepass")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


@st.composite
def xml_feeds(draw: st.DrawFn) -> bytes:
    """RSS/Atom/RDF/Google Trends skeletons with hostile text, raw or escaped, DTDs and damage."""
    root = draw(st.sampled_from(["rss", "atom", "rdf", "trends"]))
    raw_text = draw(st.booleans())

    def text() -> str:
        value = draw(hostile_text)
        return value if raw_text else escape(value)

    entries = []
    for _ in range(draw(st.integers(0, 4))):
        date = draw(st.sampled_from(["Sat, 28 Nov 2026 10:00:00 +0000", "Fri, 31 Dec 9999 23:59:59 +0000", "", "x"]))
        number = draw(st.sampled_from(["12", "1e999", "NaN", "-5", "9" * 40, ""]))
        link = draw(
            st.sampled_from(["https://x.example/a", "/rel", "javascript:alert(1)", "", "http://[::1", "ftp://x"])
        )
        if root == "atom":
            entries.append(f"<entry><title>{text()}</title><link href=\"{escape(link)}\"/><id>{text()}</id>"
                           f"<updated>2026-11-28T10:00:00Z</updated><summary>{text()}</summary></entry>")  # fmt: skip
        elif root == "trends":
            entries.append(f"<item><title>{text()}</title><ht:approx_traffic>{number}+</ht:approx_traffic>"
                           f"<pubDate>{date}</pubDate><ht:news_item><ht:news_item_title>{text()}</ht:news_item_title>"
                           f"<ht:news_item_url>{escape(link)}</ht:news_item_url></ht:news_item></item>")  # fmt: skip
        else:
            entries.append(f"<item><title>{text()}</title><link>{escape(link)}</link><guid>{text()}</guid>"
                           f"<pubDate>{date}</pubDate><slash:comments>{number}</slash:comments>"
                           f"<description>{text()}</description></item>")  # fmt: skip
    body = "".join(entries)
    doctype = draw(
        st.sampled_from(
            [
                "",
                '<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
                '<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
                '<!DOCTYPE rss SYSTEM "http://127.0.0.1:1/x.dtd">',
                '<!DOCTYPE rss [<!ENTITY % p SYSTEM "http://169.254.169.254/"> %p;]>',
                "<!DOCTYPE rss [",
            ]
        )
    )
    if root == "atom":
        doc = f'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="{escape(draw(hostile_text))}"><title>t</title>{body}</feed>'
    elif root == "rdf":
        doc = ('<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">'
               f"<channel><title>t</title></channel>{body}</rdf:RDF>")  # fmt: skip
    elif root == "trends":
        doc = f'<rss version="2.0" xmlns:ht="https://trends.google.com/trending/rss"><channel>{body}</channel></rss>'
    else:
        doc = f'<rss version="2.0" xmlns:slash="http://purl.org/rss/1.0/modules/slash/"><channel><title>t</title>{body}</channel></rss>'
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "koi8-r", "shift_jis", "latin-1"]))
    declared = draw(st.sampled_from(["", encoding, "utf-8", "bogus-charset"]))
    head = f'<?xml version="1.0" encoding="{declared}"?>' if declared else '<?xml version="1.0"?>'
    data = (head + doctype + doc).encode(encoding, errors="replace")
    cut = draw(st.integers(0, len(data)))
    return data[:cut] if draw(st.booleans()) else data


def assert_clean(read: FeedRead) -> None:
    for item in read.items:
        assert isinstance(item.title, str) and item.title and len(item.title) <= 500
        assert not has_invisible(item.title) and not has_invisible(item.summary)
        assert not item.url or item.url.startswith(("http://", "https://"))
        assert isinstance(item.engagement, int) and 0 <= item.engagement <= ENGAGEMENT_MAX
        assert isinstance(item.external_id, str) and 0 < len(item.external_id) <= 500
        json.dumps(item.raw, allow_nan=False)  # storable as JSON on every database


SOURCE = FeedSource(name="prop", kind=None, url="https://feeds.example/prop/feed", location="prop")
TRENDS = FeedSource(name="trends", kind="google_trends", url="https://trends.example/rss", location="trends")


def parse(content: bytes, source: FeedSource = SOURCE, content_type: str = "") -> None:
    with bounded_memory():
        try:
            read = parse_feed(source, content, content_type=content_type)
        except StageError as exc:
            event(f"refused: {exc.message.split('(')[0].split(':')[-1].strip()[:40]}")
            return
    event(f"read: {'items' if read.items else 'no items'}{', skipped' if read.skipped else ''}")
    assert_clean(read)


# -- feeds -----------------------------------------------------------------------------------------
@given(st.binary(max_size=2048))
def test_feed_parser_on_any_bytes(content):
    parse(content)


@given(xml_feeds(), st.sampled_from(["", "application/rss+xml", "text/xml; charset=koi8-r", "text/html"]))
def test_feed_parser_on_hostile_xml(content, content_type):
    parse(content, content_type=content_type)
    parse(content, TRENDS)


@given(json_values)
def test_feed_parser_on_any_json(value):
    parse(dump(value))


@given(reddit_listings)
def test_feed_parser_on_reddit_listings_with_wrong_types(listing):
    parse(dump(listing))


@given(hn_documents)
def test_feed_parser_on_hacker_news_items_with_wrong_types(document):
    parse(dump(document))


@given(json_feeds)
def test_feed_parser_on_json_feeds_with_wrong_types(feed):
    parse(dump(feed))


@given(st.lists(st.integers(1, 2**40), max_size=4), st.lists(json_values | fields(HN_KEYS), max_size=4))
def test_hacker_news_item_reads_never_raise_other_errors(ids, records):
    answers = {i: dump(records[n % len(records)]) if records else b"null" for n, i in enumerate(dict.fromkeys(ids))}
    with bounded_memory():
        try:
            read = hackernews.read_items("hn", list(answers), lambda i: answers[i], on_error=lambda m: None)
        except StageError:
            return
    assert_clean(read)


@given(st.text(max_size=300))
def test_document_sniffing_and_safe_xml_raise_only_their_error(text):
    with bounded_memory():
        with contextlib.suppress(DocumentError):
            Document.read(text.encode("utf-8", "surrogatepass"))
        with contextlib.suppress(DocumentError):
            prepared, _ = safe_xml(text)
            assert "<!ENTITY" not in prepared.upper()


@given(st.text(max_size=30))
def test_google_trends_traffic_is_a_bounded_count(text):
    assert 0 <= google_trends.parse_traffic(text) <= ENGAGEMENT_MAX


# -- payload and text --------------------------------------------------------------------------------
@given(st.binary(max_size=1024) | json_values.map(dump))
def test_bounded_json_raises_only_payload_errors(content):
    with bounded_memory(), contextlib.suppress(PayloadError):
        value = loads(content)
        json.dumps(json_safe(value), allow_nan=False)


@given(st.integers(1, 300_000))
def test_deep_json_is_refused_not_a_recursion_error(depth):
    with pytest.raises(PayloadError):
        loads("[" * depth + "]" * depth, max_depth=min(depth - 1, 64) if depth > 1 else 0)


@given(json_values)
@example(10**400)
def test_numbers_are_finite_and_in_range(value):
    number = as_int(value, low=0, high=1000)
    assert number is None or 0 <= number <= 1000
    unbounded = as_float(value)
    assert unbounded is None or not math.isnan(unbounded)


@given(hostile_text | st.text(max_size=200))
def test_clean_text_has_no_invisible_characters_or_entities(text):
    cleaned = plain_text(text, 120)
    assert not has_invisible(cleaned) and len(cleaned) <= 120
    assert strip_invisible(cleaned) == cleaned
    split_sentences(cleaned)


# -- LLM answers ---------------------------------------------------------------------------------
chat_bodies = (
    st.fixed_dictionaries(
        {
            "choices": st.lists(
                st.fixed_dictionaries({"message": fields(["content", "refusal", "role"]), "finish_reason": json_values})
                | json_values,
                max_size=2,
            )
            | json_values
        }
    )
    | json_values
)
SEGMENT = fields(["id", "narration", "headline"])
script_drafts = st.fixed_dictionaries(
    {
        "title": json_values,
        "segments": st.lists(SEGMENT, max_size=7) | json_values,
        "hashtags": st.lists(json_values, max_size=4) | json_values,
        "description": json_values,
        "notes_applied": json_values,
    }
)


@given(chat_bodies)
def test_a_chat_completions_answer_is_content_or_a_permanent_error(body):
    with bounded_memory(), contextlib.suppress(StageError):
        content, finish = llm._content(body)
        assert isinstance(content, str) and isinstance(finish, str)


@given(script_drafts.map(lambda d: json.dumps(d, allow_nan=True, default=str)) | st.text(max_size=300))
def test_a_model_script_is_a_script_or_an_invalid_answer(content):
    with bounded_memory():
        try:
            script = llm.build_script(llm.parse_json(content), target=30, wps=2.9, writer="openai:test")
        except llm.InvalidAnswer:
            return
        llm.fit_headlines(script)
        with contextlib.suppress(StageError):
            validate_script(script)


def test_a_huge_or_truncated_model_answer_is_an_invalid_answer():
    for content in ('{"title": "x", "segments": [' * 3, "[" * 100_000, "x" * 300_000, '{"a": NaN}'):
        with pytest.raises(llm.InvalidAnswer):
            llm.build_script(llm.parse_json(content), target=30, wps=2.9, writer="t")


# -- TTS answers ---------------------------------------------------------------------------------
ALIGNMENT_TEXT = "Chips got cheaper, again."


@given(fields(["audio_base64", "alignment", "normalized_alignment"]) | json_values)
def test_an_elevenlabs_answer_is_audio_or_a_permanent_error(answer):
    with bounded_memory(), contextlib.suppress(StageError):
        data, alignment = cloud_tts.elevenlabs_answer(answer)
        assert isinstance(data, bytes)
        cloud_tts.alignment_words(ALIGNMENT_TEXT, alignment)


@given(
    st.fixed_dictionaries(
        {
            "characters": st.lists(json_values | st.sampled_from(list(ALIGNMENT_TEXT)), max_size=40) | json_values,
            "character_start_times_seconds": st.lists(numbers | json_values, max_size=40) | json_values,
        }
    )
    | json_values
)
@example({"characters": ["C"], "character_start_times_seconds": [10**400]})  # found by the thorough profile
def test_alignment_words_never_raise_and_times_are_sane(alignment):
    words = cloud_tts.alignment_words(ALIGNMENT_TEXT, alignment)
    for word in words:
        assert 0 <= word.char < len(ALIGNMENT_TEXT) and math.isfinite(word.start) and 0 <= word.start < 3600


@given(st.binary(max_size=512), st.sampled_from([b"", b"RIFF\xff\xff\xff\xffWAVEfmt "]))
def test_wav_decoding_raises_only_not_audio(content, prefix):
    with bounded_memory(), contextlib.suppress(cloud_tts.NotAudio):
        samples, rate = cloud_tts.decode_wav(prefix + content)
        assert samples.dtype == np.int16 and 1000 <= rate <= 192000
    with contextlib.suppress(cloud_tts.NotAudio):
        cloud_tts.decode_pcm16(content)


# -- Pexels, YouTube, webhook answers ----------------------------------------------------------------
PEXELS_KEYS = ["id", "url", "photographer", "photographer_url", "user", "alt", "src", "video_files"]
pexels_answers = (
    st.fixed_dictionaries(
        {
            "photos": st.lists(fields(PEXELS_KEYS), max_size=4) | json_values,
            "videos": st.lists(
                fields(PEXELS_KEYS)
                | st.fixed_dictionaries(
                    {
                        "id": json_values,
                        "video_files": st.lists(
                            fields(["link", "file_type", "size", "width", "height", "quality"]), max_size=3
                        ),
                    }
                ),
                max_size=4,
            )
            | json_values,
        }
    )
    | json_values
)


@given(pexels_answers, st.sampled_from(["photos", "videos"]))
def test_a_pexels_search_answer_is_hits_or_a_permanent_error(answer, media):
    with bounded_memory():
        try:
            hits = pexels.parse_search(answer, media, 50 * 1024 * 1024)
        except StageError:
            return
    for hit in hits:
        hash(hit.id)
        assert hit.files and all(f["url"].startswith(("http://", "https://")) for f in hit.files)
        assert isinstance(hit.author, str) and not hit.author.startswith("[")


def youtube_publisher(tmp_path) -> youtube.YouTubePublisher:
    ctx = make_context(tmp_path, "publish", theme={"settings": {"publish": {"youtube": {"access_token": "ya29.t"}}}})
    return youtube.YouTubePublisher(ctx)


@given(st.binary(max_size=512) | json_values.map(dump), st.sampled_from([403, 429, 200, 308, 404]), hostile_text)
def test_youtube_answers_raise_only_stage_errors(tmp_path_factory, content, status, range_header):
    publisher = youtube_publisher(tmp_path_factory.getbasetemp())
    request = httpx.Request("PUT", "https://www.googleapis.com/upload/x")
    headers = {"Range": range_header.encode("ascii", "replace").decode()}
    response = httpx.Response(status, content=content, headers=headers, request=request)
    with bounded_memory():
        assert isinstance(youtube._reason(response), str)
        with contextlib.suppress(StageError, youtube._SessionGone):  # gone: the session expired (404/410)
            youtube._classify(response)
        with contextlib.suppress(StageError):
            state, value = publisher._state(response, 2573)
            assert state in ("done", "at")
        with contextlib.suppress(StageError):
            resource = publisher._json(response, "the answer", "hint")
            upload = publisher._finish(resource, 2573, resumed=False)
            assert upload.url.startswith("https://www.youtube.com/watch?v=")


@given(st.binary(max_size=600))
def test_a_webhook_receivers_answer_becomes_one_clean_line(content):
    excerpt = webhook.response_excerpt(content, ["whsec-123456"])
    assert len(excerpt) <= 200 and "\n" not in excerpt and not has_invisible(excerpt)


# -- HTTP and addresses ----------------------------------------------------------------------------
@given(hostile_text | st.text(max_size=40))
def test_retry_after_is_seconds_or_nothing(value):
    seconds = http.parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@given(st.ip_addresses())
def test_every_address_has_a_verdict(ip):
    reason = egress.refused_reason(ip)
    if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        assert reason is not None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None and egress.refused_reason(ip.ipv4_mapped):
        assert reason is not None


@given(st.lists(hostile_text, max_size=4))
def test_allow_lists_parse_or_say_why(entries):
    with contextlib.suppress(ValueError):
        egress.AllowList.parse(entries).allows_host("example.org")


def test_the_property_strategies_make_hostile_base64():
    # a sanity check of the inputs themselves: audio_base64 that is valid base64 reaches the decoder
    data, _ = cloud_tts.elevenlabs_answer({"audio_base64": base64.b64encode(b"\x00\x01").decode()})
    assert data == b"\x00\x01"
