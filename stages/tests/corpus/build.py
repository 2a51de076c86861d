"""Build the feed corpus: real-world-style feeds in every format we read, and hostile ones.

    .venv/bin/python stages/tests/corpus/build.py    # rewrites stages/tests/corpus/feeds/

The files are committed; this script says how each was made (encodings, byte-level damage, attacks)
so the corpus can be regenerated or extended. ``stages/tests/test_corpus.py`` runs every file
through the real trend_collection stage beside one good source and holds the expectations.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent / "feeds"
FILES: dict[str, bytes] = {}


def add(name: str, content: str | bytes, encoding: str = "utf-8") -> None:
    FILES[name] = content.encode(encoding) if isinstance(content, str) else content


def rss(items: str, *, head: str = '<?xml version="1.0" encoding="UTF-8"?>', ns: str = "", channel: str = "") -> str:
    return f"""{head}
<rss version="2.0"{ns}>
  <channel>
    <title>Corpus Wire</title>
    <link>https://wire.example/</link>
    <description>Stories for the corpus</description>
    {channel}
    {items}
  </channel>
</rss>
"""


def item(
    title: str, link: str, *, guid: str = "", date: str = "Sat, 28 Nov 2026 10:00:00 +0000", extra: str = ""
) -> str:
    guid_tag = f'<guid isPermaLink="false">{guid}</guid>' if guid else ""
    date_tag = f"<pubDate>{date}</pubDate>" if date else ""
    return f"<item><title>{title}</title><link>{link}</link>{guid_tag}{date_tag}{extra}</item>\n"


TITLES = [
    "Solar farm on a lake powers a small town through winter",
    "Open-source spreadsheet hits version 10 after a decade of work",
    "Researchers teach a robot hand to tie shoelaces",
    "City council votes to light bridges with recycled batteries",
    "New bike lanes cut commute times across the river district",
]


def good_items(n: int = 5, prefix: str = "c") -> str:
    return "".join(
        item(t, f"https://wire.example/{prefix}/{i}", guid=f"{prefix}-{i}", extra="<slash:comments>12</slash:comments>")
        for i, t in enumerate(TITLES[:n])
    )


SLASH = ' xmlns:slash="http://purl.org/rss/1.0/modules/slash/" xmlns:dc="http://purl.org/dc/elements/1.1/"'

# -- real-world formats ---------------------------------------------------------------------------
add("rss20_news.xml", rss(good_items(), ns=SLASH))
add(
    "rss091_netscape.xml",
    """<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Le Fil</title><link>https://lefil.example/</link><description>Actualit&eacute;s</description>
<language>fr</language>
<item><title>Caf&eacute; de la gare: r&eacute;ouverture apr&egrave;s travaux</title><link>https://lefil.example/cafe</link><description>Le caf&eacute; rouvre.</description></item>
<item><title>M&eacute;t&eacute;o: &eacute;pisode neigeux &agrave; Lyon</title><link>https://lefil.example/meteo</link></item>
<item><title>Gr\xe8ve des contr\xf4leurs: trafic perturb\xe9</title><link>https://lefil.example/greve</link></item>
</channel></rss>
""",
    "latin-1",
)
add(
    "rss092_enclosures.xml",
    """<?xml version="1.0"?><rss version="0.92"><channel><title>Radio Wire</title><link>https://radio.example/</link>
<description>Shows</description>
<item><title>Morning show: the tram line debate</title><description>Guests argue about the new line.</description>
<enclosure url="https://radio.example/show1.mp3" length="1234" type="audio/mpeg"/></item>
<item><title>Evening show: inside the battery plant</title><enclosure url="https://radio.example/show2.mp3" length="99" type="audio/mpeg"/></item>
</channel></rss>""",
)
add(
    "rss10_rdf.xml",
    """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://science.example/"><title>Science Daily-ish</title><link>https://science.example/</link><description>Science</description>
