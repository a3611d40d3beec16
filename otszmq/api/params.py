"""Query parameters and request bodies, checked once with an error that names the field."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Final, NamedTuple

import falcon

from otszmq.api.errors import bad_request

_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")
MAX_NAME: Final = 255
MAX_TEXT: Final = 1024
MAX_PER_PAGE: Final = 500
DEFAULT_PER_PAGE: Final = 50
MAX_PAGE: Final = 1_000_000


def checked_int(where: str, raw: str, low: int, high: int) -> int:
    """``raw`` as an int in [low, high]; a 400 naming ``where`` otherwise."""
    try:
        value = int(raw)
    except ValueError:
        bad_request(where, f"must be an integer, got {raw!r}")
    if not low <= value <= high:
        bad_request(where, f"must be between {low} and {high}, got {value}")
    return value


def int_param(req: falcon.Request, name: str, default: int, low: int, high: int) -> int:
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    return checked_int(name, raw, low, high)


def bool_param(req: falcon.Request, name: str, default: bool) -> bool:
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    text = raw.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return bad_request(name, f"must be true or false, got {raw!r}")


def page_params(req: falcon.Request) -> tuple[int, int]:
    """``page`` (from 1) and ``per_page`` (1-500): every paginated listing reads these two."""
    return (
        int_param(req, "page", 1, 1, MAX_PAGE),
        int_param(req, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE),
    )


def time_param(req: falcon.Request, name: str) -> datetime | None:
    """An ISO 8601 time (``2024-05-01T12:00:00Z``; no zone means UTC), timezone-aware UTC."""
    raw = req.get_param(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        bad_request(name, f"must be an ISO 8601 time such as 2024-05-01T12:00:00Z, got {raw!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class BoundingBox(NamedTuple):
    """West, south, east, north in degrees; ``west > east`` crosses the antimeridian."""

    west: float
    south: float
    east: float
    north: float


def bbox_param(req: falcon.Request, name: str = "bbox") -> BoundingBox | None:
    """``west,south,east,north`` (GeoJSON's order: lon,lat,lon,lat), in degrees."""
    raw = req.get_param(name)
    if raw is None or raw == "":
        return None
    why = "must be west,south,east,north in degrees (lon,lat,lon,lat)"
    parts = raw.split(",")
    if len(parts) != 4:
        bad_request(name, f"{why}, got {raw!r}")
    try:
        west, south, east, north = (float(part) for part in parts)
    except ValueError:
        bad_request(name, f"{why}, got {raw!r}")
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        bad_request(name, f"{why}, got {raw!r}")
    if not (-180.0 <= west <= 180.0 and -180.0 <= east <= 180.0):
        bad_request(name, f"longitudes must be between -180 and 180, got {raw!r}")
    if not -90.0 <= south <= north <= 90.0:
        bad_request(name, f"latitudes must satisfy -90 <= south <= north <= 90, got {raw!r}")
    return BoundingBox(west, south, east, north)


def text_param(req: falcon.Request, name: str, *, required: bool = False) -> str | None:
    raw = req.get_param(name)
    if raw is None or raw == "":
        if required:
            bad_request(name, "is required")
        return None
    if len(raw) > MAX_TEXT or has_control(raw):
        bad_request(name, f"must be at most {MAX_TEXT} printable characters")
    return raw


def sha256_value(field: str, raw: str | None) -> str:
    """A SHA-256 in lower-case hex; anything else (a path, say) is a 400."""
    if raw is None or not _SHA256.fullmatch(raw):
        bad_request(field, "must be a SHA-256 as 64 hexadecimal digits")
    return raw.lower()


def safe_name(field: str, raw: str | None) -> str:
    """A file name fit to show and to send back in Content-Disposition.

    Files are stored under their hash, never under this name; it is still refused if it could
    name another path (``..``, ``/``, ``\\``) or carries NUL or control characters, because
    clients save downloads under it.
    """
    if raw is None or raw.strip() == "":
        bad_request(field, "is required")
    if len(raw) > MAX_NAME:
        bad_request(field, f"must be at most {MAX_NAME} characters")
    if "/" in raw or "\\" in raw or ".." in raw:
        bad_request(field, "must be a plain file name (no '/', '\\' or '..')")
    if has_control(raw):
        bad_request(field, "must not contain NUL or control characters")
    return raw


def has_control(text: str) -> bool:
    return any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in text)
