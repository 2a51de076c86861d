"""Stateful fakes of the video platforms on a ``FakeServer``: each follows its API's documented flow,
answers and limits, so a publisher is tested against the protocol, not against a script of replies.

* ``FakeTikTok``: Content Posting API direct post (creator info, init with FILE_UPLOAD and the chunk
  rules, sequential chunk PUTs with Content-Range, status fetch with uploaded_bytes), the per-minute
  rate limits and a daily posting cap, the token refresh and the Display API's video query.
* ``FakeInstagram``: Graph API Reels (a resumable media container, the rupload upload, container
  status, media_publish, the publishing limit, the caption limits), token exchange and media insights.
* ``FakeYouTube``: the resumable upload (session, 308 + Range, status query) plus videos.list
  statistics and an Analytics API report.

Every fake keeps what it received (``posts`` / ``containers`` / ``uploads``) and takes injected
answers per step (``fake.fail["init"].append(Reply(...))``), served before the documented ones.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs

from stages.tests.fakeserver import FakeServer, Reply, Seen

MB = 1024 * 1024


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeTikTok:
    """https://developers.tiktok.com/doc/content-posting-api-reference-direct-post and friends."""

    MIN_CHUNK, MAX_CHUNK, MAX_LAST, MAX_CHUNKS = 5 * MB, 64 * MB, 128 * MB, 1000
    PER_MINUTE = {"creator_info": 20, "init": 6, "status": 30}

    def __init__(
        self,
        srv: FakeServer,
        *,
        token: str = "act.tiktok-test",
        privacy_options: tuple[str, ...] = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"),
        max_duration: int = 600,
        processing_polls: int = 1,
        daily_cap: int = 15,
    ) -> None:
        self.srv = srv
        self.tokens = {token}
        self.refresh_tokens = {"rft.tiktok-test"}
        self.privacy_options = list(privacy_options)
        self.max_duration = max_duration
        self.processing_polls = processing_polls
        self.daily_cap = daily_cap
        self.posts: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, dict[str, int]] = {}  # post id -> counts the video query reports
        self.fail: dict[str, list[Reply]] = defaultdict(list)
        self.hits: dict[str, list[float]] = defaultdict(list)
        self._ids = itertools.count(1)
        srv.route("POST", "/v2/oauth/token/", self.token_endpoint)
        srv.route("POST", "/v2/post/publish/creator_info/query/", self.creator_info)
        srv.route("POST", "/v2/post/publish/video/init/", self.init)
        srv.route("PUT", "/upload/", self.put)
        srv.route("POST", "/v2/post/publish/status/fetch/", self.status)
        srv.route("POST", "/v2/video/query/", self.video_query)

    # -- plumbing ---------------------------------------------------------------------------
    @staticmethod
    def answer(status: int, data: Any = None, code: str = "ok", message: str = "", **headers: str) -> Reply:
        return Reply(
            status,
            json={"data": data or {}, "error": {"code": code, "message": message, "log_id": "20261203FAKE"}},
            headers=headers,
        )

    def gate(self, seen: Seen, step: str) -> Reply | None:
        """Injected answers first, then the bearer token, then the per-minute rate limit."""
        if self.fail[step]:
            return self.fail[step].pop(0)
        auth = seen.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return self.answer(401, code="access_token_invalid", message="The access token is invalid or not found.")
        limit = self.PER_MINUTE.get(step)
        if limit:
            now = time.monotonic()
            recent = [t for t in self.hits[step] if t > now - 60]
            if len(recent) >= limit:
                return self.answer(429, code="rate_limit_exceeded", message="Rate limit exceeded.")
            self.hits[step] = [*recent, now]
        return None

    # -- OAuth ------------------------------------------------------------------------------
    def token_endpoint(self, seen: Seen) -> Reply:
        if self.fail["token"]:
            return self.fail["token"].pop(0)
        form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.refresh_tokens:
            return Reply(400, json={"error": "invalid_grant", "error_description": "Refresh token is invalid."})
        if not form.get("client_key") or not form.get("client_secret"):
            return Reply(400, json={"error": "invalid_client", "error_description": "Client key or secret missing."})
        token = f"act.refreshed-{next(self._ids)}"
        self.tokens.add(token)
        return Reply(
            200,
            json={
                "access_token": token,
                "expires_in": 86400,
                "open_id": "open-1",
                "refresh_expires_in": 31536000,
                "refresh_token": form["refresh_token"],
                "scope": "video.publish,video.list",
                "token_type": "Bearer",
            },
        )

    # -- Content Posting API ----------------------------------------------------------------
    def creator_info(self, seen: Seen) -> Reply:
        refused = self.gate(seen, "creator_info")
        if refused:
            return refused
        return self.answer(
            200,
            {
                "creator_avatar_url": "https://p16.tiktokcdn.example/avatar.jpg",
                "creator_username": "trendreel",
                "creator_nickname": "Trendreel",
                "privacy_level_options": self.privacy_options,
                "comment_disabled": False,
                "duet_disabled": True,
                "stitch_disabled": False,
                "max_video_post_duration_sec": self.max_duration,
            },
        )

    def init(self, seen: Seen) -> Reply:
        refused = self.gate(seen, "init")
        if refused:
            return refused
        body = seen.json() or {}
        post, source = body.get("post_info") or {}, body.get("source_info") or {}
        title = post.get("title", "")
        if not isinstance(title, str) or _utf16(title) > 2200:
            return self.answer(400, code="invalid_params", message="title is longer than 2200 runes")
        if post.get("privacy_level") not in self.privacy_options:
            return self.answer(403, code="privacy_level_option_mismatch", message="privacy_level is not an option")
        if source.get("source") != "FILE_UPLOAD":
            return self.answer(400, code="invalid_params", message="source must be FILE_UPLOAD here")
        size, chunk, count = source.get("video_size"), source.get("chunk_size"), source.get("total_chunk_count")
        if not all(isinstance(v, int) and v > 0 for v in (size, chunk, count)):
            return self.answer(400, code="invalid_params", message="video_size, chunk_size, total_chunk_count")
        if size < self.MIN_CHUNK:
            ok = chunk == size and count == 1
        else:
            last = size - (count - 1) * chunk
            ok = (
                self.MIN_CHUNK <= chunk <= self.MAX_CHUNK
                and count == size // chunk
                and 1 <= count <= self.MAX_CHUNKS
                and last <= self.MAX_LAST
            )
        if not ok:
            return self.answer(400, code="invalid_params", message="chunk_size/total_chunk_count break the rules")
        if sum(1 for p in self.posts.values() if p["status"] != "FAILED") >= self.daily_cap:
            return self.answer(403, code="spam_risk_too_many_posts", message="The daily post cap is reached.")
        n = next(self._ids)
        publish_id = f"v_pub_file~v2-1.{7000 + n}"
        self.posts[publish_id] = {
            "n": n,
            "post_info": post,
            "size": size,
            "chunk": chunk,
            "count": count,
            "data": bytearray(),
            "status": "PROCESSING_UPLOAD",
            "polls": self.processing_polls,
            "expired": False,
            "fail_reason": None,
            "post_id": None,
        }
        return self.answer(
            200, {"publish_id": publish_id, "upload_url": self.srv.url(f"/upload/?upload_id={n}&upload_token=t{n}")}
        )

    def _post_by_upload(self, seen: Seen) -> dict[str, Any] | None:
        upload_id = parse_qs(seen.query).get("upload_id", [""])[0]
        return next((p for p in self.posts.values() if str(p["n"]) == upload_id), None)

    def put(self, seen: Seen) -> Reply:
        if self.fail["upload"]:
            return self.fail["upload"].pop(0)
        post = self._post_by_upload(seen)
        if post is None or post["expired"]:
            return Reply(404, body=b"upload url expired or unknown")
        if "authorization" in seen.headers:
            return Reply(400, body=b"the upload URL takes no token")
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", seen.headers.get("content-range", ""))
        if not m or seen.headers.get("content-type") != "video/mp4":
            return Reply(400, body=b"Content-Range and Content-Type: video/mp4 are required")
        start, end, total = (int(g) for g in m.groups())
        index = start // post["chunk"] if post["count"] > 1 else 0
        expected_end = post["size"] - 1 if index == post["count"] - 1 else start + post["chunk"] - 1
        if (
            total != post["size"]
            or start != len(post["data"])  # chunks go in order, each from where the last one ended
            or start != index * post["chunk"]
            or end != expected_end
            or len(seen.body) != end - start + 1
        ):
            return Reply(416, body=b"Content-Range does not match the next chunk")
        post["data"] += seen.body
        if len(post["data"]) < post["size"]:
            return Reply(206)
        return Reply(201)

    def status(self, seen: Seen) -> Reply:
        refused = self.gate(seen, "status")
        if refused:
            return refused
        post = self.posts.get((seen.json() or {}).get("publish_id"))
        if post is None:
            return self.answer(400, code="invalid_params", message="unknown publish_id")
        whole = len(post["data"]) == post["size"]
        if whole and post["status"] == "PROCESSING_UPLOAD":
            if post["fail_reason"]:
                post["status"] = "FAILED"
            elif post["polls"] > 0:
                post["polls"] -= 1
            else:
                post["status"] = "PUBLISH_COMPLETE"
                if post["post_info"].get("privacy_level") == "PUBLIC_TO_EVERYONE":
                    post["post_id"] = str(7_300_000_000_000_000_000 + post["n"])
                    self.videos[post["post_id"]] = {"view_count": 0, "like_count": 0, "comment_count": 0}
        data: dict[str, Any] = {"status": post["status"], "uploaded_bytes": len(post["data"])}
        if post["status"] == "FAILED":
            data["fail_reason"] = post["fail_reason"]
        if post["status"] == "PUBLISH_COMPLETE":
            data["publicaly_available_post_id"] = [int(post["post_id"])] if post["post_id"] else []
        return self.answer(200, data)

    # -- Display API --------------------------------------------------------------------------
    def video_query(self, seen: Seen) -> Reply:
        refused = self.gate(seen, "video_query")
        if refused:
            return refused
        fields = parse_qs(seen.query).get("fields", [""])[0].split(",")
        ids = ((seen.json() or {}).get("filters") or {}).get("video_ids") or []
        if not 1 <= len(ids) <= 20:
            return self.answer(400, code="invalid_params", message="video_ids takes 1 to 20 ids")
        videos = [
            {k: v for k, v in {"id": vid, **self.videos[vid]}.items() if k in fields}
            for vid in ids
            if vid in self.videos
        ]
        return self.answer(200, {"videos": videos, "cursor": 0, "has_more": False})


