"""Data packages over Marti: upload, existence check, download, search, metadata.

ATAK's send flow (reference/peers.md §3): ``GET missionquery?hash=`` (404 means upload) →
``POST missionupload?hash=&filename=&creatorUid=`` (multipart, part ``assetfile``) →
``PUT metadata/{hash}/tool`` → a ``b-f-t-r`` CoT naming the returned URL → the recipient's
``GET content?hash=``. Every parameter is checked before the body is read, and the file is
renamed into place only once whole, within the limit and matching ``hash``: a refused request
stores nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import falcon

from otszmq.api.errors import bad_request, not_found
from otszmq.api.marti import tak_time
from otszmq.api.packages import HashMismatch, PackageStore, StoredFile, UploadTooLarge, read_chunks
from otszmq.api.params import MAX_TEXT, safe_name, sha256_value, text_param
from otszmq.store.models import DataPackage

DEFAULT_MIME: Final = "application/x-zip-compressed"  # TAK Server's default for packages
TOOLS: Final = frozenset({"public", "private"})
# A multipart body is the file plus its part headers and boundaries: this much over the file
# limit is still worth reading to find out.
MULTIPART_SLACK: Final = 64 * 1024
MAX_JSON_BODY: Final = 64 * 1024
MAX_KEYWORDS: Final = 100


def content_url(req: falcon.Request, sha256: str) -> str:
    return f"{req.prefix}/Marti/sync/content?hash={sha256}"


def keywords_of(row: DataPackage) -> list[str]:
    """``DataPackage.keywords`` holds a JSON array of strings (the API writes it)."""
    if not row.keywords:
        return []
    try:
        value = json.loads(row.keywords)
    except ValueError:
        return [row.keywords]  # written by hand as plain text
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def search_item(row: DataPackage) -> dict[str, Any]:
    """One package as TAK Server's search servlet lists it."""
    return {
        "UID": row.hash,
        "Name": row.name or row.filename,
        "Hash": row.hash,
        "PrimaryKey": row.get_id(),  # type: ignore[no-untyped-call]  # peewee stubs
        "SubmissionDateTime": tak_time(row.submission_time),
        "SubmissionUser": row.submission_user or "",
        "CreatorUid": row.creator_uid or "",
        "Keywords": keywords_of(row),
        "MIMEType": row.mime_type or DEFAULT_MIME,
        "Size": row.size,
        "Tool": row.tool or "public",
        "Expiration": -1 if row.expiration is None else int(row.expiration.timestamp()),
    }


def _package(sha256: str) -> DataPackage:
    row = DataPackage.get_or_none(DataPackage.hash == sha256)
    if row is None:
        not_found(f"no data package with hash {sha256}")
    return row


class MissionUpload:
    def __init__(self, store: PackageStore) -> None:
        self._store = store

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raw_hash = req.get_param("hash")
        expected = sha256_value("hash", raw_hash) if raw_hash else None
        raw_name = req.get_param("filename")
        name = safe_name("filename", raw_name) if raw_name is not None else None
        creator = text_param(req, "creatorUid")
        mime = text_param(req, "mimetype") or DEFAULT_MIME
        keyword = text_param(req, "keyword") or text_param(req, "keywords") or "missionpackage"
        tool = text_param(req, "tool") or "public"
        if tool not in TOOLS:
            bad_request("tool", f"must be public or private, got {tool!r}")
        limit = self._store.max_bytes + MULTIPART_SLACK
        if req.content_length is not None and req.content_length > limit:
            self._too_large()
        try:
            if req.content_type and req.content_type.startswith(falcon.MEDIA_MULTIPART):
                name, stored = self._save_multipart(req, name, expected)
            else:
                # A raw body (curl --data-binary, some scripts); the name must come in the query.
                name = safe_name("filename", raw_name)
                stored = self._store.save(read_chunks(req.bounded_stream), expected)
        except UploadTooLarge:
            self._too_large()
        except HashMismatch as exc:
            bad_request("hash", str(exc))
        now = datetime.now(UTC)
        fields = {
            DataPackage.filename: name, DataPackage.name: name, DataPackage.creator_uid: creator,
            DataPackage.keywords: json.dumps([keyword]), DataPackage.mime_type: mime,
            DataPackage.size: stored.size, DataPackage.tool: tool,
        }
        # A re-upload of the same bytes updates the row it already has.
        DataPackage.insert(
            {**fields, DataPackage.hash: stored.sha256, DataPackage.submission_time: now}
        ).on_conflict(conflict_target=[DataPackage.hash], update=fields).execute()
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = content_url(req, stored.sha256)

    def _save_multipart(
        self, req: falcon.Request, name: str | None, expected: str | None
    ) -> tuple[str, StoredFile]:
        form = req.get_media()
        for part in form:
            # ATAK names its part "assetfile"; a client that names it otherwise still sends
            # one file part.
            if part.name != "assetfile" and part.filename is None:
                continue
            name = name or safe_name("filename", part.filename)
            return name, self._store.save(read_chunks(part.stream), expected)
        return bad_request("assetfile", "the multipart body has no file part")

    def _too_large(self) -> None:
        raise falcon.HTTPContentTooLarge(
            title="Upload Too Large",
            description=f"a data package may be at most {self._store.max_bytes} bytes",
        )


