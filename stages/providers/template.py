"""The offline script writer: deterministic templates filled from the analysed topic.

``TemplateWriter`` is a real writer, not a stub: it builds a hook, 3-6 beats and a call to action
from the topic (title, summary sentences, angle, related coverage, keywords), picks its templates
deterministically from a hash of the topic title (same topic, same script), sizes the narration to
the theme's target length with a words-per-second budget and applies the operator's "request
changes" notes as explicit directives (``stages.scripts.parse_notes``). The text rules it follows
are the contract's (``stages.scripts``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from stages.base import StageContext
from stages.scripts import (
    HASHTAGS_DEFAULT,
    HASHTAGS_MORE,
    HEADLINE_MAX_WORDS,
    MAX_BEATS,
    MIN_BEATS,
    MIN_TARGET_SECONDS,
    OPERATOR_HOOK_MAX_WORDS,
    TITLE_MAX_CHARS,
    TONES,
    WORDS_PER_SECOND,
    avoid_pattern,
    clause_fit,
    clean_title,
    duplicates,
    facts,
    hashtag,
    headline_from,
    key_phrase,
    parse_notes,
    scrub,
    shared_run,
    topic_seed,
)
from stages.text import STOPWORDS, as_sentence, clean_text, count_words, shorten, split_sentences, strip_emoji

DESCRIPTION_MAX_CHARS = 2000  # the template's own lead + sources; the contract allows more
# Feed furniture that is not part of the story ("The post X appeared first on Y", "Read more").
_BOILERPLATE_RE = re.compile(
    r"^\W*(?:read more|continue reading|click here|comments?\b|subscribe|sign up|source:|image:|photo:)"
    r"|appeared first on|\bcomments?\s*$|all rights reserved",
    re.IGNORECASE,
)


# --- templates ------------------------------------------------------------------------------
# Hooks must stay within the contract's 8 words (OPERATOR_HOOK_MAX_WORDS, ~3 s) once {s} (a 1-3 word name) is filled
# in; plain hooks keep to HOOK_MAX_WORDS (6).
HOOKS: dict[str, dict[str, list[str]]] = {
    # {s} is a name from the title (1-3 words: "Raspberry Pi 5", "Python"): every line must make
    # sense on its own, before the viewer knows the story, and claim nothing the story may not say.
    "neutral": {
        "subject": [
            "{s} just got more interesting.",
            "Big news for anyone using {s}.",
            "Here's what's new with {s}.",
            "If you follow {s}, watch this.",
        ],
        "plain": [
            "Nobody saw this coming.",
            "Here's today's big story.",
            "This story is moving fast.",
            "You'll want to hear this.",
        ],
    },
    "casual": {
        "subject": [
            "Okay, {s} news you'll want.",
            "{s} fans, this one's for you.",
            "Wait till you hear this {s} news.",
            "So, about {s} today...",
        ],
        "plain": [
            "Okay, this one is wild.",
            "Wait, you need this one.",
            "Stop scrolling, this is big.",
            "Nobody saw this coming.",
        ],
    },
    "serious": {
        "subject": [
            "An important update on {s}.",
            "{s}: what changed, and why.",
            "Here is what changed for {s}.",
            "A closer look at {s} today.",
        ],
        "plain": [
            "Here is what changed today.",
            "An important update, briefly.",
            "This matters. Here is why.",
            "One story worth your time.",
        ],
    },
}

# Openers per beat role. "" means the beat starts with its material directly.
OPENERS: dict[str, dict[str, list[str]]] = {
    "what": {
        "neutral": ["Here's what happened.", "Quick recap.", "The news:"],
        "casual": ["So here's the deal.", "Okay, so.", "Here's the thing."],
        "serious": ["Here is what happened.", "The facts first.", "The headline:"],
    },
    "detail": {
        "neutral": ["", "On top of that,", "Also,", "And"],
        "casual": ["", "Plus,", "And get this:", "Oh, and"],
        "serious": ["", "In addition,", "Notably,", "Further,"],
    },
    "why": {
        "neutral": ["Why it matters:", "The big picture:", "Why this is a big deal:"],
        "casual": ["Why should you care?", "Here's why it's a big deal.", "The real story?"],
        "serious": ["Why it matters:", "The significance:", "The wider context:"],
    },
    "next": {
        "neutral": ["What's next?", "Keep an eye on this.", "Where does it go from here?"],
        "casual": ["So what now?", "Watch this space.", "And it's not over."],
        "serious": ["What comes next?", "Looking ahead.", "The story continues."],
    },
}

# Used only when the topic has too little material to fill its role (no summary, no related).
FILLERS: dict[str, dict[str, list[str]]] = {
    "why": {
        "neutral": [
            "If you use {kw}, this one affects you.",
            "Stories like this shape what happens next for {kw}.",
        ],
        "casual": ["If you're into {kw}, this one's worth knowing.", "This could change how people use {kw}."],
        "serious": [
            "It bears directly on anyone who relies on {kw}.",
            "It is likely to shape decisions around {kw}.",
        ],
    },
    "next": {
        "neutral": [
            "Details are still coming in, so expect updates soon.",
            "Reactions are still rolling in, and more details should follow.",
        ],
        "casual": ["Details are still dropping, so stay tuned.", "People are still digging in, so expect more soon."],
        "serious": [
            "Further details are expected in the coming days.",
            "More information should follow as the story develops.",
        ],
    },
    "detail": {
        "neutral": [
            "It is picking up attention quickly across the web.",
            "It is one of the most shared stories today.",
        ],
        "casual": ["People online are already all over it.", "Honestly, everyone's sharing this one today."],
        "serious": ["The story is drawing wide attention.", "It is among the most discussed stories today."],
    },
}

CTAS: dict[str, list[tuple[str, str]]] = {  # (spoken, card): without a subject
    "neutral": [
        ("Follow for more stories like this.", "More soon"),
        ("What do you think? Tell us in the comments.", "Your take?"),
        ("Share this with someone who needs to know.", "Pass it on"),
    ],
    "casual": [
        ("Hit follow so you don't miss the next one.", "More soon"),
        ("Would you use it? Drop it in the comments.", "Your take?"),
        ("Send this to a friend who'd love it.", "Pass it on"),
    ],
    "serious": [
        ("Follow for a clear daily briefing.", "Daily briefing"),
        ("The sources are linked in the description.", "Sources below"),
        ("Follow to stay informed on this story.", "More soon"),
    ],
}
# Tied to the topic: {s} is the story's name ("Raspberry Pi 5"). The card never repeats the words.
SUBJECT_CTAS: dict[str, list[tuple[str, str]]] = {
    "neutral": [
        ("Would you try {s}? Tell us in the comments.", "Your verdict?"),
        ("Follow for more on {s}.", "More soon"),
        ("Know someone into {s}? Send them this.", "Pass it on"),
    ],
    "casual": [
        ("Would you use {s}? Drop it in the comments.", "Your verdict?"),
        ("Follow so you catch the next {s} drop.", "More soon"),
        ("Got a friend into {s}? Send them this.", "Pass it on"),
    ],
    "serious": [
        ("Follow for more on {s} as it develops.", "More soon"),
        ("The sources on {s} are in the description.", "Sources below"),
        ("What does {s} mean for you? Tell us below.", "Your view?"),
    ],
}
# Card labels for a beat without a telling fact, by role (never the opener the voice says).
ROLE_LABELS: dict[str, list[str]] = {
    "what": ["What happened", "The news", "In short"],
    "detail": ["The details", "Worth knowing", "Look closer"],
    "why": ["Why it matters", "The big picture", "The stakes"],
    "next": ["What's next", "Watch this space", "Still unfolding"],
}

GENERIC_TAGS = ["#Shorts", "#News", "#Trending", "#Explained", "#TodayILearned"]

_ROLE_PLANS = {
    3: ["what", "detail", "why"],
    4: ["what", "detail", "why", "next"],
    5: ["what", "detail", "detail", "why", "next"],
    6: ["what", "detail", "detail", "detail", "why", "next"],
}
_CASUAL_LOWERCASE = {
    "the",
    "a",
    "an",
    "it",
    "this",
    "that",
    "these",
    "those",
    "they",
    "its",
    "there",
    "some",
    "many",
    "most",
}


def _joinable(sentence: str, opener: str) -> str:
    """``sentence`` after a connective opener ("Also,"): its first word lower-cased if it is common."""
    if not opener or opener.endswith((".", "?", "!", ":")):
        return sentence
    first, _, rest = sentence.partition(" ")
    if first.lower() in _CASUAL_LOWERCASE:
        return f"{first.lower()} {rest}".strip()
    return sentence


@dataclass
class _Beat:
    role: str
    opener: str
    body: list[str]  # sentences
    headline_hint: str = ""

    def narration(self) -> str:
        if not self.body:
            return self.opener
        first = _joinable(self.body[0], self.opener)
        return " ".join(p for p in [self.opener, first, *self.body[1:]] if p)

    def words(self) -> int:
        return count_words(self.narration())


@dataclass
class _Material:
    details: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    nexts: list[str] = field(default_factory=list)
    headlines: dict[str, str] = field(default_factory=dict)  # sentence -> better card text for it


def _connects(sentence: str, corpus: str) -> bool:
    """Can ``sentence`` follow a connective ("Also, ...")? Yes when its first word can be lower-cased
    or is a name (the story capitalises it mid-sentence too)."""
    first = sentence.split(" ", 1)[0].strip("\"“‘'(")
    if not first or first.lower() in _CASUAL_LOWERCASE or not first[:1].isupper():
        return True
    if first.isupper() or any(ch.isdigit() for ch in first):
        return True  # "NASA", "5G"
    return re.search(rf"[\w,;] +{re.escape(first)}(?!\w)", corpus) is not None


def _similar(a: str, b: str) -> bool:
    """True when two sentences share most of their content words (the summary repeating the title)."""
    wa = {w for w in re.findall(r"\w+", a.lower()) if w not in STOPWORDS}
    wb = {w for w in re.findall(r"\w+", b.lower()) if w not in STOPWORDS}
    if not wa or not wb:
        return False
    return len(wa & wb) / min(len(wa), len(wb)) >= 0.7


class TemplateWriter:
    """The offline writer: deterministic templates filled from the analysed topic."""

    name = "template"

    def __init__(
        self, ctx: StageContext | None = None, *, words_per_second: float | None = None, tone: str | None = None
    ) -> None:
        self.words_per_second = words_per_second
        self.tone = tone
        # the hook pool the last script opened from ("subject" / "plain"; "operator" for a note's
        # hook): script_generation records it, the feedback loop (stages.feedback) learns from it
        self.hook_style: str | None = None

    # -- entry point ----------------------------------------------------------------------------
    def write(self, topic: dict[str, Any], theme: dict[str, Any], notes: list[str]) -> dict[str, Any]:
        """Steps: read the topic, apply directives, plan beats from the duration, fill, size, tag."""
        settings = dict(((theme.get("settings") or {}).get("script_generation")) or {})
        wps = float(self.words_per_second or settings.get("words_per_second") or WORDS_PER_SECOND)
        directives = parse_notes(list(notes or []))
        tone = directives.tone or self.tone or settings.get("tone") or "neutral"
        tone = tone if tone in TONES else "neutral"
        avoid = avoid_pattern(directives.avoid)
        applied: list[str] = []

        raw_title = clean_title(topic.get("title"))
        seed_title = raw_title or str(topic.get("trend_id") or "")
        rng = random.Random(topic_seed(seed_title))
        title_spoken = strip_emoji(raw_title)
        if not count_words(title_spoken):
            title_spoken = ""  # nothing to say ("🔥🔥🔥", ")["): the beats fall back to the summary
        summary = clean_text(topic.get("summary"), keep_lines=True)
        keywords = [strip_emoji(clean_text(k)) for k in topic.get("keywords") or [] if isinstance(k, str)]
        keywords = [k for k in keywords if count_words(k)]
        angle = strip_emoji(clean_text(topic.get("angle")))
        related = [r for r in topic.get("related") or [] if isinstance(r, dict) and clean_text(r.get("title"))]
        source = clean_text(topic.get("source"))

        theme_target = int(theme.get("target_seconds") or 30)
        target = round(theme_target * directives.length_factor)
        if directives.length_factor != 1.0:
            word = "shorter" if directives.length_factor < 1 else "longer"
            applied.append(f"{word}: target {theme_target} s -> {max(target, MIN_TARGET_SECONDS)} s")
        if target < MIN_TARGET_SECONDS:
            applied.append(
                f"target {target} s raised to {MIN_TARGET_SECONDS} s: the least a hook, 3 beats and a call to action need"
            )
            target = MIN_TARGET_SECONDS
        budget = round(target * wps)
        # beats: the theme may fix the count (settings.script_generation.beats), else one per ~10 s
        n_beats = min(MAX_BEATS, max(MIN_BEATS, int(settings.get("beats") or round(target / 10))))
        if directives.tone:
            applied.append(f"tone: {tone}")

        # Hook
        subject = self._subject(title_spoken, keywords, directives.avoid)
        hook_text = strip_emoji(clean_text(directives.hook or ""))
        if count_words(hook_text):
            hook = as_sentence(shorten(hook_text, OPERATOR_HOOK_MAX_WORDS))
            trimmed = " (trimmed to 8 words)" if count_words(hook_text) > OPERATOR_HOOK_MAX_WORDS else ""
            applied.append(f'hook replaced: "{hook}"{trimmed}')
            self.hook_style = "operator"
        else:
            if directives.hook:
                applied.append(f'hook not replaced: nothing speakable in "{directives.hook[:80]}"')
            # trend analysis may ask for a hook style (stages.feedback); else the pools' own odds
            hook, self.hook_style = self._hook(rng, tone, subject, avoid, style=topic.get("hook_style"))

        # Call to action
        cta_text = strip_emoji(clean_text(directives.cta or ""))
        if count_words(cta_text):
            cta = as_sentence(shorten(cta_text, 20))
            cta_headline = headline_from(cta)
            applied.append(f'cta replaced: "{cta}"')
        else:
            if directives.cta:
                applied.append(f'cta not replaced: nothing speakable in "{directives.cta[:80]}"')
            pool = [(c.format(s=subject), h) for c, h in SUBJECT_CTAS[tone]] if subject else CTAS[tone]
            cta, cta_headline = self._choose(rng, [c for c in pool if not _hits(avoid, c[0])] or CTAS[tone])

        # Beats: as many as the duration asks for, but no more than the topic has things to say
        # (the title beat, one per piece of material, one filler at most).
        material = self._material(title_spoken, summary, angle, related)
        n_beats = min(n_beats, max(MIN_BEATS, 2 + len(material.details) + len(material.nexts) + len(material.why)))
        beats_budget = max(budget - count_words(hook) - count_words(cta), n_beats * 8)
        per_beat = beats_budget / n_beats
        spoken_keywords = [
            _spelled(k, [title_spoken, summary]) for k in keywords if count_words(k) <= 3 and len(k) <= 30
        ]
        # Fillers name the story's subject (a name), never a pair of keywords ("Python and free-threaded").
        kw_phrase = subject or _kw_phrase([k for k in spoken_keywords if not _hits(avoid, k) and k[:1].isupper()])
        beats, spare = self._plan_beats(
            rng, tone, n_beats, per_beat, title_spoken, material, kw_phrase, f"{title_spoken}\n{summary}"
        )
        self._fit(beats, spare, beats_budget, per_beat)

        # Title, hashtags, description
        title = clean_title(directives.title) if directives.title else raw_title
        if directives.title:
            applied.append(f'title replaced: "{shorten(title, 40, TITLE_MAX_CHARS)}"')
        title = (
            shorten(title, 40, TITLE_MAX_CHARS)
            or shorten(title_spoken, 40, TITLE_MAX_CHARS)
            or "Today's trending story"
        )
        hashtags = self._hashtags(
            topic, [_spelled(k, [title_spoken, summary]) for k in keywords], theme, directives.hashtags
        )
        if directives.hashtags == "none":
            applied.append("no hashtags")
        elif directives.hashtags == "more":
            applied.append(f"more hashtags: {len(hashtags)}")
        description = self._description(summary, raw_title, topic, related, source)

        hook_headline = self._hook_headline(title_spoken, hook)
        segments = [{"id": "hook", "narration": hook, "headline": hook_headline}]
        used_labels: set[str] = {hook_headline}
        for i, beat in enumerate(beats, start=1):
            headline = self._beat_headline(rng, beat, used_labels)
            segments.append({"id": f"beat{i}", "narration": beat.narration(), "headline": headline})
        segments.append({"id": "cta", "narration": cta, "headline": cta_headline})

        script = {
            "title": title,
            "hook": hook,
            "segments": segments,
            "cta": cta,
            "hashtags": hashtags,
            "description": description,
        }
        if avoid is not None:
            self._apply_avoid(script, avoid, directives.avoid, applied)
        if script["hashtags"]:  # added last, so an avoided word cannot survive inside a tag
            script["description"] += "\n\n" + " ".join(script["hashtags"])
        for clause in directives.not_understood:
            applied.append(f'noted, no automatic rule: "{clause[:200]}"')

        script.update(
            {
                "target_seconds": target,
                "word_count": sum(count_words(s["narration"]) for s in script["segments"]),
                "words_per_second": wps,
                "notes_applied": applied,
                "writer": self.name,
            }
        )
        return script

    # -- pieces -----------------------------------------------------------------------------
    @staticmethod
    def _choose(rng: random.Random, options: list[Any]) -> Any:
        return options[rng.randrange(len(options))]

    @staticmethod
    def _subject(title: str, keywords: list[str], avoid: list[str]) -> str:
        """The story's name, spelled as the title spells it: a proper name from the title (with its
        version: "Raspberry Pi 5", "Python 3.14"), the one the topic's keywords point at first.
        Never an adjective ("Free-threaded") or a fragment of a name ("Raspberry")."""
        avoided = {w.lower() for w in avoid}
        keys = [k.lower() for k in keywords]
        first = re.match(r"[\w][\w'’.+&-]*", title)
        opening = []  # a title's first word is a name if the topic's keywords say so ("Tessera unveils...")
        if first and first.group(0)[:1].isupper() and first.group(0).lower() in keys:
            opening = [first.group(0)]
        names = opening + [
            n
            for n in facts(title)
            if any(ch.isalpha() for ch in n)
            and n[:1].isupper()
            and n.lower() not in avoided
            and len(n) <= 24
            and not n.lower().endswith(("-based", "-like", "-style", "-free"))
            and not (count_words(n) == 1 and "-" in n and not any(ch.isdigit() for ch in n))
        ]
        if not names:
            return ""

        def score(name: str) -> tuple[int, int, int]:
            low = name.lower()
            keyword = any(k and (k in low or low in k) for k in keys)
            return (int(keyword), int(any(ch.isdigit() for ch in name)), count_words(name))

        return max(names, key=score)

    def _hook(
        self, rng: random.Random, tone: str, subject: str, avoid: re.Pattern[str] | None, *, style: Any = None
    ) -> tuple[str, str]:
        """The hook and its pool: one naming the subject when the title has one (unless ``style``, the
        feedback loop's pick, asks for a plain one), else a plain one."""
        pools = HOOKS[tone]
        if subject and style != "plain":
            options = [t.format(s=subject) for t in pools["subject"]]
            options = [o for o in options if count_words(o) <= OPERATOR_HOOK_MAX_WORDS and not _hits(avoid, o)]
            if options:  # a named hook makes sense before the viewer knows the story
                return as_sentence(self._choose(rng, options)), "subject"
        plain = [o for o in pools["plain"] if not _hits(avoid, o)] or pools["plain"]
        return self._choose(rng, plain), "plain"

    @staticmethod
    def _material(title: str, summary: str, angle: str, related: list[dict[str, Any]]) -> _Material:
        """Sort what the topic offers into roles: details (summary), why (angle), next (coverage)."""
        material = _Material()
        for s in split_sentences(summary):
            if _BOILERPLATE_RE.search(s):
                continue
            s = as_sentence(strip_emoji(s))
            if count_words(s) < 3 or _similar(s, title) or any(_similar(s, d) for d in material.details):
                continue
            material.details.append(s)
            if len(material.details) >= 24:
                break
        if count_words(angle) >= 4 and clause_fit(angle, 30):  # a one-word angle ("explainer") is a label
            material.why.append(as_sentence(clause_fit(angle, 30)))
        for r in related[:3]:
            # Feed names are our own labels ("hn-frontpage"): never spoken, only the coverage is.
            r_title = clause_fit(strip_emoji(clean_title(r.get("title"))), 16, 4)
            if not r_title or _similar(r_title, title):
                continue
            sentence = as_sentence("Also in the news: " + r_title.removesuffix("."))  # a "?" stays a question
            material.nexts.append(sentence)
        return material

    def _plan_beats(
        self,
        rng: random.Random,
        tone: str,
        n: int,
        per_beat: float,
        title: str,
        material: _Material,
        kw_phrase: str,
        corpus: str,
    ) -> tuple[list[_Beat], list[str]]:
        """Give each role its material; a role with nothing to say gets a filler, never twice the same."""
        details, why, nexts = list(material.details), list(material.why), list(material.nexts)
        used: set[str] = set()

        def filler(role: str) -> str:
            pool = FILLERS["next"][tone] if role == "why" and not kw_phrase else FILLERS[role][tone]
            options = [line.format(kw=kw_phrase) for line in pool]
            options = (
                [o for o in options if o not in used]
                or [o for o in (line.format(kw=kw_phrase) for line in FILLERS["next"][tone]) if o not in used]
                or options
            )
            choice = self._choose(rng, options)
            used.add(choice)
            return choice

        beats: list[_Beat] = []
        for role in _ROLE_PLANS[n]:
            fresh = [o for o in OPENERS[role][tone] if not o or o not in used]  # no opener twice
            opener = self._choose(rng, fresh or OPENERS[role][tone])
            used.add(opener)
            if role == "what":
                # The title, to its last clause that fits; a title with no clause to stop at (a
                # run-on feed title) is cut at a word, the one place a phrase may be cut.
                limit = max(10, int(per_beat))
                body = [as_sentence(clause_fit(title, limit) or shorten(title, limit))] if title else []
                if not body:
                    body = [details.pop(0)] if details else [filler("detail")]
            elif role == "detail":
                pool = details or nexts or why
                body = [pool.pop(0)] if pool else [filler("detail")]
            elif role == "why":
                pool = why or (details if len(details) > 1 else [])
                body = [pool.pop(0)] if pool else [filler("why")]
            else:  # next
                pool = nexts or (details if len(details) > 1 else [])
                body = [pool.pop(0)] if pool else [filler("next")]
            if opener and not opener.endswith((".", "?", "!", ":")) and not _connects(body[0], corpus):
                opener = ""  # "Also, Locals love it!": a connective would need a case guess we cannot make
            beats.append(_Beat(role, opener, body, material.headlines.get(body[0], "")))
        # Left-over material extends the beats later (details first, then related coverage); when
        # the topic has too little to say for the target length, unused context lines come last,
        # so a 30 s target does not come out as a 20 s video.
        context = [
            line.format(kw=kw_phrase)
            for role in ("why", "next", "detail")
            for line in FILLERS[role][tone]
            if kw_phrase or "{kw}" not in line
        ]
        return beats, details + nexts + why + [c for c in context if c not in used]

    @staticmethod
    def _fit(beats: list[_Beat], spare: list[str], budget: int, per_beat: float) -> None:
        """Extend short beats with unused sentences, then trim the longest until the total fits.

        Sentences are never cut inside a phrase: a long one keeps its opening up to a clause
        boundary (``clause_fit``) or stays whole; trimming drops whole sentences first.
        """
        spare = list(spare)
        for beat in beats:  # long single sentences are cut first so one beat cannot eat the budget
            limit = max(8, int(per_beat * 1.4) - count_words(beat.opener))
            beat.body = [clause_fit(s, limit) or s for s in beat.body]
        total = sum(b.words() for b in beats)
        while spare and total < budget * 0.92:
            sentence = spare.pop(0)
            room = budget - total
            if room < 6:
                break
            if count_words(sentence) > room:
                sentence = clause_fit(sentence, room, max(6, room // 2))
                if not sentence:
                    continue  # only a fragment would fit ("Early benchmarks show the NPU running.")
            # Details go to detail beats while they have room, then to whichever beat is shortest.
            fitting = [b for b in beats if b.role == "detail" and b.words() + count_words(sentence) <= per_beat * 1.6]
            target = min(fitting or beats[1:] or beats, key=lambda b: b.words())
            target.body.append(as_sentence(sentence))
            total = sum(b.words() for b in beats)
        guard = 0
        while total > budget and guard < 200:
            guard += 1
            longest = max(beats, key=lambda b: b.words())
            if len(longest.body) > 1:
                longest.body.pop()
            else:
                words = count_words(longest.body[0])
                shorter = clause_fit(longest.body[0], max(5, words - max(2, total - budget)))
                if not shorter or count_words(shorter) >= words:
                    break
                longest.body[0] = shorter
            total = sum(b.words() for b in beats)

    @staticmethod
    def _hook_headline(title: str, hook: str) -> str:
        """The hook card: the story's facts ("Nordlys Labs · Raspberry Pi 5") or the title's opening
        clause, whichever does not repeat the spoken hook."""
        phrase = key_phrase(title, avoid="")
        candidates = [phrase] if phrase and (" · " in phrase or any(ch.isdigit() for ch in phrase)) else []
        candidates += [headline_from(clause_fit(title, HEADLINE_MAX_WORDS, 3) or title), phrase]
        for candidate in candidates:
            if candidate and count_words(candidate) and not duplicates(candidate, hook):
                return candidate
        return "Today's story"

    def _beat_headline(self, rng: random.Random, beat: _Beat, used: set[str]) -> str:
        """A beat's card: its telling fact ("Fjord-2B · 9 tokens/s") or a label for its role that
        the voice does not say; never its sentence (the captions show that)."""
        narration = beat.narration()
        phrase = key_phrase(narration, avoid=" | ".join(used))
        seen = [part.lower() for text in used for part in text.split(" · ")]
        fresh = phrase and not any(part.lower() in seen for part in phrase.split(" · "))
        if fresh and (" · " in phrase or any(ch.isdigit() for ch in phrase) or " " in phrase):
            used.add(phrase)
            return phrase
        labels = [
            label
            for label in ROLE_LABELS.get(beat.role, ROLE_LABELS["detail"])
            if label not in used and shared_run(label, narration) < 2
        ]
        label = self._choose(rng, labels) if labels else (phrase or "The story")
        used.add(label)
        return label

    @staticmethod
    def _hashtags(topic: dict[str, Any], keywords: list[str], theme: dict[str, Any], mode: str) -> list[str]:
        if mode == "none":
            return []
        limit = HASHTAGS_MORE if mode == "more" else HASHTAGS_DEFAULT
        candidates = [t for t in topic.get("hashtags") or [] if isinstance(t, str)] + keywords
        if mode == "more":
            candidates += [k for k in theme.get("keywords") or [] if isinstance(k, str)] + GENERIC_TAGS
        tags: list[str] = []
        seen: set[str] = set()
        for raw in candidates:
            tag = hashtag(raw)
            if len(tag) < 3 or len(tag) > 40 or tag.lower() in seen:
                continue
            seen.add(tag.lower())
            tags.append(tag)
            if len(tags) >= limit:
                break
        if not tags and mode != "none":
            tags = GENERIC_TAGS[:2]
        return tags

    @staticmethod
    def _description(
        summary: str, title: str, topic: dict[str, Any], related: list[dict[str, Any]], source: str
    ) -> str:
        """Lead paragraph (original wording, emoji kept) and the source links; hashtags come later."""
        lead_sentences = split_sentences(summary)[:2]
        lead = " ".join(lead_sentences) or title
        lead = shorten(lead, 80, 600)
        lines = [lead or "Today's trending story.", "", "Sources:"]
        url = topic.get("url") if isinstance(topic.get("url"), str) else ""
        entries = [(source, title, url)] + [
            (
                clean_text(r.get("source")),
                clean_title(r.get("title")),
                r.get("url") if isinstance(r.get("url"), str) else "",
            )
            for r in related[:4]
        ]
        for src, ttl, link in entries:
            text = " - ".join(p for p in [src, shorten(ttl, 30, 140)] if p)
            line = f"• {text}" + (
                f": {link.strip()}" if link and link.strip().startswith(("http://", "https://")) else ""
            )
            if text or link:
                lines.append(line)
        description = "\n".join(lines)
        if len(description) > DESCRIPTION_MAX_CHARS:
            description = description[: DESCRIPTION_MAX_CHARS - 1].rsplit("\n", 1)[0] + "\n…"
        return description

    @staticmethod
    def _apply_avoid(script: dict[str, Any], pattern: re.Pattern[str], words: list[str], applied: list[str]) -> None:
        """Remove avoided words everywhere the audience sees or hears them."""
        removed = 0
        for key in ("title", "hook", "cta", "description"):
            script[key], n = scrub(script[key], pattern)
            removed += n
        fallbacks = {"hook": "Here's today's big story", "cta": "Follow for more"}
        for seg in script["segments"]:
            seg["narration"], n1 = scrub(seg["narration"], pattern)
            seg["headline"], n2 = scrub(seg["headline"], pattern)
            removed += n1 + n2
            if count_words(seg["narration"]) == 0:
                seg["narration"] = fallbacks.get(seg["id"], "There is more to this story.") + "."
            seg["narration"] = as_sentence(seg["narration"])
            headline = seg["headline"].strip(" ,;:")
            seg["headline"] = headline if count_words(headline) else fallbacks.get(seg["id"], "The story")
        script["hook"] = script["segments"][0]["narration"]
        script["cta"] = script["segments"][-1]["narration"]
        kept = [t for t in script["hashtags"] if not any(w.lower() in t.lower() for w in words)]
        removed += len(script["hashtags"]) - len(kept)
        script["hashtags"] = kept
        script["title"] = script["title"].strip() or "Today's trending story"
        quoted = ", ".join(f'"{w}"' for w in words)
        applied.append(f"avoid {quoted}: {removed} removed")


def _hits(pattern: re.Pattern[str] | None, text: str) -> bool:
    return bool(pattern and pattern.search(text))


def _kw_phrase(keywords: list[str]) -> str:
    words = [k for k in keywords if count_words(k) <= 3][:2]
    if not words:
        return ""
    return words[0] if len(words) == 1 else f"{words[0]} and {words[1]}"


def _spelled(keyword: str, texts: list[str]) -> str:
    """The keyword as the story spells it ("ai" -> "AI"), so TTS and cards get the right case."""
    for text in texts:
        m = re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text, re.IGNORECASE)
        if m:
            return m.group(0)
    return keyword
