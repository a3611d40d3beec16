"""Every API error is a JSON body ``{"error": ..., "detail": ...}`` with a 4xx/5xx status.

Helpers here raise falcon's HTTP errors with a short ``title`` (the ``error``: what kind of
problem) and a ``description`` (the ``detail``: which field or value, and why), so a client can
tell what to fix without reading server logs.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NoReturn

import falcon
from peewee import PeeweeException

log = logging.getLogger(__name__)


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Falcon's error serializer, replaced: always JSON, whatever the client's Accept says.

    NOTE: falcon's default would answer XML to a client that prefers it, and nothing at all to
    one that accepts neither; TAK clients send odd Accept headers, so we ignore it.
    """
    title = exc.title or "error"
    # falcon's own titles carry the status code ("404 Not Found"); the status line has it.
    code = str(exc.status_code)
    if title.startswith(code + " "):
        title = title[len(code) + 1:]
    body: dict[str, Any] = {"error": title, "detail": exc.description or title}
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)


def route_not_found(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]
) -> None:
    raise falcon.HTTPNotFound(
        title="Not Found", description=f"no route for {req.method} {req.path}"
    )


def database_error(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]
) -> None:
    # Logged here with its traceback, once; the client learns only that the database failed
    # (the message may hold SQL or a URL).
    log.error("database error on %s %s", req.method, req.path, exc_info=exc)
    raise falcon.HTTPServiceUnavailable(
        title="Database Unavailable", description="the database could not answer; retry later"
    ) from exc


def bad_request(field: str, why: str) -> NoReturn:
    raise falcon.HTTPBadRequest(title="Invalid Parameter", description=f"{field}: {why}")


def not_found(what: str) -> NoReturn:
    raise falcon.HTTPNotFound(title="Not Found", description=what)


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    app.set_error_serializer(serialize_error)
    app.add_error_handler(falcon.HTTPRouteNotFound, route_not_found)
    app.add_error_handler(PeeweeException, database_error)