class FakeInstagram:
    """https://developers.facebook.com/documentation/instagram-platform/content-publishing/resumable-uploads
    and the IG User media / media_publish / content_publishing_limit / IG Container / insights references."""

    def __init__(
        self,
        srv: FakeServer,
        *,
        user_id: str = "17841400000000001",
        token: str = "EAAG-instagram-test",
        version: str = "v21.0",
        processing_polls: int = 1,
        quota_total: int = 50,
    ) -> None:
        self.srv = srv
        self.user_id = user_id
        self.tokens = {token}
        self.version = version
        self.processing_polls = processing_polls
        self.quota_total = quota_total
        self.containers: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, list[Reply]] = defaultdict(list)
        self._ids = itertools.count(1)
        srv.fallback = self.route

    @staticmethod
    def error(status: int, code: int, message: str, subcode: int | None = None, **headers: str) -> Reply:
        error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Fake"}
        if subcode is not None:
            error["error_subcode"] = subcode
        return Reply(status, json={"error": error}, headers=headers)

    def _token(self, seen: Seen) -> str:
        auth = seen.headers.get("authorization", "")
        for prefix in ("OAuth ", "Bearer "):
            if auth.startswith(prefix):
                return auth[len(prefix) :]
        return parse_qs(seen.query).get("access_token", [""])[0]

    def route(self, seen: Seen) -> Reply | None:
        parts = [p for p in seen.path.split("/") if p]
        if parts[:1] == ["ig-api-upload"]:
            return self.rupload(seen, parts)
        if not parts or parts[0] != self.version:
            return None
        parts = parts[1:]
        step = {
            ("POST", "media"): "create",
            ("POST", "media_publish"): "publish",
            ("GET", "content_publishing_limit"): "limit",
            ("GET", "insights"): "insights",
            ("GET", "media"): "list",
        }.get((seen.method, parts[-1] if len(parts) > 1 else ""), "read")
        if parts == ["oauth", "access_token"]:
            step = "exchange"
        if self.fail[step]:
            return self.fail[step].pop(0)
        if step == "exchange":
            return self.exchange(seen)
        if self._token(seen) not in self.tokens:
            return self.error(400, 190, "Error validating access token: Session has expired.", 463)
        params = {k: v[0] for k, v in parse_qs(seen.query).items()}
        params.update({k: v[0] for k, v in parse_qs(seen.body.decode(errors="replace")).items()})
        if step in ("create", "publish", "limit", "list") and parts[0] != self.user_id:
            return self.error(400, 100, "Unsupported request: object does not exist.", 33)
        return getattr(self, step)(parts, params)

    def exchange(self, seen: Seen) -> Reply:
        params = {k: v[0] for k, v in parse_qs(seen.query).items()}
        if params.get("grant_type") != "fb_exchange_token" or params.get("fb_exchange_token") not in self.tokens:
            return self.error(400, 190, "Invalid OAuth access token.")
        if not params.get("client_id") or not params.get("client_secret"):
            return self.error(400, 101, "Missing client_id parameter.")
        token = f"EAAG-exchanged-{next(self._ids)}"
        self.tokens.add(token)
        return Reply(200, json={"access_token": token, "token_type": "bearer", "expires_in": 5183944})

    def create(self, parts: list[str], params: dict[str, str]) -> Reply:
        if params.get("media_type") != "REELS" or params.get("upload_type") != "resumable":
            return self.error(400, 100, "media_type=REELS and upload_type=resumable expected here")
        caption = params.get("caption", "")
        if len(caption) > 2200:
            return self.error(400, 100, "The caption is longer than 2200 characters.", 2207010)
        if len(re.findall(r"(?<!\w)#\w", caption)) > 30 or len(re.findall(r"(?<!\w)@\w", caption)) > 20:
            return self.error(400, 100, "The caption has more than 30 hashtags or 20 mentions.", 2207010)
        cid = str(17_900_000_000_000_000 + next(self._ids))
        self.containers[cid] = {
            "caption": caption,
            "share_to_feed": params.get("share_to_feed"),
            "size": None,
            "data": b"",
            "status_code": "IN_PROGRESS",
            "uploaded": False,
            "polls": self.processing_polls,
            "error": None,
            "media_id": None,
        }
        return Reply(200, json={"id": cid, "uri": self.srv.url(f"/ig-api-upload/{self.version}/{cid}")})

    def rupload(self, seen: Seen, parts: list[str]) -> Reply:
        if self.fail["upload"]:
            return self.fail["upload"].pop(0)
        container = self.containers.get(parts[-1]) if len(parts) == 3 and parts[1] == self.version else None
        if seen.method != "POST" or container is None:
            return Reply(404, json={"debug_info": {"retriable": False, "type": "NotFound", "message": "no container"}})
        if seen.headers.get("authorization", "") not in {f"OAuth {t}" for t in self.tokens}:
            return Reply(401, json={"debug_info": {"retriable": False, "type": "AuthError", "message": "bad token"}})
        offset, size = seen.headers.get("offset", ""), seen.headers.get("file_size", "")
        if not offset.isdigit() or not size.isdigit() or int(offset) + len(seen.body) != int(size):
            return Reply(
                400, json={"debug_info": {"retriable": False, "type": "BadRequest", "message": "offset/file_size"}}
            )
        container["data"] = container["data"][: int(offset)] + seen.body
        container["size"] = int(size)
        container["uploaded"] = True
        return Reply(200, json={"success": True, "message": "Upload successful."})

    def read(self, parts: list[str], params: dict[str, str]) -> Reply:
        if parts[0] in self.containers:
            c = self.containers[parts[0]]
            if c["status_code"] == "IN_PROGRESS" and c["uploaded"]:
                if c["error"]:
                    c["status_code"] = "ERROR"
                elif c["polls"] > 0:
                    c["polls"] -= 1
                else:
                    c["status_code"] = "FINISHED"
            answer = {"id": parts[0], "status_code": c["status_code"]}
            if "status" in params.get("fields", ""):
                answer["status"] = c["error"] or ("Finished: Media has been uploaded" if c["uploaded"] else "")
            return Reply(200, json=answer)
        if parts[0] in self.media:
            m = self.media[parts[0]]
            fields = params.get("fields", "id").split(",")
            return Reply(200, json={k: v for k, v in {"id": parts[0], **m}.items() if k in fields or k == "id"})
        return self.error(400, 100, "Unsupported get request: object does not exist.", 33)

    def publish(self, parts: list[str], params: dict[str, str]) -> Reply:
        c = self.containers.get(params.get("creation_id", ""))
        if c is None:
            return self.error(400, 100, "Invalid parameter: creation_id.")
        if c["status_code"] == "PUBLISHED":
            return self.error(400, 9007, "The media has already been published.", 2207006)
        if c["status_code"] != "FINISHED":
            return self.error(400, 9007, "Media ID is not available: the media is not ready.", 2207027)
        if self.published_today() >= self.quota_total:
            return self.error(403, 9, "Application request limit reached: 50 API posts in 24 hours.", 2207042)
        media_id = str(18_000_000_000_000_000 + next(self._ids))
        c["status_code"], c["media_id"] = "PUBLISHED", media_id
        self.media[media_id] = {
            "caption": c["caption"],
            "permalink": f"https://www.instagram.com/reel/C{media_id[-8:]}/",
            "shortcode": f"C{media_id[-8:]}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime()),
            "media_product_type": "REELS",
            "insights": {"views": 0, "likes": 0, "comments": 0, "shares": 0, "ig_reels_avg_watch_time": 0},
        }
        return Reply(200, json={"id": media_id})

    def published_today(self) -> int:
        return sum(1 for c in self.containers.values() if c["status_code"] == "PUBLISHED")

    def limit(self, parts: list[str], params: dict[str, str]) -> Reply:
        return Reply(
            200,
            json={
                "data": [
                    {
                        "config": {"quota_total": self.quota_total, "quota_duration": 86400},
                        "quota_usage": self.published_today(),
                    }
                ]
            },
        )

    def list(self, parts: list[str], params: dict[str, str]) -> Reply:
        fields = params.get("fields", "id").split(",")
        items = [
            {k: v for k, v in {"id": mid, **m}.items() if k in fields or k == "id"}
            for mid, m in reversed(list(self.media.items()))
        ]
        return Reply(200, json={"data": items[: int(params.get("limit", "25"))]})

    def insights(self, parts: list[str], params: dict[str, str]) -> Reply:
        m = self.media.get(parts[0])
        if m is None:
            return self.error(400, 100, "Unsupported get request.", 33)
        wanted = params.get("metric", "").split(",")
        unknown = [w for w in wanted if w not in m["insights"]]
        if unknown:
            return self.error(400, 100, f"(#100) metric[0] must be one of the following values: {unknown}")
        return Reply(
            200,
            json={
                "data": [
                    {
                        "name": w,
                        "period": "lifetime",
                        "values": [{"value": m["insights"][w]}],
                        "id": f"{parts[0]}/insights/{w}/lifetime",
                    }
                    for w in wanted
                ]
            },
        )


