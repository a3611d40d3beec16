"""JSON request bodies of the admin API, checked field by field with an error naming the field.

A body is read whole up to a small bound (admin requests are tiny); fields are taken out of it
one by one, and whatever is left over is refused, so a misspelt field is a 400, not a silent
no-op.
"""

from __future__ import annotations

import json
from typing import Any, Final

import falcon

from otszmq.api.errors import bad_request

MAX_BODY_BYTES: Final = 64 << 10
MAX_FIELD: Final = 1024
MAX_LIST: Final = 1000


def json_object(req: falcon.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 (413 when too large) otherwise."""
    if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(
            title="Body Too Large",
            description=f"body: at most {MAX_BODY_BYTES} bytes, got {req.content_length}")
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(
            title="Body Too Large", description=f"body: at most {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        bad_request("body", "a JSON object is required")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        bad_request("body", f"is not valid JSON: {exc}")
    if not isinstance(value, dict):
        bad_request("body", f"must be a JSON object, got {type(value).__name__}")
    return value


class Fields:
    """Takes typed fields out of a JSON object; :meth:`done` refuses any left over."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = dict(body)

    def text(self, name: str, *, required: bool = False) -> str | None:
        """A non-blank string without control characters, or None when absent (or null)."""
        value = self._body.pop(name, None)
        if value is None:
            if required:
                bad_request(name, "is required")
            return None
        if not isinstance(value, str):
            bad_request(name, f"must be a string, got {_kind(value)}")
        if not value.strip():
            bad_request(name, "must not be blank")
        if len(value) > MAX_FIELD or any(ord(ch) < 32 or ord(ch) == 0x7F for ch in value):
            bad_request(name, f"must be at most {MAX_FIELD} printable characters")
        return value

    def flag(self, name: str) -> bool | None:
        value = self._body.pop(name, None)
        if value is not None and not isinstance(value, bool):
            bad_request(name, f"must be true or false, got {_kind(value)}")
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is not None and value not in choices:
            bad_request(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def names(self, name: str) -> list[str] | None:
        """A list of strings (group names), or None when absent."""
        value = self._body.pop(name, None)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            bad_request(name, f"must be a list of strings, got {_kind(value)}")
        if len(value) > MAX_LIST:
            bad_request(name, f"must hold at most {MAX_LIST} names")
        return value

    def done(self) -> None:
        if self._body:
            bad_request(", ".join(sorted(self._body)), "unknown field")


def _kind(value: object) -> str:
    """JSON's name for a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
