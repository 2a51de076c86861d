"""Issue 13: word-timed captions, a real mix, safe zones and craft, each checked the way QC checks it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from stages import captions, composition, media, mix, music, qc, scene_generation, voiceover
from stages.base import PermanentStageError
from stages.look import CaptionStyle, Frame, Music, look_for
from stages.providers.espeak import EspeakProvider
from stages.providers.template import TemplateWriter
from stages.scripts import clause_fit, duplicates, key_phrase
from stages.speech_timing import complete_starts, derive_starts, speech_onsets, tokens
from stages.tests.helpers import make_context
from stages.tests.test_composition import SCRIPT, render_scenes

YELLOW = (255, 210, 63)


@pytest.fixture(scope="module")
def voiced(tmp_path_factory) -> dict:
    """The test script spoken by eSpeak NG, a voice that reports exactly when each word starts."""
    root = tmp_path_factory.mktemp("craft-voice")
    ctx = make_context(
        root,
        "voiceover",
        theme={"settings": {"voiceover": {"engine": "espeak-ng"}}},
        upstream={"script_generation": SCRIPT},
    )
    out = voiceover.run(ctx).output
    scenes = render_scenes(root / "scenes")
    return {
        "upstream": {"script_generation": SCRIPT, "scene_generation": scenes, "voiceover": out},
        "dirs": {"scene_generation": root / "scenes", "voiceover": ctx.work_dir},
    }


def compose(tmp_path: Path, voiced: dict, settings: dict | None = None, **replace) -> composition.StageResult:
    upstream = dict(voiced["upstream"], **replace)
    ctx = make_context(
        tmp_path,
        "composition",
        theme={"settings": {"composition": settings or {}}},
        upstream=upstream,
        upstream_dirs=voiced["dirs"],
    )
    result = composition.run(ctx)
    result.ctx = ctx  # type: ignore[attr-defined]
    return result


def frame_at(video: Path, seconds: float, size: tuple[int, int] = (1080, 1920)) -> np.ndarray:
    raw = subprocess.run(
        [media.ffmpeg_exe(), "-v", "error", "-ss", f"{seconds:.3f}", "-i", str(video)]
        + ["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(size[1], size[0], 3)


def yellow_pixels(frame: np.ndarray) -> int:
    f = frame.astype(int)
    return int(((f[..., 0] > 200) & (f[..., 1] > 170) & (f[..., 2] < 120)).sum())


# -- word timings ---------------------------------------------------------------------------------
def test_it_times_every_word_with_the_voices_own_timings(voiced):
    out = voiced["upstream"]["voiceover"]
    spoken = [t for seg in SCRIPT["segments"] for t in voiceover.normalise_text(seg["narration"]).split()]
    assert [w["text"] for w in out["words"]] == spoken
    assert out["word_timing"] == {"voice": 4, "derived": 0}  # eSpeak NG's word events, every sentence
    starts = [w["start"] for w in out["words"]]
    assert starts == sorted(starts)
    for word in out["words"]:
        assert word["start"] < word["end"] <= out["duration"]
    # Each word starts where eSpeak NG says it does (its own event, shifted to the track).
    sentence = voiceover.normalise_text(SCRIPT["segments"][1]["narration"])
    speech = EspeakProvider("en-us").synthesize(sentence)
    lead, _ = voiceover.trim_silence(speech.samples, speech.sample_rate)
    events = [w.start - lead / speech.sample_rate for w in speech.words]
    track = [w["start"] for w in out["words"] if w["segment"] == "beat1"]
    offset = track[0] - events[0]
    assert np.allclose(np.array(track) - offset, events, atol=0.012)


def test_it_finds_words_in_audio_that_came_without_timings_within_80_ms():
    """An OpenAI-compatible voice gives no timings: measured against a voice that does (eSpeak NG
    en-gb, a different voice and speed from the en-us reference the aligner synthesises)."""
    voice = EspeakProvider("en-gb+f3", rate_wpm=150)
    errors = []
    for sentence in [
        "The Oslo-based lab's Fjord-2B model answers questions, summarises documents and transcribes speech.",
        "Weights and training code are published under the Apache 2.0 licence.",
        "Would you run AI on your own Pi? Tell us in the comments.",
    ]:
        speech = voice.synthesize(sentence)
        lead, tail = voiceover.trim_silence(speech.samples, speech.sample_rate)
        truth = [t - lead / speech.sample_rate for t in complete_starts(sentence, speech.words, speech.duration)]
        found = derive_starts(speech.samples[lead:tail], speech.sample_rate, sentence)
        assert len(found) == len(tokens(sentence))
        errors += [f - t for f, t in zip(found, truth, strict=True)]
    error = np.abs(errors)
    assert np.percentile(error, 90) <= 0.08, error
    assert error.mean() <= 0.05


def test_piper_times_its_words_from_its_phoneme_durations():
    from stages.providers.tts import PiperProvider, piper_available

    assert piper_available()
    sentence = "The Oslo-based lab's Fjord-2B model runs at about 9 tokens per second."
    speech = PiperProvider().synthesize(sentence)
    starts = complete_starts(sentence, speech.words, speech.duration)
    assert len(speech.words) >= len(tokens(sentence)) - 1  # "Fjord-2B" and "9" are read as several words
    assert starts is not None and starts == sorted(starts)
    # The first word starts where the sound does (an energy onset, independent of Piper).
    onset = speech_onsets(speech.samples, speech.sample_rate)[0]
    assert abs(starts[0] - onset) <= 0.08


@pytest.mark.slow
def test_captions_highlight_each_word_within_80_ms_of_the_voice(tmp_path, voiced):
    result = compose(tmp_path, voiced)
    report = result.output["qc"]
    assert report["passed"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["word sync (voice)"]["ok"] and checks["word sync (audio)"]["ok"]
    assert report["sync_voice_ms"]["max"] <= 80 and report["sync_audio_ms"]["max"] <= 80
    assert report["sync_audio_ms"]["count"] >= 4  # every sentence start was an onset to check
    # Look at the frames: the highlight colour is on screen from each word's start.
    video = result.ctx.work_dir / "video.mp4"
    words = voiced["upstream"]["voiceover"]["words"]
    for word in (words[0], words[len(words) // 2], words[-2]):
        assert yellow_pixels(frame_at(video, word["start"] + 0.05)[1150:1600]) > 300, word
    assert yellow_pixels(frame_at(video, 0.0)) == 0  # nothing before the first word


@pytest.mark.slow
def test_qc_catches_captions_that_run_late_by_listening_to_the_audio(tmp_path, voiced):
    """Word times 250 ms late agree with themselves (the voice check passes) but not with the
    speech onsets the energy detector finds in the voice track: QC fails the video."""
    late = dict(voiced["upstream"]["voiceover"])
    late["words"] = [dict(w, start=w["start"] + 0.25, end=w["end"] + 0.25) for w in late["words"]]
    with pytest.raises(PermanentStageError) as exc:
        compose(tmp_path, voiced, voiceover=late)
    assert "word sync (audio)" in exc.value.message
    assert "word sync (voice)" not in exc.value.message


# -- caption styles ---------------------------------------------------------------------------------
def test_caption_settings_are_validated_with_clear_errors():
    assert look_for({}).captions.style == "karaoke"
    assert look_for({"composition": {"captions": "phrase"}}).captions.style == "phrase"
    cases = {
        '"style"': {"captions": {"style": "bouncy"}},
        "not a colour": {"captions": {"highlight": "yellow"}},
        "outside 40-140": {"captions": {"size": 400}},
        "not a bundled font": {"captions": {"font": "../../etc/passwd"}},
        "unknown keys: colour": {"captions": {"colour": "#ffffff"}},
        '["aspect"]': {"aspect": "4:3"},
        '["transition"]': {"transition": "spin"},
        '["mood"]': {"music": {"mood": "sad"}},
    }
    for fragment, comp in cases.items():
        with pytest.raises(PermanentStageError) as exc:
            look_for({"composition": comp})
        assert fragment in exc.value.message, (fragment, exc.value.message)
        assert exc.value.hint  # what would be right
    style = look_for({"composition": {"captions": {"box": "none", "color": "#102030ff", "words": 2}}}).captions
    assert style.box is None and style.color == (16, 32, 48, 255) and style.words == 2


@pytest.mark.django_db
def test_a_theme_with_bad_caption_settings_does_not_save():
    from jobs.models import Theme

    theme = Theme(name="T", slug="t", settings={"composition": {"captions": {"position": "sideways"}}})
    with pytest.raises(ValidationError) as exc:
        theme.full_clean()
    assert "position" in str(exc.value) and "lower, middle, upper" in str(exc.value)
    theme.settings = {"composition": {"captions": {"position": "upper"}, "aspect": "1:1"}}
    theme.full_clean()


def _words(texts: list[str], sentence_breaks: set[int] = frozenset()) -> list[captions.Word]:
    out, t, sentence = [], 0.1, 0
    for i, text in enumerate(texts):
        if i in sentence_breaks:
            sentence += 1
            t += 0.3
        out.append(captions.Word(text, t, t + 0.3, "beat1", sentence))
        t += 0.3
    return out


def test_karaoke_shows_one_to_three_words_and_never_spans_a_sentence():
    words = _words(
        [
            "The",
            "new",
            "board",
            "runs",
            "small",
            "models",
            "offline.",
            "It",
            "costs",
            "eighty",
            "dollars,",
            "and",
            "ships",
            "in",
            "March.",
        ],
        {7},
    )
    zone = (75, 1220, 930, 1520)
    track = captions.plan(words, CaptionStyle(), zone, 10.0, 96)
    groups = [tuple(p.words) for p in track.pictures if p.words]
    assert all(1 <= len(g) <= 3 for g in groups)
    assert all(len({words[i].sentence for i in g}) == 1 for g in groups)
    assert not any(
        words[g[0]].text.startswith("ships") and len(g) > 1 and words[g[0] - 1].text.endswith(",") for g in groups
    )
    assert [w for g in dict.fromkeys(groups) for w in g] == list(range(len(words)))  # every word, once, in order
    # the highlight moves word by word, on the frame nearest each word's start
    highlights = {p.highlight: p.frame for p in track.pictures if p.highlight is not None}
    for i, word in enumerate(words):
        assert abs(highlights[i] / 30 - word.start) <= 1 / 60 + 1e-9
    assert track.size == 96  # one size for the whole video


def test_phrase_captions_are_two_lines_of_at_most_32_characters(tmp_path):
    text = "The Oslo-based lab's Fjord-2B model answers questions, summarises documents and transcribes speech without a network connection."
    words = _words(text.split())
    style = CaptionStyle(style="phrase", uppercase=False)
    zone = (75, 1220, 930, 1520)
    track = captions.plan(words, style, zone, 20.0, 64)
    shown = [p for p in track.pictures if p.words]
    assert len(shown) >= 2
    for picture in shown:
        assert 1 <= len(picture.lines) <= 2
        for line in picture.lines:
            assert len(" ".join(words[i].text.rstrip(",.") for i in line)) <= 32
    captions.render(track, style, zone, tmp_path)
    assert track.sizes == {track.size}
    assert all(box is None or qc._inside(box, zone) for box in track.boxes)
    assert captions.plan(words, CaptionStyle(style="none"), zone, 20.0, 64).pictures == []


# -- safe zones ---------------------------------------------------------------------------------------
def test_the_safe_zone_follows_the_platforms_and_the_aspect():
    assert Frame("9:16", 1080, 1920).safe_zone == (65, 130, 940, 1570)
    square = Frame("1:1", 1080, 1080).safe_zone  # letterboxed in the app: the right rail still covers it
    assert square[2] == 940 and square[0] == 65 and square[1] >= 54 and square[3] <= 1026
    wide = Frame("16:9", 1920, 1080).safe_zone
    assert wide[0] >= 96 and wide[2] <= 1671 and wide[1] == 54 and wide[3] == 1026


@pytest.mark.slow
def test_qc_fails_a_video_whose_card_text_enters_the_platform_ui(tmp_path, voiced):
    scenes = render_scenes(tmp_path / "scenes-bad")
    scenes["scenes"][2]["boxes"] = {"headline": [700, 600, 1000, 760]}  # into the right-hand action rail
    dirs = dict(voiced["dirs"], scene_generation=tmp_path / "scenes-bad")
    ctx = make_context(
        tmp_path, "composition", upstream=dict(voiced["upstream"], scene_generation=scenes), upstream_dirs=dirs
    )
    with pytest.raises(PermanentStageError) as exc:
        composition.run(ctx)
    assert "UI safe zone: beat2 headline at x" in exc.value.message


def test_every_card_box_and_caption_stays_in_the_zone_for_every_aspect(tmp_path):
    from stages.providers.cards import CardRenderer, CardSpec, Layout

    for aspect in ("9:16", "1:1", "16:9"):
        look = look_for({"composition": {"aspect": aspect}})
        frame = look.frame
        layout = Layout(frame.width, frame.height, frame.safe_zone, "lower")
        card = CardRenderer().render(
            CardSpec(
                "Fjord-2B · 9 tokens/s on an 8 GB board", 1, 5, "seed", label="Tech pulse", counter=True, layout=layout
            )
        )
        assert card.image.size == frame.size
        style = CardRenderer().style("seed", layout)
        motion = composition.motion_for(style, frame)
        shot = composition.Shot(
            image=Path("x"), segment="beat1", start=0, end=300, path=((0, 0), (1, 1)), scene={"boxes": card.boxes}
        )
        words = _words(["Early", "benchmarks", "show", "the", "NPU", "running", "small", "models", "fast"])
        track = captions.plan(words, look.captions, layout.caption_zone, 10.0, 96)
        captions.render(track, look.captions, layout.caption_zone, tmp_path / aspect.replace(":", "x"))
        assert qc.zone_violations([shot], motion, track, frame.safe_zone) == [], aspect


# -- the mix --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def voice_wav(voiced) -> tuple[Path, float]:
    out = voiced["upstream"]["voiceover"]
    return voiced["dirs"]["voiceover"] / out["audio"], out["duration"]


def test_the_mix_ducks_a_bed_and_lands_on_minus_14_lufs_under_minus_1_dbtp(tmp_path, voice_wav):
    voice, duration = voice_wav
    bed = music.bed_for(Music(mood="auto"), "neutral")
    assert bed.name == "pulse.opus"
    result = mix.mix(None, voice, duration, bed, -12.0, tmp_path)
    assert result.second_pass["normalization_type"] == "linear"  # one static gain, no pumping
    levels = media.measure_audio(result.audio)
    assert abs(levels.lufs - media.TARGET_LUFS) <= 1.0
    assert levels.true_peak <= -1.0
    under, ducking = qc.bed_under_voice(result.stems)
    assert under >= 12 and ducking > 1  # the bed sits well under the voice and dips while it speaks
    samples = qc.decode_audio(result.audio)
    assert qc.quietest_window(samples) > qc.DIGITAL_SILENCE_DB


def test_without_music_the_pauses_hold_room_tone_not_digital_silence(tmp_path, voice_wav):
    voice, duration = voice_wav
    result = mix.mix(None, voice, duration, None, -12.0, tmp_path)
    samples = qc.decode_audio(result.audio)
    assert -80 < qc.quietest_window(samples) < -50  # audible only as air
    assert abs(media.measure_audio(result.audio).lufs - media.TARGET_LUFS) <= 1.0


def test_digital_silence_is_found_in_a_pause_but_not_in_the_encoders_end_padding():
    """A pause of exact zeros inside the track is digital silence; the zeros an AAC stream ends
    with (padding to its 1024-sample frames, 70-110 ms) are not a pause: a window falling wholly in
    them failed QC on some durations (a clean-clone run)."""
    rate = 16000
    air = np.random.default_rng(3).normal(0, 10 ** (-60 / 20), 3 * rate).astype(np.float32)
    padded = np.concatenate([air, np.zeros(int(0.16 * rate), np.float32)])
    assert qc.quietest_window(padded, rate) > qc.DIGITAL_SILENCE_DB
    gap = air.copy()
    gap[rate : rate + int(0.12 * rate)] = 0.0
    assert qc.quietest_window(gap, rate) < qc.DIGITAL_SILENCE_DB
    assert qc.quietest_window(np.zeros(rate, np.float32), rate) < qc.DIGITAL_SILENCE_DB  # all silent


def test_the_bundled_beds_are_the_ones_the_synthesiser_made():
    for bed in music.BEDS.values():
        path = music.MUSIC_DIR / bed.file
        assert music.sha256(path) == bed.sha256, bed.file
        assert abs(media.probe(path).duration - bed.seconds) < 0.1
        assert abs(media.measure_audio(path).lufs - bed.lufs) <= 0.1  # the stored loudness the mix uses
    assert "CC0" in (music.MUSIC_DIR / "LICENSE.txt").read_text()
    assert music.bed_for(Music(mood="auto"), "serious").name == "calm.opus"
    assert music.bed_for(Music(mood="none"), "casual") is None


# -- no duplicated text -----------------------------------------------------------------------------------
def test_a_card_that_repeats_the_narration_is_a_duplicate_but_a_key_phrase_is_not():
    narration = "The Oslo-based lab's Fjord-2B model runs at about 9 tokens per second on an 8 GB Raspberry Pi 5."
    assert duplicates("This Raspberry story matters", "This Raspberry story matters.")
    assert duplicates("Runs at about 9 tokens per second", narration)
    assert duplicates("Share this", "Share this. Tell a friend.")  # a whole spoken sentence
    phrase = key_phrase(narration)
    assert phrase == "Fjord-2B · 9 tokens/s" and not duplicates(phrase, narration)
    assert not duplicates("Raspberry Pi 5", narration)


@pytest.mark.slow
def test_qc_fails_a_card_that_shows_the_sentence_being_spoken(tmp_path, voiced):
    scenes = render_scenes(tmp_path / "scenes-dup")
    scenes["scenes"][1]["text"] = SCRIPT["segments"][1]["narration"].rstrip(".")
    dirs = dict(voiced["dirs"], scene_generation=tmp_path / "scenes-dup")
    ctx = make_context(
        tmp_path, "composition", upstream=dict(voiced["upstream"], scene_generation=scenes), upstream_dirs=dirs
    )
    with pytest.raises(PermanentStageError) as exc:
        composition.run(ctx)
    assert "no duplicated text: beat1: card 'The new board runs small models offline' repeats" in exc.value.message


def test_scene_cards_replace_a_headline_that_repeats_the_narration(tmp_path):
    script = {
        "title": "Raspberry Pi 6 gets an AI chip",
        "segments": [
            {"id": "hook", "narration": "This Raspberry story matters.", "headline": "This Raspberry story matters"},
            {"id": "beat1", "narration": "It costs $80 and ships in March.", "headline": "It costs $80 and ships"},
            {"id": "beat2", "narration": "People like it.", "headline": "Loved online"},
            {"id": "cta", "narration": "Follow for more.", "headline": "Follow for more"},
        ],
    }
    ctx = make_context(tmp_path, "scene_generation", upstream={"script_generation": script})
    scenes = scene_generation.run(ctx).output["scenes"]
    texts = [s["text"] for s in scenes]
    assert texts[1] == "$80 · March" and texts[2] == "Loved online"
    for scene, segment in zip(scenes, script["segments"], strict=True):
        assert not duplicates(scene["text"], segment["narration"]) if scene["text"] else True
        assert "counter" not in scene["boxes"] and "footer" not in scene["boxes"]  # no "1/4", no slug


# -- the offline script ---------------------------------------------------------------------------------
NORDLYS = {
    "trend_id": 7,
    "title": "Nordlys Labs releases open-source AI model that runs entirely on a Raspberry Pi 5",
    "summary": (
        "The Oslo-based lab's Fjord-2B model answers questions, summarises documents and transcribes speech "
        "without a network connection, at about 9 tokens per second on an 8 GB Raspberry Pi 5. Weights and "
        "training code are published under the Apache 2.0 licence."
    ),
    "keywords": ["ai", "raspberry pi", "open source"],
    "source": "thecircuit",
    "angle": "breaking",
    "related": [{"title": "How we squeezed a 2B-parameter model onto a Raspberry Pi", "source": "planet-devtools"}],
}


@pytest.mark.parametrize("tone", ["neutral", "casual", "serious"])
def test_the_template_writer_never_cuts_a_sentence_mid_phrase(tone):
    script = TemplateWriter(tone=tone).write(NORDLYS, {"target_seconds": 30}, [])
    summary_sentences = re.split(r"(?<=\.) ", NORDLYS["summary"])
    for segment in script["segments"]:
        narration = segment["narration"]
        assert "thecircuit" not in narration.lower() and "planet-devtools" not in narration.lower()
        for source in summary_sentences:  # a summary sentence is spoken whole or up to a clause boundary
            head = " ".join(source.split()[:6])
            if head in narration:
                spoken = narration[narration.index(head) :].split(". ")[0].rstrip(".")
                assert source.rstrip(".").startswith(spoken)
                rest = source.rstrip(".")[len(spoken) :]
                assert rest == "" or rest.startswith(","), (spoken, rest)
        assert not duplicates(segment["headline"], narration), segment
    assert "Raspberry Pi 5" in script["hook"]  # a hook that names what the story is about
    assert "Raspberry Pi 5" in script["cta"]  # and a call to action about it
    assert "under the Apache 2.0." not in " ".join(s["narration"] for s in script["segments"])


def test_clause_fit_keeps_whole_sentences_or_stops_at_a_clause():
    sentence = "Weights and training code are published under the Apache 2.0 licence."
    assert clause_fit(sentence, 20) == sentence
    assert clause_fit(sentence, 8) == ""  # no clause boundary: never "…under the Apache 2.0."
    assert clause_fit("A year of free-threaded Python in production: what broke and what got faster", 10) == (
        "A year of free-threaded Python in production."
    )


def test_elevenlabs_words_start_where_its_character_alignment_says(tmp_path):
    from stages.tests.fakeserver import FakeServer
    from stages.tests.test_cloud_tts import EL_PATH, LONG, SENTENCES, char_times, ctx_for, el_reply

    with FakeServer() as srv:
        srv.route("POST", EL_PATH, [el_reply(s) for s in SENTENCES])
        out = voiceover.run(ctx_for(tmp_path, srv)).output
    assert out["word_timing"] == {"voice": len(SENTENCES), "derived": 0}
    beat = [w for w in out["words"] if w["segment"] == "beat1"]
    times = char_times(LONG)
    starts = [times[char] for char, _ in tokens(LONG)]
    assert [w["text"] for w in beat] == LONG.split()
    assert np.allclose([w["start"] - beat[0]["start"] for w in beat], np.array(starts) - starts[0], atol=0.002)


@pytest.mark.slow
@pytest.mark.parametrize("aspect,size", [("1:1", (1080, 1080)), ("16:9", (1920, 1080))])
def test_square_and_landscape_shorts_pass_the_same_qc(tmp_path, voiced, aspect, size):
    theme = {"settings": {"composition": {"aspect": aspect, "transition": "slide", "captions": {"style": "phrase"}}}}
    scene_ctx = make_context(tmp_path, "scene_generation", theme=theme, upstream={"script_generation": SCRIPT})
    scenes = scene_generation.run(scene_ctx).output
    assert {(s["width"], s["height"]) for s in scenes["scenes"]} == {size}
    ctx = make_context(
        tmp_path,
        "composition",
        theme=theme,
        upstream=dict(voiced["upstream"], scene_generation=scenes),
        upstream_dirs=dict(voiced["dirs"], scene_generation=scene_ctx.work_dir),
    )
    out = composition.run(ctx).output
    assert out["qc"]["passed"] is True and (out["qc"]["width"], out["qc"]["height"]) == size
    assert out["aspect"] == aspect and out["captions"]["style"] == "phrase" and out["transition"] == "slide"
    frame = frame_at(ctx.work_dir / "video.mp4", voiced["upstream"]["voiceover"]["words"][3]["start"] + 0.1, size)
    zone = look_for(theme["settings"]).frame.safe_zone
    white = np.argwhere(frame.min(axis=2) > 240)  # caption and card type: inside the zone
    assert white.size and white[:, 1].min() >= zone[0] and white[:, 1].max() < zone[2]
    assert white[:, 0].min() >= zone[1] and white[:, 0].max() < zone[3]


def test_when_the_peaks_leave_no_room_for_one_gain_loudnorm_limits_them(tmp_path, voice_wav):
    voice, duration = voice_wav
    result = mix.mix(None, voice, duration, None, -12.0, tmp_path, target_lufs=-7.0)  # far too loud for -1.5 dBTP
    assert result.second_pass["normalization_type"] == "dynamic"
    assert media.measure_audio(result.audio).true_peak <= -1.0
