"""``ssl`` contexts for the mutual-TLS servers (CoT 8089, HTTPS 8443), from the CA directory.

Uses only the standard library, so a stage that serves TLS need not import ``cryptography``.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from otszmq.errors import PkiError
from otszmq.pki.files import PkiPaths


def server_ssl_context(pki_dir: Path) -> ssl.SSLContext:
    """A server context that requires a client certificate from our CA, not revoked.

    TLS 1.2 or newer (every current ATAK, iTAK and WinTAK speaks 1.2). The CRL is read
    once, here: after a revocation, build a new context for new connections (compare
    :func:`crl_stamp`) and drop the revoked user's open connections. OTS generates a CRL
    but never checks it; ``VERIFY_CRL_CHECK_LEAF`` makes OpenSSL refuse a revoked
    certificate during the handshake.
    """
    paths = PkiPaths(pki_dir)
    paths.require()
    for needed in (paths.server_cert, paths.server_key, paths.crl):
        if not needed.is_file():
            raise PkiError(f"{needed} is missing: run `otszmq ca init` again with --force")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(paths.server_cert, paths.server_key)
        context.load_verify_locations(cafile=paths.ca_cert)
        # A PEM CRL loads through the same call as certificates (OpenSSL's file lookup).
        context.load_verify_locations(cafile=paths.crl)
    except (OSError, ssl.SSLError) as exc:
        raise PkiError(f"cannot load the TLS files in {pki_dir}: {exc}") from exc
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def crl_stamp(pki_dir: Path) -> int:
    """Changes whenever the CRL is re-signed (it is replaced by rename, never edited)."""
    try:
        return PkiPaths(pki_dir).crl.stat().st_mtime_ns
    except OSError as exc:
        raise PkiError(f"cannot stat {PkiPaths(pki_dir).crl}: {exc.strerror}") from exc


def peer_common_name(peercert: dict[str, Any] | None) -> str | None:
    """The CN of a verified peer certificate (``SSLObject.getpeercert()``): the user name."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
