"""The API's three listeners under one gunicorn arbiter: plain HTTP, HTTPS with a client
certificate (8443) and HTTPS for enrollment (8446).

gunicorn's own TLS settings apply to every bind alike, and one process can run only one
arbiter, so the TLS is done here instead: gunicorn binds all the ports as plain sockets, and
:class:`TlsThreadWorker` (its ``gthread`` worker, plus a per-port handshake) wraps each
accepted connection with the context of the port it came in on. One set of workers serves
all three ports; the WSGI environ's ``gunicorn.socket`` is then the ``ssl.SSLSocket`` whose
verified peer certificate :mod:`otszmq.api.tls_auth` reads.

The client-certificate port reuses the CoT TLS port's contexts
(:class:`otszmq.ingest.tls.TlsContexts`): every handshake is checked against the CRL as it
is on disk at that moment, so a revoked, unknown or foreign certificate is refused during
the handshake, with no restart.
"""

from __future__ import annotations

import errno
import logging
import ssl
from enum import StrEnum
from pathlib import Path
from typing import Any

# NOTE: gunicorn ships no type information.
from gunicorn.http.errors import NoMoreData  # type: ignore[import-untyped]
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

from otszmq.errors import PkiError
from otszmq.ingest.tls import TlsContexts
from otszmq.pki.files import PkiPaths

log = logging.getLogger(__name__)


class Listener(StrEnum):
    PLAIN = "plain"
    HTTPS = "https"  # client certificate required
    ENROLL = "enroll"  # server certificate only; HTTP Basic


def enrollment_ssl_context(pki_dir: Path) -> ssl.SSLContext:
    """The enrollment port's context: our server certificate, no client certificate asked
    (the client has none yet: that is what it comes to get)."""
    paths = PkiPaths(pki_dir)
    paths.require()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(paths.server_cert, paths.server_key)
    except (OSError, ssl.SSLError) as exc:
        raise PkiError(f"cannot load the server certificate in {pki_dir}: {exc}") from exc
    return context


class TlsListeners:
    """Which API port speaks TLS, with which context; built once, before the workers fork."""

    def __init__(self, pki_dir: Path, https_port: int, enroll_port: int,
                 handshake_timeout: float) -> None:
        self.https_port = https_port
        self.enroll_port = enroll_port
        self.handshake_timeout = handshake_timeout
        PkiPaths(pki_dir).require()  # "no CA in ..: run `otszmq ca init`", before any detail
        self.client_certs = TlsContexts(pki_dir) if https_port else None
        self._enroll = enrollment_ssl_context(pki_dir) if enroll_port else None
        self._revoked: tuple[int, set[int]] = (-1, set())

    def context_for(self, port: int) -> ssl.SSLContext | None:
        if port == self.https_port and self.client_certs is not None:
            return self.client_certs.listener
        if port == self.enroll_port:
            return self._enroll
        return None

    def listener_of(self, env: dict[str, Any]) -> tuple[Listener, ssl.SSLSocket | None]:
        """Which listener a request came in on, decided by its socket (never by a header)."""
        sock = env.get("gunicorn.socket")
        if not isinstance(sock, ssl.SSLSocket):
            return Listener.PLAIN, None
        port = sock.getsockname()[1]
        if port == self.https_port:
            return Listener.HTTPS, sock
        if port == self.enroll_port:
            return Listener.ENROLL, sock
        raise AssertionError(f"a TLS socket on port {port}, which is no TLS listener")

    def is_revoked(self, serial: int) -> bool:
        """For kept-alive connections whose certificate was revoked after their handshake."""
        contexts = self.client_certs
        if contexts is None:
            return False
        contexts.refresh()
        generation, serials = self._revoked
        if generation != contexts.generation:
            # PERF: the index is read once per CRL change, not once per request.
            serials = contexts.revoked_serials()
            self._revoked = (contexts.generation, serials)
        return serial in serials


class _TlsConn(TConn):  # type: ignore[misc]  # gunicorn is untyped
    """A connection that does its port's TLS handshake before gunicorn parses HTTP on it."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any,
                 context: ssl.SSLContext | None, handshake_timeout: float) -> None:
        super().__init__(cfg, sock, client, server)
        self._tls_context = context
        self._handshake_timeout = handshake_timeout

    def init(self) -> None:
        if not self.initialized and self._tls_context is not None:
            self.sock = self._handshake(self._tls_context)
            self._tls_context = None
        super().init()

    def _handshake(self, context: ssl.SSLContext) -> ssl.SSLSocket:
        # The timeout bounds a client that opens a connection and stalls mid-handshake: it
        # would otherwise hold one of the worker's threads for good.
        self.sock.settimeout(self._handshake_timeout)
        tls = context.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            tls.close()
            log.info("api: TLS handshake from %s on port %s refused: %s",
                     _peer(self.client), self.server[1], _reason(exc))
            # gunicorn's quiet "client went away" path: no HTTP error is written to a
            # connection that never got through its handshake.
            raise NoMoreData() from exc
        tls.settimeout(None)
        return tls


def _peer(client: Any) -> str:
    return f"{client[0]}:{client[1]}" if isinstance(client, tuple) else str(client)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__


class TlsThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's ``gthread`` worker, with TLS chosen per listening port.

    ``self.app`` is the gunicorn application (otszmq.api.main); its ``listeners`` attribute
    is the :class:`TlsListeners` (None: both TLS ports off, every port plain). Only
    :meth:`accept` differs from gunicorn's: it makes a :class:`_TlsConn` (gunicorn 27's
    ``accept``, with that one change).
    """

    def accept(self, listener: Any) -> None:
        listeners: TlsListeners | None = self.app.listeners
        try:
            client_sock, client_addr = listener.accept()
            self.nr_conns += 1
            client_sock.setblocking(True)
            server = listener.getsockname()
            context = listeners.context_for(server[1]) if listeners is not None else None
            timeout = listeners.handshake_timeout if listeners is not None else 0.0
            conn = _TlsConn(self.cfg, client_sock, client_addr, server, context, timeout)
            self.enqueue_req(conn)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
