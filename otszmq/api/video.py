"""Video feeds: ``/Marti/vcm`` (Video Manager v1, XML) and ``/Marti/api/video`` (v2, JSON).

Both views read and write the store's ``VideoStream`` table, which CoT ``__video`` details
also fill, so a feed shared over CoT, posted by ATAK's "send video alias" or added by CloudTAK
shows in all three places. Every listing is scoped to the caller's channels; a posted feed is
written to the caller's IN groups.

Shapes (reference/integrations.md A.6; TAK Server's VideoConnectionManager(V2), goatak's
model, node-tak ``video.ts``):

- v1: ``<videoConnections>`` of ``<feed>`` elements with child elements ``uid, active, alias,
  type, address, preferredMacAddress, port, roverPort, ignoreEmbeddedKLV, path, protocol,
  source, timeout, buffer, rtspReliable``. ``POST`` the same document adds feeds (``action=add``,
  the default); ``DELETE ?id=`` removes one.
- v2: ``{"videoConnections": [VideoConnection]}``; a VideoConnection is ``{uuid, active, alias,
  thumbnail, classification, feeds: [Feed]}`` and a Feed carries ``url`` plus TAK Server's
  string-typed options. iTAK refuses the whole list over one odd value (CloudTAK #1347), so
  string fields are always strings and uuids are the stored uid (stable across calls).

NOTE: otszmq keeps one stream per uid, so a v2 connection holds exactly one feed; a POST with
several is refused rather than silently truncated. NOTE: a feed's URL may carry credentials;
it is served as stored to every caller who reads the feed's channels, as TAK Server does.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import falcon
from lxml import etree

from otszmq.api.caller import Caller
from otszmq.api.errors import bad_request, not_found
from otszmq.api.params import MAX_NAME, checked_int, has_control, text_param
from otszmq.api.scope import caller_of, visible
from otszmq.api.xmlbody import read_limited, read_xml_body
from otszmq.store.groups import decode_groups, encode_groups
from otszmq.store.models import VideoStream

MAX_FEEDS: Final = 1000
MAX_URL: Final = 2048
MAX_JSON_BODY: Final = 256 * 1024
_PROTOCOL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}")
DEFAULT_TIMEOUT_MS: Final = 5000  # ATAK's networkTimeout default
Row = dict[str, Any]


# -- one stream's parts ---------------------------------------------------------------------


def _parts(row: VideoStream) -> tuple[str, str, int, str]:
    """protocol, address, port (-1: none) and path of a stream, from its columns or its URL.

    A stream from an older ATAK's ``__video@url`` has only the URL; v1 clients need the parts.
    """
    if row.protocol and row.address:
        return str(row.protocol), str(row.address), _int(row.port, -1), str(row.path or "")
    if row.url:
        split = urlsplit(str(row.url))
        try:
            port = split.port if split.port is not None else -1
        except ValueError:
            port = -1
        path = split.path + (f"?{split.query}" if split.query else "")
        if split.scheme and split.hostname:
            return split.scheme, split.hostname, port, path
        return "raw", str(row.url), -1, ""
    protocol, address = str(row.protocol or "raw"), str(row.address or "")
    return protocol, address, _int(row.port, -1), str(row.path or "")


def _int(value: Any, default: int) -> int:
    return default if value is None else int(value)


def stream_url(row: VideoStream) -> str:
    """The playable URL: the stored one, else TAK Server's v1 rule (``protocol://`` unless
    ``raw``, the address, ``:port`` unless -1, the path with a ``/`` ensured)."""
    if row.url:
        return str(row.url)
    protocol, address, port, path = _parts(row)
    if protocol == "raw":
        return address
    suffix = f":{port}" if port >= 0 else ""
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{protocol}://{address}{suffix}{path}"


# -- v1 XML -----------------------------------------------------------------------------------


def feed_element(row: VideoStream) -> etree._Element:
    protocol, address, port, path = _parts(row)
    feed = etree.Element("feed")
    values = (
        ("uid", row.uid), ("active", "true"), ("alias", row.name or row.uid), ("type", "VIDEO"),
        ("address", address), ("preferredMacAddress", ""), ("port", str(port)),
        ("roverPort", str(_int(row.rover_port, -1))),
        ("ignoreEmbeddedKLV", "true" if row.ignore_klv else "false"),
        ("path", path), ("protocol", protocol), ("source", ""),
        ("timeout", str(_int(row.network_timeout, DEFAULT_TIMEOUT_MS))),
        ("buffer", str(_int(row.buffer_time, -1))),
        ("rtspReliable", "1" if row.rtsp_reliable else "0"),
    )
    for name, value in values:
        etree.SubElement(feed, name).text = value
    return feed


def _text(feed: etree._Element, name: str) -> str | None:
    child = feed.find(name)
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()


def _checked_text(where: str, value: str | None, limit: int) -> str | None:
    if value is not None and (len(value) > limit or has_control(value)):
        bad_request(where, f"must be at most {limit} printable characters")
    return value


def _checked_int(where: str, value: str | None, low: int, high: int) -> int | None:
    return None if value is None else checked_int(where, value, low, high)


def _checked_bool(where: str, value: str | None) -> bool | None:
    if value is None:
        return None
    text = value.lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    return bad_request(where, f"must be true, false, 1 or 0, got {value!r}")


def _checked_uid(where: str, value: str | None) -> str:
    if value is None:
        return str(uuid.uuid4())
    if len(value) > MAX_NAME or has_control(value) or "/" in value:
        bad_request(where, f"must be at most {MAX_NAME} printable characters without '/'")
    return value


def _checked_protocol(where: str, value: str | None) -> str | None:
    if value is not None and not _PROTOCOL.fullmatch(value):
        bad_request(where, f"must be a URL scheme such as rtsp, srt or raw, got {value!r}")
    return value.lower() if value else None


def feed_row(feed: etree._Element, index: int) -> Row:
    """One ``<feed>`` as VideoStream columns; a 400 names the first bad field."""
    where = f"feed[{index}]"
    row: Row = {
        "uid": _checked_uid(f"{where}.uid", _text(feed, "uid")),
        "name": _checked_text(f"{where}.alias", _text(feed, "alias"), MAX_NAME),
        "protocol": _checked_protocol(f"{where}.protocol", _text(feed, "protocol")),
        "address": _checked_text(f"{where}.address", _text(feed, "address"), MAX_URL),
        "port": _checked_int(f"{where}.port", _text(feed, "port"), -1, 65535),
        "path": _checked_text(f"{where}.path", _text(feed, "path"), MAX_URL),
        "rover_port": _checked_int(f"{where}.roverPort", _text(feed, "roverPort"), -1, 65535),
        "ignore_klv": _checked_bool(f"{where}.ignoreEmbeddedKLV",
                                    _text(feed, "ignoreEmbeddedKLV")),
        "rtsp_reliable": _checked_bool(f"{where}.rtspReliable", _text(feed, "rtspReliable")),
        "network_timeout": _checked_int(f"{where}.timeout", _text(feed, "timeout"),
                                        -1, 3_600_000),
        "buffer_time": _checked_int(f"{where}.buffer", _text(feed, "buffer"), -1, 3_600_000),
    }
    if not row["address"]:
        bad_request(f"{where}.address", "is required")
    protocol = row["protocol"] or "raw"
    row["protocol"] = protocol
    row["url"] = stream_url(VideoStream(**row))
    if len(row["url"]) > MAX_URL:
        bad_request(f"{where}.address", f"the feed's URL must be at most {MAX_URL} characters")
    return row


# -- v2 JSON ----------------------------------------------------------------------------------


def feed_json(row: VideoStream) -> dict[str, Any]:
    return {
        "uuid": row.uid, "active": True, "alias": row.name or row.uid, "url": stream_url(row),
        "order": None, "macAddress": "", "roverPort": str(_int(row.rover_port, -1)),
        "ignoreEmbeddedKLV": "true" if row.ignore_klv else "false", "source": None,
        "networkTimeout": str(_int(row.network_timeout, DEFAULT_TIMEOUT_MS)),
        "bufferTime": str(_int(row.buffer_time, -1)),
        "rtspReliable": "1" if row.rtsp_reliable else "0",
        "thumbnail": None, "classification": None, "latitude": None, "longitude": None,
        "fov": None, "heading": None, "range": None, "width": None, "height": None,
        "bitrate": None,
    }


def connection_json(row: VideoStream) -> dict[str, Any]:
    return {
        "uuid": row.uid, "active": True, "alias": row.name or row.uid,
        "thumbnail": None, "classification": None, "feeds": [feed_json(row)],
    }


def _url_row(where: str, url: Any) -> Row:
    if not isinstance(url, str) or not url.strip():
        bad_request(where, "must be a URL such as rtsp://host:8554/path")
    url = url.strip()
    if len(url) > MAX_URL or has_control(url):
        bad_request(where, f"must be at most {MAX_URL} printable characters")
    split = urlsplit(url)
    try:
        port = split.port
    except ValueError:
        bad_request(where, f"has an invalid port: {url!r}")
    if not _PROTOCOL.fullmatch(split.scheme or "") or not split.hostname:
        bad_request(where, f"must be scheme://host[:port][/path], got {url!r}")
    return {
        "protocol": split.scheme.lower(), "address": split.hostname,
        "port": port if port is not None else -1,
        "path": split.path + (f"?{split.query}" if split.query else ""), "url": url,
    }


def connection_row(body: Any, where: str, uid: str | None = None) -> Row:
    """One v2 VideoConnection as VideoStream columns (``uid`` from the path wins)."""
    if not isinstance(body, dict):
        bad_request(where, "must be an object with alias and feeds")
    feeds = body.get("feeds")
    if not isinstance(feeds, list) or len(feeds) != 1 or not isinstance(feeds[0], dict):
        bad_request(f"{where}.feeds", "must be a list of exactly one feed object "
                    "(otszmq keeps one stream per connection)")
    feed = feeds[0]
    alias = body.get("alias", feed.get("alias"))
    if alias is not None and not isinstance(alias, str):
        bad_request(f"{where}.alias", f"must be a string, got {alias!r}")
    raw_uid = uid if uid is not None else body.get("uuid")
    if raw_uid is not None and not isinstance(raw_uid, str):
        bad_request(f"{where}.uuid", f"must be a string, got {raw_uid!r}")
    row: Row = {
        "uid": _checked_uid(f"{where}.uuid", raw_uid or None),
        "name": _checked_text(f"{where}.alias", alias, MAX_NAME),
        **_url_row(f"{where}.feeds[0].url", feed.get("url")),
    }
    return row


def _json_body(req: falcon.Request) -> Any:
    raw = read_limited(req, MAX_JSON_BODY)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        bad_request("body", f"not valid JSON: {exc}")


# -- storing ---------------------------------------------------------------------------------


def _visible_row(caller: Caller, uid: str) -> VideoStream | None:
    query = VideoStream.select().where(VideoStream.uid == uid)
    row: VideoStream | None = visible(query, VideoStream.groups, caller).first()
    return row


def _write_groups(req: falcon.Request, caller: Caller) -> str | None:
    """The channels posted feeds go to: ``?group=`` (each one the caller writes to), else
    the caller's IN groups."""
    asked = req.get_param_as_list("group") or []
    for name in asked:
        if not caller.admin and name not in caller.groups_in:
            raise falcon.HTTPForbidden(
                title="Forbidden", description=f"group {name!r} is not one you write to")
    return encode_groups(asked or caller.groups_in)


