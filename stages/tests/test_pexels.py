"""scene_generation with Pexels (photos and videos) against the local FakeServer."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from PIL import Image, ImageChops, ImageStat

from stages import media, scene_generation
from stages.base import PermanentStageError, TransientStageError
from stages.providers import pexels
from stages.providers.cards import CardRenderer, CardSpec
from stages.tests.fakeserver import FakeServer, Reply
from stages.tests.helpers import make_context
from stages.tests.test_scene_generation import SCRIPT, TOPIC

KEY = "pk-test-SECRET-4321"
SEARCH = "/v1/search"
VSEARCH = "/videos/search"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("PEXELS_API_KEY", raising=False)


def jpeg_bytes(size=(720, 1280), color=(200, 90, 40)) -> bytes:
    image = Image.new("RGB", size, color)
    for y in range(0, size[1], 40):  # some structure, so it is a real picture
        image.paste((20, 120, 200), (0, y, size[0], y + 12))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def png_bytes(size=(800, 1200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 160, 90)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def mp4_bytes(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("mp4") / "tiny.mp4"
    subprocess.run(
        [
            media.ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=360x640:rate=15:duration=2",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(out),
        ],
        check=True,
    )
    return out.read_bytes()


def photo(srv: FakeServer, pid: int, path: str, name: str = "Jane Doe") -> dict:
    return {
        "id": pid,
        "width": 3066,
        "height": 3968,
        "url": f"https://www.pexels.com/photo/raspberry-board-{pid}/",
        "photographer": name,
        "photographer_url": "https://www.pexels.com/@jane",
        "photographer_id": 1845331,
        "avg_color": "#374824",
        "src": {
            "original": srv.url(path),
            "large2x": srv.url(path) + "?auto=compress&cs=tinysrgb&dpr=2&h=650&w=940",
            "portrait": srv.url(path) + "?auto=compress&cs=tinysrgb&fit=crop&h=1200&w=800",
            "tiny": srv.url(path) + "?h=200",
        },
        "liked": False,
        "alt": "A single-board computer on a desk",
    }


def photos_payload(srv: FakeServer, *paths: str) -> dict:
    return {
        "page": 1,
        "per_page": 5,
        "total_results": 2345,
        "photos": [photo(srv, 1000 + i, p) for i, p in enumerate(paths)],
        "next_page": "https://api.pexels.com/v1/search/?page=2&per_page=5&query=pi",
    }


def videos_payload(srv: FakeServer) -> dict:
    return {
        "page": 1,
        "per_page": 5,
        "total_results": 20,
        "url": "https://www.pexels.com/search/videos/pi/",
        "videos": [
            {
                "id": 857251,
                "width": 1080,
                "height": 1920,
                "duration": 2,
                "url": "https://www.pexels.com/video/circuit-board-857251/",
                "image": "https://images.pexels.com/videos/857251/free-video-857251.jpg",
                "user": {"id": 1, "name": "Vid Maker", "url": "https://www.pexels.com/@vid"},
                "video_files": [
                    {
                        "id": 1,
                        "quality": "sd",
                        "file_type": "video/mp4",
                        "width": 640,
                        "height": 360,
                        "link": srv.url("/v/landscape.mp4"),
                    },
                    {
                        "id": 2,
                        "quality": "uhd",
                        "file_type": "video/mp4",
                        "width": 2160,
                        "height": 3840,
                        "link": srv.url("/v/uhd.mp4"),
                    },
                    {
                        "id": 3,
                        "quality": "hd",
                        "file_type": "video/mp4",
                        "width": 1080,
                        "height": 1920,
                        "fps": 25,
                        "link": srv.url("/v/hd.mp4"),
                    },
                    {
                        "id": 4,
                        "quality": "hd",
                        "file_type": "video/mp4",
                        "width": 720,
                        "height": 1280,
                        "link": srv.url("/v/hd720.mp4"),
                    },
                ],
                "video_pictures": [],
            }
        ],
    }


def ctx_for(tmp_path: Path, srv: FakeServer, *, providers=("pexels", "cards"), **conf):
    settings = {"providers": list(providers), "pexels": {"api_key": KEY, "base_url": srv.url(), "timeout": 2, **conf}}
    return make_context(
        tmp_path,
        "scene_generation",
        theme={"settings": {"scene_generation": settings}},
        upstream={"script_generation": SCRIPT, "trend_analysis": {"topic": TOPIC, "candidates": []}},
    )


def requests_to(srv: FakeServer, path: str) -> list:
    return [r for r in srv.requests if r.path == path]


def assert_scene_images(ctx, output) -> None:
    for scene in output["scenes"]:
        with Image.open(ctx.work_dir / scene["image"]) as image:
            assert image.size == (1080, 1920) and image.format == "PNG"


# -- success -------------------------------------------------------------------------------------
def test_photos_search_download_and_compose(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json=photos_payload(srv, "/p/one.jpeg", "/p/two.png")))
        srv.route("GET", "/p/one.jpeg", Reply(200, body=jpeg_bytes(), headers={"Content-Type": "image/jpeg"}))
        srv.route("GET", "/p/two.png", Reply(200, body=png_bytes(), headers={"Content-Type": "image/png"}))
        ctx = ctx_for(tmp_path, srv)
        out = scene_generation.run(ctx).output

    assert out["provider"] == "pexels" and out["provider_failures"] == []
    assert [s["source"] for s in out["scenes"]] == ["pexels"] * 6
    assert {s["pexels"]["id"] for s in out["scenes"][:2]} == {1000, 1001}  # a fresh hit before a repeat
    first = out["scenes"][0]
    assert first["pexels"]["photographer"] == "Jane Doe" and first["pexels"]["text"] == "Photo by Jane Doe on Pexels"
    assert first["pexels"]["url"].startswith("https://www.pexels.com/photo/") and first["query"]
    assert out["credits"] and "Jane Doe" in out["credits"][0]
    assert_scene_images(ctx, out)
    # The composed scene is the photo under the card text: far from the plain card of that segment.
    spec = CardSpec(
        headline=SCRIPT["segments"][0]["headline"],
        index=0,
        total=6,
        seed=TOPIC["title"],
        label="Tech pulse",
        footer="via Hacker News",
    )
    card = CardRenderer().render(spec).image.convert("RGB")
    with Image.open(ctx.work_dir / first["image"]) as image:
        diff = ImageStat.Stat(ImageChops.difference(image.convert("RGB"), card)).mean
    assert sum(diff) / 3 > 25
    search = requests_to(srv, SEARCH)[0]
    assert search.headers["authorization"] == KEY
    params = parse_qs(search.query)
    assert params["orientation"] == ["portrait"] and params["per_page"] == ["5"] and params["query"][0]
    # The crop the stage asks for, and no key sent to the file host.
    download = requests_to(srv, "/p/one.jpeg")[0]
    assert parse_qs(download.query)["w"] == ["1080"] and parse_qs(download.query)["h"] == ["1920"]
    assert "authorization" not in download.headers
    # Six segments, two files: each downloaded once, the rest from the cache.
    assert len(requests_to(srv, "/p/one.jpeg")) == 1 and len(requests_to(srv, "/p/two.png")) == 1
    assert out["style"]["text_box"]  # composition's pan limits still come with the scenes


@pytest.mark.parametrize(
    "aspect, orientation, size", [("16:9", "landscape", (1920, 1080)), ("1:1", "square", (1080, 1080))]
)
def test_a_wide_or_square_theme_searches_and_crops_for_its_frame(tmp_path, aspect, orientation, size):
    """The frame comes from the theme's composition aspect: the search asks for that orientation,
    the crop for that size, and the scenes fill that frame."""
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json=photos_payload(srv, "/p/one.jpeg", "/p/two.png")))
        srv.route("GET", "/p/one.jpeg", Reply(200, body=jpeg_bytes(), headers={"Content-Type": "image/jpeg"}))
        srv.route("GET", "/p/two.png", Reply(200, body=png_bytes(), headers={"Content-Type": "image/png"}))
        ctx = ctx_for(tmp_path, srv)
        ctx.theme["settings"]["composition"] = {"aspect": aspect}
        out = scene_generation.run(ctx).output
    assert parse_qs(requests_to(srv, SEARCH)[0].query)["orientation"] == [orientation]
    crop = parse_qs(requests_to(srv, "/p/one.jpeg")[0].query)
    assert (int(crop["w"][0]), int(crop["h"][0])) == size
    for scene in out["scenes"]:
        with Image.open(ctx.work_dir / scene["image"]) as image:
            assert image.size == size


def test_video_files_rank_the_frames_orientation_first():
    files = [
        {"width": 1080, "height": 1920, "quality": "hd"},
        {"width": 1280, "height": 720, "quality": "hd"},
        {"width": 3840, "height": 2160, "quality": "uhd"},
    ]
    ranked = sorted(files, key=lambda f: pexels._video_rank(f, (1920, 1080)))
    assert [(f["width"], f["height"]) for f in ranked] == [(1280, 720), (3840, 2160), (1080, 1920)]


def test_videos_pick_the_portrait_hd_file_and_keep_the_clip(tmp_path, mp4_bytes):
    with FakeServer() as srv:
        srv.route("GET", VSEARCH, Reply(200, json=videos_payload(srv)))
        srv.route("GET", "/v/hd.mp4", Reply(200, body=mp4_bytes, headers={"Content-Type": "video/mp4"}))
        ctx = ctx_for(tmp_path, srv, media="videos")
        result = scene_generation.run(ctx)
        out = result.output
    assert [s["source"] for s in out["scenes"]] == ["pexels"] * 6
    scene = out["scenes"][0]
    assert scene["pexels"]["media"] == "video" and scene["pexels"]["file"].endswith("/v/hd.mp4")
    assert scene["pexels"]["text"] == "Video by Vid Maker on Pexels"
    assert scene["clip"] == "clip-01.mp4" and scene["clip_seconds"] == pytest.approx(2.0, abs=0.1)
    assert "video" in media.probe(ctx.work_dir / scene["clip"]).streams
    # what composition draws over the playing clip: the photo cards' scrim and the card's text
    with Image.open(ctx.work_dir / scene["overlay"]) as layer:
        assert (layer.mode, layer.size) == ("RGBA", (1080, 1920))
        alpha = layer.getchannel("A")
        assert alpha.getpixel((540, 1850)) == round(255 * scene_generation.SCRIM)  # scrim only, near the bottom
        assert alpha.getextrema()[1] == 255  # the text is opaque
    clips = [a for a in result.artifacts if a.kind == "video"]
    assert [a.path for a in clips] == [f"clip-{i:02d}.mp4" for i in range(1, 7)]
    assert_scene_images(ctx, out)
    assert not list(ctx.work_dir.glob(".frame-*"))  # the extracted frames are not left behind
    assert [r.path for r in srv.requests if r.path.startswith("/v/")] == ["/v/hd.mp4"]
    assert requests_to(srv, VSEARCH)[0].path == "/videos/search"


def test_the_cache_prevents_a_second_download(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json=photos_payload(srv, "/p/one.jpeg")))
        srv.route("GET", "/p/one.jpeg", Reply(200, body=jpeg_bytes()))
        first = scene_generation.run(ctx_for(tmp_path / "a", srv)).output
        second = scene_generation.run(ctx_for(tmp_path / "b", srv)).output
    assert [s["source"] for s in first["scenes"] + second["scenes"]] == ["pexels"] * 12
    assert len(requests_to(srv, "/p/one.jpeg")) == 1
    cached = list((Path(pexels.settings.MEDIA_ROOT) / "cache" / "pexels").iterdir())
    assert len(cached) == 1 and len(cached[0].stem) == 64 and cached[0].suffix == ".jpeg"


# -- HTTP failures ---------------------------------------------------------------------------------
def test_a_short_429_retry_after_is_waited_then_succeeds(tmp_path):
    with FakeServer() as srv:
        ok = Reply(200, json=photos_payload(srv, "/p/one.jpeg"))
        srv.route(
            "GET", SEARCH, [Reply(429, json={"error": "Rate limit exceeded"}, headers={"Retry-After": "0.2"}), ok]
        )
        srv.route("GET", "/p/one.jpeg", Reply(200, body=jpeg_bytes()))
        out = scene_generation.run(ctx_for(tmp_path, srv)).output
    assert out["provider"] == "pexels" and out["provider_failures"] == []


def test_a_long_429_switches_pexels_off_and_cards_take_over(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(429, json={"error": "Rate limit exceeded"}, headers={"Retry-After": "3600"}))
        out = scene_generation.run(ctx_for(tmp_path, srv)).output
    assert [s["source"] for s in out["scenes"]] == ["card"] * 6 and out["provider"] == "cards"
    [failure] = out["provider_failures"]
    assert failure["provider"] == "pexels" and failure["kind"] == "transient" and "429" in failure["error"]
    assert failure["segment"] == "hook"
    assert len(requests_to(srv, SEARCH)) == 1  # not asked again for every segment


def test_a_500_then_success(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, [Reply(500, body=b"oops"), Reply(200, json=photos_payload(srv, "/p/one.jpeg"))])
        srv.route("GET", "/p/one.jpeg", Reply(200, body=jpeg_bytes()))
        out = scene_generation.run(ctx_for(tmp_path, srv)).output
    assert out["provider"] == "pexels" and out["scenes"][0]["source"] == "pexels"
    assert len(requests_to(srv, SEARCH)) == 6 + 1  # one retry, then one search per segment


def test_a_401_is_permanent_with_a_hint_and_no_key(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(401, json={"error": f"bad key {KEY}"}))
        ctx = ctx_for(tmp_path, srv)
        source = pexels.PexelsSource(ctx)
        with pytest.raises(PermanentStageError) as exc:
            source.search("raspberry pi")
        source.close()
        assert "PEXELS_API_KEY" in exc.value.hint and '["pexels"]["api_key"]' in exc.value.hint
        assert KEY not in exc.value.message
        assert len(requests_to(srv, SEARCH)) == 1

        out = scene_generation.run(ctx_for(tmp_path / "stage", srv)).output
    assert [s["source"] for s in out["scenes"]] == ["card"] * 6
    [failure] = out["provider_failures"]
    assert failure["kind"] == "permanent" and "401" in failure["error"] and "PEXELS_API_KEY" in failure["hint"]
    assert KEY not in str(out)


def test_without_a_card_fallback_the_stage_fails(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(401, json={"error": "bad key"}))
        with pytest.raises(PermanentStageError, match="every scene_generation provider failed for hook"):
            scene_generation.run(ctx_for(tmp_path, srv, providers=["pexels"]))


def test_a_missing_key_names_both_places(tmp_path):
    with FakeServer() as srv:
        ctx = ctx_for(tmp_path, srv, api_key="")
        out = scene_generation.run(ctx).output
    [failure] = out["provider_failures"]
    assert "no API key" in failure["error"] and "PEXELS_API_KEY" in failure["hint"]
    assert srv.requests == []


def test_the_key_can_come_from_the_environment(tmp_path, monkeypatch, settings):
    monkeypatch.setenv("PEXELS_API_KEY", "pk-from-env-999")
    settings.TRENDREEL_PROVIDER_HOSTS = ["127.0.0.1"]  # the environment's key may go to this (test) host
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json={"photos": []}))
        out = scene_generation.run(ctx_for(tmp_path, srv, api_key="")).output
    assert requests_to(srv, SEARCH)[0].headers["authorization"] == "pk-from-env-999"
    # No hit for a segment is not an API failure: every segment still asks, and falls to a card.
    assert len(out["provider_failures"]) == 6 and all("has no photos" in f["error"] for f in out["provider_failures"])
    assert [s["source"] for s in out["scenes"]] == ["card"] * 6


def test_the_environments_key_never_goes_to_a_host_the_theme_chose(tmp_path, monkeypatch):
    monkeypatch.setenv("PEXELS_API_KEY", "pk-from-env-999")
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json={"photos": []}))
        out = scene_generation.run(ctx_for(tmp_path, srv, api_key="")).output
    assert srv.requests == []
    assert [s["source"] for s in out["scenes"]] == ["card"] * 6
    [failure] = out["provider_failures"]
    assert "PEXELS_API_KEY from the environment is only sent to api.pexels.com" in failure["error"]
    assert "TRENDREEL_PROVIDER_HOSTS" in failure["hint"]


def test_a_timeout_is_transient(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json={"photos": []}, delay=1.0))
        ctx = ctx_for(tmp_path, srv, timeout=0.2, attempts=1)
        source = pexels.PexelsSource(ctx)
        with pytest.raises(TransientStageError, match="timed out"):
            source.search("raspberry pi")
        source.close()
        out = scene_generation.run(ctx_for(tmp_path / "stage", srv, timeout=0.2, attempts=1)).output
    assert out["provider_failures"][0]["kind"] == "transient" and out["provider"] == "cards"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(200, body=b'{"photos": [', headers={"Content-Type": "application/json"}), "not JSON"),
        (Reply(200, json={"error": "unexpected"}), "without a 'photos' list"),
    ],
)
def test_a_malformed_answer_is_permanent(tmp_path, reply, message):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, reply)
        ctx = ctx_for(tmp_path, srv)
        source = pexels.PexelsSource(ctx)
        with pytest.raises(PermanentStageError, match=message):
            source.search("raspberry pi")
        source.close()
        out = scene_generation.run(ctx_for(tmp_path / "stage", srv)).output
    assert out["provider"] == "cards" and message in out["provider_failures"][0]["error"]


# -- bad files -------------------------------------------------------------------------------------
def test_a_file_that_is_no_image_is_rejected_and_the_next_hit_used(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json=photos_payload(srv, "/p/fake.jpeg", "/p/good.jpeg")))
        srv.route(
            "GET",
            "/p/fake.jpeg",
            Reply(200, body=b"<html>Access denied</html>", headers={"Content-Type": "image/jpeg"}),
        )
        srv.route("GET", "/p/good.jpeg", Reply(200, body=jpeg_bytes()))
        ctx = ctx_for(tmp_path, srv)
        out = scene_generation.run(ctx).output
    assert [s["source"] for s in out["scenes"]] == ["pexels"] * 6
    assert {s["pexels"]["id"] for s in out["scenes"]} == {1001}
    cached = list((Path(pexels.settings.MEDIA_ROOT) / "cache" / "pexels").iterdir())
    assert len(cached) == 1  # the rejected download left nothing behind (no .part either)


def test_when_every_file_is_bad_the_segment_gets_a_card(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", VSEARCH, Reply(200, json=videos_payload(srv)))
        for path in ("/v/hd.mp4", "/v/hd720.mp4", "/v/uhd.mp4", "/v/landscape.mp4"):
            srv.route("GET", path, Reply(200, body=b"\x00\x00\x00\x18ftypmp42 but truncated"))
        ctx = ctx_for(tmp_path, srv, media="videos")
        out = scene_generation.run(ctx).output
    assert [s["source"] for s in out["scenes"]] == ["card"] * 6
    assert all(f["provider"] == "pexels" and "no usable videos" in f["error"] for f in out["provider_failures"])
    assert not any("clip" in s for s in out["scenes"])
    assert not list(ctx.work_dir.glob("clip-*"))
    # A hit that failed is not downloaded again for the next segments.
    assert sorted(r.path for r in srv.requests if r.path.startswith("/v/")) == [
        "/v/hd.mp4",
        "/v/hd720.mp4",
        "/v/uhd.mp4",
    ]
    assert list((Path(pexels.settings.MEDIA_ROOT) / "cache" / "pexels").iterdir()) == []


def test_a_file_bigger_than_the_cap_is_refused(tmp_path):
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json=photos_payload(srv, "/p/huge.jpeg")))
        srv.route("GET", "/p/huge.jpeg", Reply(200, body=jpeg_bytes(size=(2000, 3000)) + b"\0" * 200_000))
        out = scene_generation.run(ctx_for(tmp_path, srv, max_mb=0.1)).output
    assert out["scenes"][0]["source"] == "card" and "larger than" in out["provider_failures"][0]["error"]


# -- pieces ----------------------------------------------------------------------------------------
def test_the_query_is_the_headline_plus_topic_keywords():
    assert pexels.query_for("Raspberry Pi 6 launches", ["raspberry pi", "ai"]) == "raspberry launches raspberry pi ai"
    assert pexels.query_for("Follow for more", ["ai"]) == "ai"
    assert len(pexels.query_for("word " * 80, ["x" * 200])) <= 100


def test_video_files_rank_portrait_hd_closest_first():
    files = [
        {"width": 640, "height": 360, "quality": "sd"},
        {"width": 2160, "height": 3840, "quality": "uhd"},
        {"width": 720, "height": 1280, "quality": "hd"},
        {"width": 1080, "height": 1920, "quality": "hd"},
    ]
    ranked = sorted(files, key=pexels._video_rank)
    assert [(f["width"], f["height"]) for f in ranked] == [(1080, 1920), (720, 1280), (2160, 3840), (640, 360)]


def test_the_cache_keeps_to_its_size_least_recently_used_first(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    now = 1_000_000.0
    for name, age in [("a.jpeg", 3000), ("b.jpeg", 5000), ("c.mp4", 2000), ("d.jpeg", 60)]:
        (folder / name).write_bytes(b"x" * 1000)
        os.utime(folder / name, (now - age, now - age))
    (folder / ".dl-abandoned.mp4.part").write_bytes(b"x" * 10)  # a download killed long ago
    os.utime(folder / ".dl-abandoned.mp4.part", (now - 7200, now - 7200))
    (folder / ".dl-in-flight.mp4.part").write_bytes(b"x" * 10)  # another worker downloading now
    os.utime(folder / ".dl-in-flight.mp4.part", (now - 5, now - 5))

    removed = pexels.prune_cache(folder, 2000, now=now)
    assert sorted(p.name for p in removed) == [".dl-abandoned.mp4.part", "a.jpeg", "b.jpeg"]
    assert sorted(p.name for p in folder.iterdir()) == [".dl-in-flight.mp4.part", "c.mp4", "d.jpeg"]
    # what a running job may be about to open (used in the last 10 minutes) is never evicted
    assert [p.name for p in pexels.prune_cache(folder, 0, now=now)] == ["c.mp4"]
    assert (folder / "d.jpeg").exists()


def test_a_run_prunes_the_cache_and_marks_what_it_used(tmp_path, settings):
    settings.TRENDREEL_CACHE_MB = 0  # keep nothing that is not in use
    cache = Path(settings.MEDIA_ROOT) / "cache" / "pexels"
    cache.mkdir(parents=True, exist_ok=True)
    stale = cache / ("0" * 64 + ".jpeg")
    stale.write_bytes(jpeg_bytes())
    os.utime(stale, (time.time() - 86400, time.time() - 86400))
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json=photos_payload(srv, "/p/one.jpeg")))
        srv.route("GET", "/p/one.jpeg", Reply(200, body=jpeg_bytes()))
        scene_generation.run(ctx_for(tmp_path / "a", srv))
        [kept] = list(cache.iterdir())
        assert not stale.exists()
        os.utime(kept, (time.time() - 86400, time.time() - 86400))
        scene_generation.run(ctx_for(tmp_path / "b", srv))  # a cache hit
    assert time.time() - kept.stat().st_mtime < 60  # used again: recent, so kept
    assert len(requests_to(srv, "/p/one.jpeg")) == 1


def test_another_pick_is_the_next_photo_not_used_before(tmp_path):
    paths = [f"/p/{c}.jpeg" for c in "abcdefg"]  # 7 hits for 6 scenes: one never used
    with FakeServer() as srv:
        srv.route("GET", SEARCH, Reply(200, json=photos_payload(srv, *paths)))
        for i, path in enumerate(paths):
            body = jpeg_bytes(color=(30 * i, 90, 40))
            srv.route("GET", path, Reply(200, body=body, headers={"Content-Type": "image/jpeg"}))
        first = ctx_for(tmp_path / "first", srv)
        base = scene_generation.run(first).output
        assert [s["pexels"]["id"] for s in base["scenes"]] == [1000, 1001, 1002, 1003, 1004, 1005]
        picks = []
        for run in ("pick", "pick-again"):
            ctx = ctx_for(tmp_path / run, srv)
            ctx.overrides = {"segments": {"2": {"scene": {"take": 1, "pick": 1}}}}
            ctx.base_output, ctx.base_dir = base, first.work_dir
            picks.append(scene_generation.run(ctx).output)

    for out in picks:  # the same pick for the same pick number
        assert [s["pexels"]["id"] for s in out["scenes"]] == [1000, 1006, 1002, 1003, 1004, 1005]
        assert [s["reused"] for s in out["scenes"]] == [True, False, True, True, True, True]
        assert out["scenes"][1]["pexels"]["photographer"] == "Jane Doe"
        assert any("raspberry-board-1006" in credit for credit in out["credits"])