<items><rdf:Seq><rdf:li resource="https://science.example/a"/><rdf:li resource="https://science.example/b"/></rdf:Seq></items></channel>
<item rdf:about="https://science.example/a"><title>Comet makes its closest pass in 400 years</title><link>https://science.example/a</link><dc:date>2026-11-27T08:00:00Z</dc:date></item>
<item rdf:about="https://science.example/b"><title>Deep-sea vents host unknown microbes</title><link>https://science.example/b</link><dc:date>2026-11-26T08:00:00Z</dc:date></item>
</rdf:RDF>""",
)
add(
    "atom10_xml_base.xml",
    """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example/">
<title>Engineering Blog</title><id>tag:blog.example,2026:feed</id><updated>2026-11-28T09:00:00Z</updated>
<entry><title type="html">Why we moved to &lt;em&gt;SQLite&lt;/em&gt;</title><link href="posts/sqlite"/><id>tag:blog.example,2026:1</id>
<updated>2026-11-28T09:00:00Z</updated><content type="html">&lt;p&gt;It was simpler.&lt;/p&gt;</content></entry>
<entry xml:base="https://other.example/dir/"><title>A guest post on caching</title><link href="caching.html"/><id>tag:blog.example,2026:2</id>
<updated>2026-11-27T09:00:00Z</updated><summary>Guest writer.</summary></entry>
</feed>""",
)
add(
    "atom03_legacy.xml",
    """<?xml version="1.0" encoding="utf-8"?>
<feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>Old Blog</title><link rel="alternate" type="text/html" href="https://old.example/"/>
<modified>2026-11-20T10:00:00Z</modified>
<entry><title>Still blogging in Atom 0.3</title><link rel="alternate" type="text/html" href="https://old.example/1"/><id>tag:old.example,1</id>
<issued>2026-11-20T10:00:00Z</issued><modified>2026-11-20T10:00:00Z</modified></entry></feed>""",
)
add(
    "jsonfeed_10.json",
    json.dumps(
        {
            "version": "https://jsonfeed.org/version/1",
            "title": "Micro News",
            "home_page_url": "https://micro.example/",
            "feed_url": "https://micro.example/feed.json",
            "author": {"name": "Micro Desk"},
            "items": [
                {
                    "id": "2",
                    "title": "Ferry service returns after storm repairs",
                    "url": "/2026/ferry",
                    "content_html": "<p>The <b>ferry</b> is back.</p>",
                    "date_published": "2026-11-28T07:00:00Z",
                },
                {
                    "id": "1",
                    "title": "Library adds seed-lending shelf",
                    "url": "https://micro.example/2026/seeds",
                    "summary": "Borrow a seed, return a seed.",
                    "date_published": "2026-11-27T07:00:00+01:00",
                },
            ],
        },
        indent=1,
    ),
)
add(
    "jsonfeed_11.json",
    json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Status Posts",
            "home_page_url": "https://status.example/",
            "language": "en",
            "authors": [{"name": "Ops Team", "url": "https://status.example/team"}],
            "items": [
                {
                    "id": "https://status.example/p/3",
                    "url": "https://status.example/p/3",
                    "content_text": "Database maintenance finished early. All services are back.",
                    "date_published": "2026-11-28T06:00:00Z",
                    "tags": ["ops", "maintenance"],
                },
                {
                    "id": "https://status.example/p/2",
                    "title": "Planned maintenance tonight",
                    "url": "https://status.example/p/2",
                    "content_html": "<p>Expect a short outage.</p>",
                    "date_modified": "2026-11-27T20:00:00Z",
                },
            ],
        },
        indent=1,
    ),
)
reddit_children = [
    {
        "kind": "t3",
        "data": {
            "title": "Volunteers map every tree in the city",
            "name": "t3_aaa1",
            "id": "aaa1",
            "score": 5120,
            "num_comments": 301,
            "created_utc": 1795860000.0,
            "permalink": "/r/cities/comments/aaa1/volunteers_map_every_tree/",
            "url": "https://trees.example/map",
            "subreddit": "cities",
            "author": "arborist",
        },
    },
    {"kind": "t1", "data": {"body": "a comment, not a post", "name": "t1_c1"}},
    {"kind": "more", "data": {"count": 12, "children": ["x", "y"]}},
    {
        "kind": "t3",
        "data": {
            "title": "Self post: what is your city doing about heat?",
            "name": "t3_aaa2",
            "score": 88,
            "num_comments": 40,
            "created_utc": 1795850000,
            "permalink": "/r/cities/comments/aaa2/heat/",
            "selftext": "Asking for **ideas** &amp; examples.",
            "is_self": True,
            "url": "https://www.reddit.com/r/cities/comments/aaa2/heat/",
        },
    },
]
add("reddit_listing.json", json.dumps({"kind": "Listing", "data": {"children": reddit_children, "after": None}}))
add(
    "reddit_atom.xml",
    """<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>cities</title>