class Content:
    """``GET|HEAD /Marti/sync/content?hash=`` (or ``uid=``, which is the hash for packages)."""

    def __init__(self, store: PackageStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.send(req, resp, self._hash(req), body=True)

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.send(req, resp, self._hash(req), body=False)

    @staticmethod
    def _hash(req: falcon.Request) -> str:
        if req.get_param("hash") is not None:
            return sha256_value("hash", req.get_param("hash"))
        return sha256_value("hash", req.get_param("uid"))

    def send(self, req: falcon.Request, resp: falcon.Response, sha256: str, *, body: bool) -> None:
        row = _package(sha256)
        try:
            size = self._store.path(sha256).stat().st_size
        except FileNotFoundError:
            not_found(f"data package {sha256} has no file (deleted from the data dir?)")
        resp.content_type = row.mime_type or DEFAULT_MIME
        resp.downloadable_as = row.filename
        resp.content_length = size
        if body:
            # Streamed: gunicorn hands the file to sendfile() via wsgi.file_wrapper.
            resp.stream = self._store.open(sha256)


class MissionQuery:
    def __init__(self, store: PackageStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sha256 = sha256_value("hash", req.get_param("hash"))
        _package(sha256)
        if not self._store.exists(sha256):
            not_found(f"data package {sha256} has no file")
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = content_url(req, sha256)


class Search:
    """``GET /Marti/sync/search``: ``keywords`` (substring) and ``tool`` filters."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = DataPackage.select().order_by(DataPackage.submission_time.desc())
        keywords = text_param(req, "keywords")
        if keywords:
            query = query.where(DataPackage.keywords.contains(keywords))
        tool = text_param(req, "tool")
        if tool:
            query = query.where(DataPackage.tool == tool)
        results = [search_item(row) for row in query]
        resp.media = {"resultCount": len(results), "results": results}


class MetadataTool:
    """``GET`` downloads the package (as OTS does); ``PUT`` with a text body sets its tool."""

    def __init__(self, content: Content) -> None:
        self._content = content

    def on_get(self, req: falcon.Request, resp: falcon.Response, hash: str) -> None:
        self._content.send(req, resp, sha256_value("hash", hash), body=True)

    def on_put(self, req: falcon.Request, resp: falcon.Response, hash: str) -> None:
        sha256 = sha256_value("hash", hash)
        tool = req.bounded_stream.read(MAX_TEXT).decode("utf-8", "replace").strip()
        if tool not in TOOLS:
            bad_request("body", f"must be public or private, got {tool[:40]!r}")
        row = _package(sha256)
        row.tool = tool
        row.save()
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = content_url(req, sha256)


class MetadataKeywords:
    """``PUT`` a JSON array of strings: the package's keywords, replaced."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, hash: str) -> None:
        sha256 = sha256_value("hash", hash)
        if req.content_length is not None and req.content_length > MAX_JSON_BODY:
            raise falcon.HTTPContentTooLarge(
                title="Body Too Large", description=f"at most {MAX_JSON_BODY} bytes"
            )
        value = req.get_media()  # malformed JSON: falcon's 400, serialized as ours
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            bad_request("body", "must be a JSON array of strings")
        if len(value) > MAX_KEYWORDS or any(len(item) > MAX_TEXT for item in value):
            bad_request("body", f"at most {MAX_KEYWORDS} keywords of {MAX_TEXT} characters")
        row = _package(sha256)
        row.keywords = json.dumps(value)
        row.save()
        resp.media = search_item(row)
