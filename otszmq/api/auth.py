"""Bearer tokens for the admin API (``/api/``): issuing, checking, revoking, and the middleware.

A token is 32 random bytes (``secrets.token_urlsafe``) handed to the client once, at login; the
database keeps only its SHA-256 (:class:`otszmq.store.models.ApiToken`), so every gunicorn worker
and every restart agrees on it and a logout holds everywhere. A plain hash (no salt, no argon2)
is enough for a 256-bit random secret: nothing about it can be guessed faster than the secret.

Every ``/api/`` route except :data:`PUBLIC_PATHS` needs ``Authorization: Bearer <token>``; the
middleware turns a valid one into ``req.context.caller`` (a :class:`Caller`, ``via="token"``).
A caller authenticated before it (a client certificate on the HTTPS port) is kept as it is.
Other paths (``/Marti``, ``/metrics``) are left to their own authentication; the middleware only
makes sure they see a caller, the anonymous one, when nothing else set one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import falcon

from otszmq.api.caller import ANONYMOUS_CALLER, Caller
from otszmq.api.scope import caller_of
from otszmq.api.tls_auth import caller_for
from otszmq.store.models import ApiToken, User

log = logging.getLogger(__name__)

PUBLIC_PATHS: Final = frozenset({"/api/health", "/api/openapi.json", "/api/login"})
REALM: Final = 'Bearer realm="otszmq"'
TOKEN_BYTES: Final = 32
# token_urlsafe's alphabet; anything else (or anything much longer) is not one of ours.
_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")
# PERF: last_used is written at most this often per token, not on every request (a write per
# GET would take SQLite's write lock away from the store).
TOUCH_INTERVAL: Final = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, lifetime: timedelta, now: datetime) -> tuple[str, datetime]:
    """A new token for ``user``, stored as its hash; returns the token and when it expires.

    Expired tokens of every user are deleted here, so the table stays as small as the number
    of live logins.
    """
    ApiToken.delete().where(ApiToken.expires_at <= now).execute()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires = now + lifetime
    ApiToken.create(user=user, token_hash=token_hash(token), created_at=now, expires_at=expires)
    return token, expires


def revoke_token(hashed: str) -> bool:
    """Delete the token with this hash; whether there was one."""
    return bool(ApiToken.delete().where(ApiToken.token_hash == hashed).execute())


def _unauthorized(detail: str, *, invalid: bool = True) -> falcon.HTTPUnauthorized:
    # RFC 6750 §3: error="invalid_token" for a token presented but refused; none when absent.
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return falcon.HTTPUnauthorized(
        title="Unauthorized", description=detail, challenges=[challenge])


def bearer_token(req: falcon.Request) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 when absent or malformed."""
    header = req.get_header("Authorization")
    if not header:
        raise _unauthorized(
            "this route needs 'Authorization: Bearer <token>' (POST /api/login for one)",
            invalid=False)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Authorization must be 'Bearer <token>'")
    if not _TOKEN_SHAPE.fullmatch(token):
        raise _unauthorized("the bearer token is malformed")
    return token


def caller_for_token(token: str, now: datetime) -> Caller:
    """The caller a token stands for; 401 if it is unknown, revoked or expired, or its user is
    gone or inactive."""
    hashed = token_hash(token)
    row = ApiToken.select(ApiToken, User).join(User).where(
        ApiToken.token_hash == hashed).first()
    if row is None:
        raise _unauthorized("invalid or revoked token; log in again")
    if row.expires_at <= now:
        ApiToken.delete().where(ApiToken.id == row.id).execute()
        raise _unauthorized("the token has expired; log in again")
    caller = caller_for(str(row.user.username), "token")  # None for an inactive user
    if caller is None:
        raise _unauthorized("invalid or revoked token; log in again")
    if row.last_used is None or now - row.last_used >= TOUCH_INTERVAL:
        ApiToken.update(last_used=now).where(ApiToken.id == row.id).execute()
    return caller


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class TokenAuth:
    """Falcon middleware: a token for ``/api/`` (but :data:`PUBLIC_PATHS`); a caller for all.

    Must come after the database-session middleware (it reads tokens) and after any middleware
    that authenticates other paths (it never replaces a caller already set).
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        context: Any = req.context
        if getattr(context, "caller", None) is not None:
            return  # authenticated already: a client certificate on the HTTPS port
        path = req.path.rstrip("/") or "/"
        if not is_api_path(path) or path in PUBLIC_PATHS:
            context.caller = ANONYMOUS_CALLER
            return
        token = bearer_token(req)
        context.caller = caller_for_token(token, datetime.now(UTC))
        context.token_hash = token_hash(token)


def require_admin(req: falcon.Request) -> Caller:
    """The caller, if an administrator; 403 otherwise."""
    caller = caller_of(req)
    if not caller.admin:
        raise falcon.HTTPForbidden(
            title="Forbidden",
            description=f"this route is for administrators; {caller.name or 'anonymous'!s} "
                        "is not one")
    return caller


def admin_only(
    req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
) -> None:
    """A falcon ``before`` hook: ``@falcon.before(admin_only)`` on a resource or responder."""
    require_admin(req)