<link rel="alternate" href="https://www.reddit.com/r/cities" type="text/html"/><id>/r/cities.rss</id>
<entry><title>Volunteers map every tree in the city</title><id>t3_aaa1</id><link href="https://www.reddit.com/r/cities/comments/aaa1/volunteers/"/>
<updated>2026-11-27T11:02:00+00:00</updated><content type="html">&lt;p&gt;submitted by /u/arborist&lt;/p&gt;</content></entry></feed>""",
)
hn_items = [
    {
        "by": "maker",
        "descendants": 71,
        "id": 9001,
        "score": 311,
        "time": 1795860000,
        "title": "Show HN: A solar-powered weather station",
        "type": "story",
        "url": "https://wx.example/",
    },
    {"by": "x", "id": 9002, "parent": 9001, "text": "nice", "time": 1795860100, "type": "comment"},
    {"by": "hiring", "id": 9003, "time": 1795860200, "title": "Acme (YC S20) is hiring", "type": "job"},
    {"id": 9004, "dead": True, "type": "story", "title": "dead one"},
    {"id": 9005, "deleted": True, "type": "story"},
]
add("hn_firebase_items.json", json.dumps(hn_items))
add(
    "hn_algolia.json",
    json.dumps(
        {
            "hits": [
                {
                    "objectID": "9100",
                    "title": "Ask HN: How do you back up your photos?",
                    "points": 120,
                    "num_comments": 200,
                    "created_at_i": 1795860000,
                    "author": "asker",
                },
                {"objectID": "9101", "story_title": "Rust 2.0 roadmap", "points": 50, "url": "https://rust.example/"},
            ],
            "nbHits": 2,
            "page": 0,
        }
    ),
)
add(
    "hnrss.xml",
    rss(
        "".join(
            item(
                f"<![CDATA[{t}]]>",
                f"https://story.example/{i}",
                guid=f"https://news.ycombinator.com/item?id={500 + i}",
                extra=f'<description><![CDATA[<p>Article URL: <a href="https://story.example/{i}">x</a></p>'
                f"<p>Points: {100 + i}</p><p># Comments: {10 + i}</p>]]></description>"
                f"<comments>https://news.ycombinator.com/item?id={500 + i}</comments>",
            )
            for i, t in enumerate(TITLES[:3])
        ),
        channel="<docs>https://hnrss.org/</docs>",
    ),
)
add(
    "google_trends.xml",
    """<?xml version="1.0" encoding="UTF-8"?>
<rss xmlns:atom="http://www.w3.org/2005/Atom" xmlns:ht="https://trends.google.com/trending/rss" version="2.0"><channel>
<title>Daily Search Trends</title><link>https://trends.google.com/trending/rss?geo=GB</link>
<item><title>snow day</title><ht:approx_traffic>50,000+</ht:approx_traffic><pubDate>Sat, 28 Nov 2026 09:40:00 -0000</pubDate>
<ht:news_item><ht:news_item_title>Schools close as snow arrives</ht:news_item_title><ht:news_item_url>https://news.example/snow</ht:news_item_url><ht:news_item_source>News Example</ht:news_item_source></ht:news_item></item>
<item><title>cup final</title><ht:approx_traffic>2M+</ht:approx_traffic></item>
</channel></rss>""",
)
add(
    "youtube_channel.atom",
    """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns:media="http://search.yahoo.com/mrss/" xmlns="http://www.w3.org/2005/Atom">