def save_streams(caller: Caller, rows: list[Row], groups: str | None) -> None:
    """Upsert the rows, all or none; 403 if a uid is taken by a feed the caller cannot see
    (posting must not take over another channel's feed)."""
    now = datetime.now(UTC)
    database = VideoStream._meta.database
    with database.atomic():
        for row in rows:
            existing = VideoStream.get_or_none(VideoStream.uid == row["uid"])
            taken = existing is not None and not caller.may_read(
                frozenset(decode_groups(existing.groups)))
            if taken:
                raise falcon.HTTPForbidden(
                    title="Forbidden",
                    description=f"feed uid {row['uid']!r} belongs to channels you do not read")
            fields = {**row, "time": now, "groups": groups, "sender_uid": None}
            for column in ("rover_port", "ignore_klv", "rtsp_reliable", "network_timeout",
                           "buffer_time"):
                fields.setdefault(column, None)
            if existing is None:
                VideoStream.insert(fields).execute()
            else:
                VideoStream.update(fields).where(VideoStream.uid == row["uid"]).execute()


def _delete(caller: Caller, uid: str) -> None:
    row = _visible_row(caller, uid)
    if row is None:
        not_found(f"no video feed with uid {uid!r} in a channel you read")
    VideoStream.delete().where(VideoStream.uid == row.uid).execute()