class FakeYouTube:
    """https://developers.google.com/youtube/v3/guides/using_resumable_upload_protocol, videos.list
    statistics and the YouTube Analytics API's reports.query."""

    START = "/upload/youtube/v3/videos"

    def __init__(self, srv: FakeServer, *, token: str = "ya29.youtube-test") -> None:
        self.srv = srv
        self.tokens = {token}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, list[Reply]] = defaultdict(list)
        self._ids = itertools.count(1)
        srv.route("POST", self.START, self.start)
        srv.route("GET", "/youtube/v3/videos", self.videos_list)
        srv.route("GET", "/v2/reports", self.report)
        srv.fallback = self.put

    def _authorised(self, seen: Seen) -> bool:
        return seen.headers.get("authorization", "").removeprefix("Bearer ") in self.tokens

    @staticmethod
    def error(status: int, reason: str, message: str = "") -> Reply:
        return Reply(
            status, json={"error": {"code": status, "message": message or reason, "errors": [{"reason": reason}]}}
        )

    def start(self, seen: Seen) -> Reply:
        if self.fail["start"]:
            return self.fail["start"].pop(0)
        if not self._authorised(seen):
            return self.error(401, "authError", "Invalid Credentials")
        n = next(self._ids)
        self.sessions[str(n)] = {
            "size": int(seen.headers.get("x-upload-content-length", "0")),
            "data": b"",
            "body": seen.json(),
            "video_id": None,
        }
        return Reply(200, headers={"Location": self.srv.url(f"/upload/youtube/v3/videos/session?upload_id={n}")})

    def put(self, seen: Seen) -> Reply | None:
        if seen.method != "PUT" or seen.path != "/upload/youtube/v3/videos/session":
            return None
        if self.fail["upload"]:
            return self.fail["upload"].pop(0)
        session = self.sessions.get(parse_qs(seen.query).get("upload_id", [""])[0])
        if session is None:
            return Reply(404)
        spec = seen.headers.get("content-range", "")
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", spec)
        if m:
            start, _end, _total = (int(g) for g in m.groups())
            if start == len(session["data"]):
                session["data"] += seen.body
        if len(session["data"]) >= session["size"]:
            if session["video_id"] is None:
                session["video_id"] = f"vid{len(self.videos) + 1:08d}"[-11:]
                self.videos[session["video_id"]] = {
                    "statistics": {"viewCount": "0", "likeCount": "0", "commentCount": "0"},
                    "analytics": {"shares": 0, "averageViewDuration": 0},
                    "status": session["body"].get("status", {}),
                }
            status = session["body"].get("status", {})
            return Reply(
                200,
                json={
                    "kind": "youtube#video",
                    "id": session["video_id"],
                    "status": {"uploadStatus": "uploaded", "privacyStatus": status.get("privacyStatus")},
                },
            )
        if not session["data"]:
            return Reply(308)
        return Reply(308, headers={"Range": f"bytes=0-{len(session['data']) - 1}"})

    def videos_list(self, seen: Seen) -> Reply:
        if self.fail["videos"]:
            return self.fail["videos"].pop(0)
        if not self._authorised(seen):
            return self.error(401, "authError")
        q = parse_qs(seen.query)
        ids = q.get("id", [""])[0].split(",")
        if len(ids) > 50:
            return self.error(400, "invalidFilters", "at most 50 ids")
        items = [
            {"kind": "youtube#video", "id": v, "statistics": self.videos[v]["statistics"]}
            for v in ids
            if v in self.videos
        ]
        return Reply(200, json={"kind": "youtube#videoListResponse", "items": items})

    def report(self, seen: Seen) -> Reply:
        if self.fail["analytics"]:
            return self.fail["analytics"].pop(0)
        if not self._authorised(seen):
            return self.error(401, "authError")
        q = {k: v[0] for k, v in parse_qs(seen.query).items()}
        metrics = q.get("metrics", "").split(",")
        ids = q.get("filters", "").removeprefix("video==").split(",")
        headers = [{"name": "video", "columnType": "DIMENSION", "dataType": "STRING"}] + [
            {"name": m, "columnType": "METRIC", "dataType": "INTEGER"} for m in metrics
        ]
        rows = [[v, *(self.videos[v]["analytics"].get(m, 0) for m in metrics)] for v in ids if v in self.videos]
        return Reply(200, json={"kind": "youtubeAnalytics#resultTable", "columnHeaders": headers, "rows": rows})