<link rel="self" href="https://www.youtube.com/feeds/videos.xml?channel_id=UC123"/><id>yt:channel:UC123</id><yt:channelId>UC123</yt:channelId>
<title>Maker Channel</title><published>2020-01-01T00:00:00+00:00</published>
<entry><id>yt:video:abc123</id><yt:videoId>abc123</yt:videoId><title>Building a cargo bike from scrap</title>
<link rel="alternate" href="https://www.youtube.com/watch?v=abc123"/><published>2026-11-27T15:00:00+00:00</published>
<media:group><media:title>Building a cargo bike from scrap</media:title><media:description>Part one.</media:description>
<media:community><media:statistics views="45210"/></media:community></media:group></entry></feed>""",
)
add(
    "wordpress_content_encoded.xml",
    rss(
        item(
            "Garden club wins regional award",
            "https://garden.example/award",
            extra='<content:encoded><![CDATA[<p>The club&#8217;s <a href="/x">entry</a> won.</p>'
            "<p>The post Garden club wins appeared first on Garden News.</p>]]></content:encoded>"
            "<dc:creator><![CDATA[Ada Green]]></dc:creator>",
        )
        + item("Seed swap this Saturday", "https://garden.example/swap"),
        ns=' xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/"',
    ),
)
add(
    "podcast_itunes.xml",
    rss(
        item(
            "Episode 42: the quiet revolution in heat pumps",
            "https://pod.example/42",
            extra="<itunes:duration>41:02</itunes:duration><itunes:explicit>no</itunes:explicit>"
            '<enclosure url="https://pod.example/42.mp3" length="1" type="audio/mpeg"/>',
        ),
        ns=' xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"',
    ),
)
add(
    "stylesheet_pi.xml",
    rss(
        good_items(2, "pi"),
        head='<?xml version="1.0" encoding="UTF-8"?>\n<?xml-stylesheet type="text/xsl" href="/rss.xsl"?>',
        ns=SLASH,
    ),
)
add(
    "github_releases.atom",
    """<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/" xml:lang="en-US">
