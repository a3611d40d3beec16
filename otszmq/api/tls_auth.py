"""Who is calling on the TLS listeners: the client certificate's CN on the HTTPS port, HTTP
Basic (a password or an enrollment token) on the enrollment port.

Sets ``req.context.caller`` (:class:`otszmq.api.caller.Caller`) and ``req.context.listener``
(:class:`otszmq.api.listeners.Listener`) before any route runs; requests on the plain port
are left to the token middleware. Runs after the database session middleware: users and
their channels are read from the database.
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from collections.abc import Iterator
from typing import BinaryIO, Final

import falcon

from otszmq.api.caller import Caller, Via
from otszmq.api.listeners import Listener, TlsListeners
from otszmq.ingest.tls import peer_serial
from otszmq.pki.tls import peer_common_name
from otszmq.pki.tokens import token_valid
from otszmq.store.models import User
from otszmq.users import authenticate, channels_for

log = logging.getLogger(__name__)

BASIC_REALM: Final = 'Basic realm="otszmq enrollment", charset="UTF-8"'
ENROLLMENT_PREFIX: Final = "/Marti/api/tls/"
"""The only routes the enrollment port serves."""


def caller_for(username: str, via: Via) -> Caller | None:
    """The caller an active user is, with its enabled channels; None if no such user."""
    user = User.get_or_none((User.username == username) & (User.active == True))  # noqa: E712
    channels = channels_for(username) if user is not None else None
    if user is None or channels is None:
        return None
    return Caller(username, user.role == "administrator", frozenset(channels.groups_in),
                  channels.groups_out, via)


def _unauthorized(detail: str) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(title="Unauthorized", description=detail,
                                   challenges=[BASIC_REALM])


def basic_credentials(header: str | None) -> tuple[str, str]:
    """User name and secret of an ``Authorization: Basic`` header; 401 if there is none."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise _unauthorized("HTTP Basic credentials (user name and password or enrollment "
                            "token) are required on the enrollment port")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("the Authorization header is not base64 of UTF-8 "
                            "'user:password'") from None
    username, colon, secret = decoded.partition(":")
    if not colon or not username:
        raise _unauthorized("the Authorization header has no 'user:password'")
    return username, secret


class ChunkedFile:
    """A ``wsgi.file_wrapper`` that only iterates (PEP 3333's minimum), never sendfile()s."""

    # NOTE: gunicorn sends a response of its environ's file_wrapper class with sendfile() when
    # ``filelike`` has a file descriptor; with none, it iterates and writes through the socket.
    filelike: None = None

    def __init__(self, filelike: BinaryIO, block_size: int = 64 * 1024) -> None:
        self._file = filelike
        self._block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._file.read(self._block_size):
            yield chunk

    def close(self) -> None:
        self._file.close()


class TlsAuth:
    """Falcon middleware; with no TLS listeners (``None``) it only marks requests plain."""

    def __init__(self, listeners: TlsListeners | None) -> None:
        self._listeners = listeners

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._listeners is None:
            req.context.listener = Listener.PLAIN
            return
        listener, sock = self._listeners.listener_of(req.env)
        req.context.listener = listener
        if sock is None:
            return
        req.env["wsgi.url_scheme"] = "https"  # gunicorn says http: it did no TLS itself
        # NOTE: gunicorn's sendfile() writes a wsgi.file_wrapper's bytes to the raw
        # descriptor, past the TLS layer, unless gunicorn itself did the TLS: a plain
        # iterable wrapper makes gunicorn write them through the TLS socket instead.
        req.env["wsgi.file_wrapper"] = ChunkedFile
        if listener is Listener.HTTPS:
            req.context.caller = self._certificate_caller(sock)
            return
        if not req.path.startswith(ENROLLMENT_PREFIX):
            # DESIGN §5: HTTP Basic is for enrollment only; everything else wants a
            # certificate (the HTTPS port) or a token (/api).
            raise falcon.HTTPNotFound(
                title="Not Found",
                description=f"the enrollment port serves {ENROLLMENT_PREFIX}* only")
        req.context.caller = self._basic_caller(req)

    def _certificate_caller(self, sock: ssl.SSLSocket) -> Caller:
        assert self._listeners is not None
        peercert = sock.getpeercert()
        name = peer_common_name(peercert)
        if not name:
            raise falcon.HTTPForbidden(title="Forbidden",
                                       description="the client certificate has no common name")
        fields: dict[str, object] = dict(peercert or {})
        if self._listeners.is_revoked(peer_serial(fields)):
            # Checked at the handshake too; this catches a connection kept alive across the
            # revocation.
            raise falcon.HTTPForbidden(title="Forbidden",
                                       description="the client certificate is revoked")
        caller = caller_for(name, "certificate")
        if caller is None:
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description=f"the certificate's user {name!r} is not an active user")
        return caller

    def _basic_caller(self, req: falcon.Request) -> Caller:
        username, secret = basic_credentials(req.get_header("Authorization"))
        if authenticate(username, secret) is not None:
            caller = caller_for(username, "basic")
        elif token_valid(username, secret):
            # signClient consumes one of its uses (otszmq.pki.tokens explains when).
            req.context.enrollment_token = secret
            caller = caller_for(username, "basic")
        else:
            caller = None
        if caller is None:
            log.info("api: enrollment login refused for %r", username)
            raise _unauthorized("wrong user name, password or enrollment token")
        return caller