def _listing(caller: Caller) -> list[VideoStream]:
    query = VideoStream.select().order_by(VideoStream.name, VideoStream.uid)
    return list(visible(query, VideoStream.groups, caller))


# -- routes ---------------------------------------------------------------------------------


class VideoConnectionManager:
    """``/Marti/vcm``: GET the feeds as XML, POST ``<videoConnections>`` to add, DELETE ?id=."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        root = etree.Element("videoConnections")
        for row in _listing(caller_of(req)):
            root.append(feed_element(row))
        resp.content_type = "text/xml"
        resp.text = etree.tostring(root, encoding="unicode", xml_declaration=False)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        action = text_param(req, "action") or "add"
        if action != "add":
            bad_request("action", f"only add is supported, got {action!r}")
        caller = caller_of(req)
        root = read_xml_body(req, "videoConnections")
        feeds = root.findall("feed")
        if not feeds:
            bad_request("body", "<videoConnections> holds no <feed>")
        if len(feeds) > MAX_FEEDS:
            bad_request("body", f"at most {MAX_FEEDS} feeds, got {len(feeds)}")
        rows = [feed_row(feed, index) for index, feed in enumerate(feeds)]
        save_streams(caller, rows, _write_groups(req, caller))
        resp.status = falcon.HTTP_200

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        uid = text_param(req, "id", required=True)
        assert uid is not None
        _delete(caller_of(req), uid)


class VideoList:
    """``/Marti/api/video``: GET ``{"videoConnections": [...]}`` (``?protocol=`` keeps feeds
    whose URL starts with it), POST the same shape to add."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        protocol = text_param(req, "protocol")
        rows = _listing(caller_of(req))
        if protocol:
            rows = [row for row in rows if stream_url(row).lower().startswith(protocol.lower())]
        resp.media = {"videoConnections": [connection_json(row) for row in rows]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = caller_of(req)
        body = _json_body(req)
        connections = body.get("videoConnections") if isinstance(body, dict) else None
        if not isinstance(connections, list) or not connections:
            bad_request("body", 'must be {"videoConnections": [VideoConnection, ...]}')
        if len(connections) > MAX_FEEDS:
            bad_request("videoConnections", f"at most {MAX_FEEDS}, got {len(connections)}")
        rows = [connection_row(item, f"videoConnections[{index}]")
                for index, item in enumerate(connections)]
        save_streams(caller, rows, _write_groups(req, caller))
        resp.status = falcon.HTTP_200


class VideoItem:
    """``/Marti/api/video/{uid}``: GET one connection, PUT to replace it, DELETE."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, uid: str) -> None:
        row = _visible_row(caller_of(req), uid)
        if row is None:
            not_found(f"no video feed with uid {uid!r} in a channel you read")
        resp.media = connection_json(row)

    def on_put(self, req: falcon.Request, resp: falcon.Response, uid: str) -> None:
        caller = caller_of(req)
        row = connection_row(_json_body(req), "body", uid=uid)
        save_streams(caller, [row], _write_groups(req, caller))
        resp.status = falcon.HTTP_200

    def on_delete(self, req: falcon.Request, resp: falcon.Response, uid: str) -> None:
        _delete(caller_of(req), uid)
