"""The demo theme: a tech-news theme that reads only the feeds bundled in ``stages/assets/feeds``.

Why bundled feeds: a fresh checkout (CI, a laptop without network) can run a whole job offline and
get the same topic every time. The four files are an RSS 2.0 site feed, an Atom blog aggregator,
a Reddit listing (JSON) and an hnrss-style Hacker News feed; several stories appear in more than
one of them under slightly different titles, which is what trend_analysis merges. Their dates are
fixed, and analysis measures recency from the newest collected item (not the wall clock), so the
demo picks the same topic whatever today's date is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.models import Theme

DEMO_SLUG = "demo"

DEMO_THEME: dict[str, Any] = {
    "name": "Tech pulse",
    "slug": DEMO_SLUG,
    "keywords": ["ai", "python", "open source", "chip", "robot"],
    "sources": [
        {"name": "thecircuit", "path": "feeds/technews.xml", "kind": "rss"},
        {"name": "planet-devtools", "path": "feeds/devblogs.atom", "kind": "atom"},
        {"name": "reddit-technology", "path": "feeds/reddit-technology.json", "kind": "reddit"},
        {"name": "hn-frontpage", "path": "feeds/hn-frontpage.xml", "kind": "hn"},
    ],
    "target_seconds": 30,
    "voice": "",
    "settings": {},
}


def ensure_demo_theme() -> Theme:
    """Create the demo theme, or bring an existing one (by slug) back to these values.

    Returns the ``jobs.models.Theme``. Imported lazily so this module loads without Django set up.
    """
    from jobs.models import Theme

    defaults = {key: value for key, value in DEMO_THEME.items() if key != "slug"}
    theme, _ = Theme.objects.update_or_create(slug=DEMO_SLUG, defaults=defaults)
    return theme