<id>tag:github.com,2008:https://github.com/acme/tool/releases</id><link type="text/html" rel="alternate" href="https://github.com/acme/tool/releases"/>
<title>Release notes from tool</title><updated>2026-11-26T12:00:00Z</updated>
<entry><id>tag:github.com,2008:Repository/1/v3.0.0</id><updated>2026-11-26T12:00:00Z</updated>
<link rel="alternate" type="text/html" href="https://github.com/acme/tool/releases/tag/v3.0.0"/><title>v3.0.0</title>
<content type="html">&lt;h2&gt;Breaking changes&lt;/h2&gt;&lt;ul&gt;&lt;li&gt;New config format&lt;/li&gt;&lt;/ul&gt;</content><author><name>acme-bot</name></author></entry></feed>""",
)
add(
    "mastodon_untitled.xml",
    rss(
        '<item><guid isPermaLink="true">https://social.example/@ana/1</guid><link>https://social.example/@ana/1</link>'
        "<pubDate>Sat, 28 Nov 2026 08:00:00 +0000</pubDate><description>&lt;p&gt;Our community garden just harvested "
        "200 kg of potatoes for the food bank!&lt;/p&gt;</description></item>"
        '<item><guid isPermaLink="true">https://social.example/@ana/2</guid><link>https://social.example/@ana/2</link>'
        "<description>&lt;p&gt;&lt;a href=&quot;https://social.example/tags/cycling&quot;&gt;#cycling&lt;/a&gt; "
        "Snow tyres on, ready for winter.&lt;/p&gt;</description></item>"
    ),
)
add(
    "cdata_html_titles.xml",
    rss(
        item("<![CDATA[<b>Bold</b> claims about <i>batteries</i>]]>", "https://wire.example/bold")
        + item("<![CDATA[Tom & Jerry get a reboot]]>", "https://wire.example/tom"),
    ),
)

# -- encodings ------------------------------------------------------------------------------------
RU = ["Центробанк сохранил ключевую ставку", "В Москве открылась выставка роботов", "Учёные создали новый аккумулятор"]
JA = ["日銀が金融政策の現状維持を決定", "東京で人工知能とロボットの展示会が開幕", "新しい電池で航続距離が倍増"]
ZH = ["央行宣布维持基准利率不变", "北京举办人工智能与机器人展览会", "科学家研制出新型电动汽车电池"]


def plain_rss(titles: list[str], declaration: str = '<?xml version="1.0"?>') -> str:
    # Mostly markup: the way real feeds look, and what makes naive detection fail.
    items = "".join(
        f"<item><title>{t}</title><link>https://intl.example/{i}</link><guid>intl-{i}</guid>"
        f"<pubDate>Sat, 28 Nov 2026 0{i}:00:00 +0000</pubDate><description>Read the full story at https://intl.example/{i} "
        f"for details, updates and comments from readers.</description></item>"
        for i, t in enumerate(titles)
    )
    return f'{declaration}<rss version="2.0"><channel><title>International</title><link>https://intl.example/</link>{items}</channel></rss>'


add("koi8r_undeclared.xml", plain_rss(RU), "koi8-r")
add("shiftjis_undeclared.xml", plain_rss(JA), "shift_jis")
add("gb2312_undeclared.xml", plain_rss(ZH), "gb2312")
add("cp1251_declared.xml", plain_rss(RU, '<?xml version="1.0" encoding="windows-1251"?>'), "cp1251")
add(
    "latin1_declared_utf8_bytes.xml",
    plain_rss(
        ["Café owners in Lyon cut food waste", "Zürich trams run all night"],
        '<?xml version="1.0" encoding="ISO-8859-1"?>',
    ),
)
add("double_encoded_mojibake.xml", plain_rss(["CafÃ© culture returns to the old town", "Ã¼ber-fast trains, finally"]))
add("utf8_bom.xml", b"\xef\xbb\xbf" + plain_rss(["Byte order marks are invisible", "Second story with a BOM"]).encode())
add(
    "utf16le_bom.xml",
    b"\xff\xfe"
    + plain_rss(
        ["UTF-16 feeds still exist", "Ünïcödé in sixteen bits"], '<?xml version="1.0" encoding="UTF-16"?>'
    ).encode("utf-16-le"),
)
add(
    "jsonfeed_bom.json",
    b"\xef\xbb\xbf"
    + json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "BOM",
            "items": [{"id": "1", "title": "A JSON Feed with a BOM", "url": "https://bom.example/1"}],
        }
    ).encode(),
)
add(
    "cp1252_declared_utf8.xml",
    plain_rss(
        ["\u201cSmart quotes\u201d in a declared-UTF-8 feed", "Em\u2014dashes everywhere"],
        '<?xml version="1.0" encoding="utf-8"?>',
    ).encode("cp1252"),
)

# -- hostile text ---------------------------------------------------------------------------------
add(
    "bidi_zero_width.xml",
    rss(
        item("Safe title \u202eexe.fdp\u202c with an override", "https://wire.example/bidi1")
        + item("Zero\u200bwidth\u200c join\u2060ers and a \ufeffBOM", "https://wire.example/bidi2")
        + item("Isolates \u2066left\u2069 and \u2067right\u2069 marks \u200e\u200f", "https://wire.example/bidi3")
        + item("Family emoji stays 👨\u200d👩\u200d👧 but stray \u200d goes", "https://wire.example/bidi4"),
    ),
)
add(
    "control_chars.xml",
    rss(
        item("Bell\x07 and back\x08space in a title", "https://wire.example/ctl1")
        + item("Char refs &#x1;&#x8;&#0; to controls", "https://wire.example/ctl2")
        + item("Vertical\x0btab\x0cform feed", "https://wire.example/ctl3"),
    ),
)
add(
    "entities_unresolved.xml",
    rss(
        item("Unknown &lol9; and &foo; entities", "https://wire.example/ent1")
        + item("HTML entities &eacute;t&eacute; &nbsp;and&mdash;dashes", "https://wire.example/ent2")
        + item("Double escaped &amp;amp; and &amp;lt;tag&amp;gt;", "https://wire.example/ent3")
        + item("Broken &#xZZ; and &#99999999; refs", "https://wire.example/ent4"),
    ),
)
add(
    "html_script_titles.xml",
    rss(
        item("&lt;script&gt;alert(1)&lt;/script&gt;Headline with a script", "https://wire.example/xss1")
        + item(
            "Image &lt;img src=x onerror=alert(1)&gt; in a title",
            "https://wire.example/xss2",
            extra="<description>&lt;iframe src=&quot;javascript:alert(1)&quot;&gt;&lt;/iframe&gt;Body text</description>",
        ),
    ),
)
add(
    "relative_links.xml",
    rss(
        item("Relative link resolved against the feed URL", "/news/relative-1", guid="rel-1")
        + item("Path-relative link", "stories/relative-2", guid="rel-2")
        + item("Protocol-relative link", "//cdn.wire.example/relative-3", guid="rel-3")
        + item("A javascript: link is no link", "javascript:alert(1)", guid="rel-4")
    ),
)
add(
    "future_and_undated.xml",
    rss(
        item("Dated far in the future", "https://wire.example/f1", date="Fri, 31 Dec 9999 23:59:59 +0000")
        + item("No date at all", "https://wire.example/f2", date="")
        + item("Date that is not a date", "https://wire.example/f3", date="yesterday-ish")
        + item("Epoch zero", "https://wire.example/f4", date="Thu, 01 Jan 1970 00:00:00 +0000")
        + item("A normal date", "https://wire.example/f5")
    ),
)
add(
    "huge_title.xml",
    rss(item("Long " * 20000, "https://wire.example/long") + item("Short title", "https://wire.example/s")),
)
add(
    "emoji_titles.xml",
    rss(
        item("Launch day 🚀🔥 for the new rover", "https://wire.example/e1")
        + item("🇬🇧🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f flags", "https://wire.example/e2")
    ),
)
add(
    "mixed_garbage_items.xml",
    rss(
        item("A fine story among broken ones", "https://wire.example/ok1")
        + "<item><link>https://wire.example/notitle</link></item>"
        + "<item><title></title><description></description></item>"
        + "<item><title>   </title></item>"
        + item("Another fine story", "https://wire.example/ok2")
    ),
)
add(
    "duplicate_guids.xml",
    rss(
        item("First copy", "https://wire.example/d", guid="dup")
        + item("Second copy", "https://wire.example/d", guid="dup")
    ),
)

# -- attacks ------------------------------------------------------------------------------------
laughs = '<!ENTITY lol "lol">' + "".join(
    f'<!ENTITY lol{i} "{("&lol%s;" % ("" if i == 1 else i - 1)) * 10}">' for i in range(1, 10)
)
add(
    "billion_laughs.xml",
    f'<?xml version="1.0"?>\n<!DOCTYPE rss [{laughs}]>\n'
    + rss(
        item("&lol9;", "https://wire.example/lol") + item("Laughs aside, a real story", "https://wire.example/real"),
        head="",
    ),
)
add(
    "quadratic_blowup.xml",
    '<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "'
    + "A" * 50000
    + '">]>\n'
    + rss(
        item("&a;" * 200 + "x", "https://wire.example/q")
        + item("Quadratic blowup survivor", "https://wire.example/q2"),
        head="",
    ),
)
add(
    "xxe_file.xml",
    '<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    + rss(
        item("Leak: &xxe;", "https://wire.example/xxe") + item("XXE neighbour story", "https://wire.example/x2"),
        head="",
    ),
)
add(
    "xxe_parameter_entity.xml",
    '<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://169.254.169.254/latest/meta-data/"> %remote;]>\n'
    + rss(item("Parameter entity attempt", "https://wire.example/pe"), head=""),
)
add(
    "xxe_external_dtd.xml",
    '<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "http://127.0.0.1:1/evil.dtd">\n'
    + rss(item("External DTD attempt &ext;", "https://wire.example/dtd"), head=""),
)
add(
    "entity_outside_doctype.xml",
    '<?xml version="1.0"?><rss version="2.0"><channel><!ENTITY x "y"><title>t</title></channel></rss>',
)
add(
    "deep_nesting.xml",
    rss(
        item(
            "Deeply nested description",
            "https://wire.example/deep",
            extra="<description>" + "<div>" * 50000 + "x" + "</div>" * 50000 + "</description>",
        )
    ),
)
add("deep_nesting.json", "[" * 100000 + "]" * 100000)
add(
    "deep_nesting_listing.json",
    '{"kind": "Listing", "data": {"children": [{"kind": "t3", "data": {"title": "ok", "x": '
    + "[" * 5000
    + "]" * 5000
    + "}}]}}",
)
add(
    "huge_numbers_reddit.json",
    '{"kind": "Listing", "data": {"children": ['
    '{"kind": "t3", "data": {"title": "Score of 1e999", "name": "t3_n1", "score": 1e999, "num_comments": 5, "created_utc": 1795860000}},'
    '{"kind": "t3", "data": {"title": "Infinity comments", "name": "t3_n2", "score": 10, "num_comments": Infinity, "created_utc": -1e308}},'
    '{"kind": "t3", "data": {"title": "NaN score", "name": "t3_n3", "score": NaN, "num_comments": -Infinity, "created_utc": 1e999}},'
    '{"kind": "t3", "data": {"title": "A 400-digit score", "name": "t3_n4", "score": '
    + "9"
    * 400
    + ', "num_comments": "12"}}'
    "]}}",
)
add(
    "huge_numbers_hn.json",
    '[{"id": 7001, "type": "story", "title": "Points beyond counting", "score": 1e999, "descendants": 1e308, "time": 1e999},'
    '{"id": 7002, "type": "story", "title": "Negative everything", "score": -5, "descendants": -1, "time": -1},'
    '{"id": ' + "1" * 50 + ', "type": "story", "title": "An id of fifty digits"}]',
)
add(
    "huge_numbers_slash.xml",
    rss(
        item("Comments 1e999", "https://wire.example/n1", extra="<slash:comments>1e999</slash:comments>")
        + item("Comments NaN", "https://wire.example/n2", extra="<slash:comments>NaN</slash:comments>")
        + item("Comments lots", "https://wire.example/n3", extra="<slash:comments>lots</slash:comments>")
        + item(
            "Comments 99999999999999999999999",
            "https://wire.example/n4",
            extra="<slash:comments>99999999999999999999999</slash:comments>",
        ),
        ns=SLASH,
    ),
)
add(
    "wrong_types_reddit.json",
    json.dumps(
        {
            "kind": "Listing",
            "data": {
                "children": [
                    {"kind": "t3", "data": {"title": ["a", "b"], "name": "t3_w1"}},
                    {"kind": "t3", "data": {"title": True, "name": "t3_w2"}},
                    {"kind": "t3", "data": {"title": 12345, "name": "t3_w3"}},
                    {"kind": "t3", "data": {"title": {"text": "dict"}, "name": "t3_w4"}},
                    {
                        "kind": "t3",
                        "data": {
                            "title": "A proper post among wrong types",
                            "name": ["x"],
                            "id": ["x"],
                            "permalink": 5,
                            "url": ["u"],
                            "subreddit": ["s"],
                            "author": {"n": 1},
                        },
                    },
                    {"kind": "t3", "data": "not an object"},
                    "not a child",
                    5,
                ]
            },
        }
    ),
)
add("reddit_children_not_a_list.json", json.dumps({"kind": "Listing", "data": {"children": 5}}))
add(
    "wrong_types_hn.json",
    json.dumps(
        [
            {"id": 8001, "type": "story", "title": ["x", "y"], "score": "lots"},
            {"id": {"n": 1}, "type": "story", "title": "Dict id"},
            {
                "id": 8003,
                "type": "story",
                "title": "Text score and time",
                "score": "12",
                "time": "now",
                "url": 5,
                "by": ["a"],
            },
            {"id": True, "type": "story", "title": "Boolean id"},
            {"id": 8005, "type": ["story"], "title": "Type is a list"},
        ]
    ),
)
add(
    "jsonfeed_wrong_types.json",
    json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": ["not", "text"],
            "items": [
                {"id": [1], "title": 5, "url": 7},
                {
                    "id": "ok",
                    "title": "JSON Feed item that is fine",
                    "url": "https://jf.example/ok",
                    "date_published": 12,
                },
                {"id": "t", "title": None, "content_text": None, "summary": ["x"]},
                "string item",
                {"id": "z", "title": "Tags and authors of the wrong type", "tags": "notalist", "authors": {"name": 5}},
            ],
        }
    ),
)
add("jsonfeed_items_not_a_list.json", json.dumps({"version": "https://jsonfeed.org/version/1", "items": "nope"}))

# -- not feeds ----------------------------------------------------------------------------------
add(
    "html_page.html",
    '<!DOCTYPE html><html><head><title>Wire</title><link rel="alternate" type="application/rss+xml" '
    'href="https://wire.example/feed.xml"></head><body><h1>Welcome</h1></body></html>',
)
add(
    "xhtml_page.xml",
    '<?xml version="1.0" encoding="utf-8"?><!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd"><html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head><body/></html>',
)
add("binary_garbage.bin", bytes((i * 37 + 11) % 256 for i in range(4096)))
add("gzip_body.xml", gzip.compress(rss(good_items(2, "gz")).encode(), mtime=0))
add("zlib_body.xml", zlib.compress(rss(good_items(2, "zl")).encode()))
add("png_image.xml", b"\x89PNG\r\n\x1a\n" + bytes(64))
add("empty_file.xml", b"")
add("whitespace_only.xml", b"   \n\t  \n")
add("empty_rss.xml", rss(""))
add(
    "empty_atom.xml",
    '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Quiet</title><id>q</id></feed>',
)
add("empty_jsonfeed.json", json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Quiet", "items": []}))
add("empty_reddit.json", json.dumps({"kind": "Listing", "data": {"children": []}}))
add("not_a_feed.xml", '<?xml version="1.0"?><note><to>Tove</to><body>Don\'t forget me</body></note>')
add(
    "sitemap.xml",
    '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://x.example/</loc></url></urlset>',
)
add("truncated.xml", rss(good_items(3, "tr"), ns=SLASH)[:-140])
add("truncated.json", json.dumps({"kind": "Listing", "data": {"children": reddit_children}})[:300])
add("plain_text.txt", "This is a plain text file, not a feed.\nIt has two lines.\n")
add("json_not_a_feed.json", json.dumps({"status": "ok", "items": [{"name": "widget", "price": 3}]}))
add("ids_only.json", json.dumps([46120311, 46121507, 46119988]))
add("json_scalar.json", "42")
add("json_null.json", "null")


def build() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    for name, content in sorted(FILES.items()):
        (OUT / name).write_bytes(content)
    print(f"{len(FILES)} files in {OUT}")


if __name__ == "__main__":
    build()
