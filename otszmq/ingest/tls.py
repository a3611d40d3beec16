"""The mutual-TLS CoT port's certificate checks, kept current while the server runs.

The listener's SSL context never changes (asyncio binds it to the server), so it
carries only an SNI callback that hands every new handshake the *current* context:
when ``otszmq cert revoke`` re-signs the CRL, the next handshake already checks the
new list, with no restart and no window where the port is closed. Connections
that were open when their certificate was revoked are found by serial number and
closed by the ingest service.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from otszmq.pki.ca import list_records
from otszmq.pki.files import PkiPaths
from otszmq.pki.tls import crl_stamp, server_ssl_context

log = logging.getLogger(__name__)


class TlsContexts:
    def __init__(self, pki_dir: Path) -> None:
        self._pki_dir = pki_dir
        self._stamp = crl_stamp(pki_dir)
        self._current = server_ssl_context(pki_dir)
        self.generation = 0
        """Bumped on every reload, so that the sweep knows to look for revoked peers."""
        self.listener = server_ssl_context(pki_dir)
        self.listener.sni_callback = self._choose

    def _choose(self, ssl_object: ssl.SSLObject, server_name: str | None,
                listener: ssl.SSLContext) -> None:
        # Called for every ClientHello, with or without SNI. PERF: one stat() per handshake
        # buys a revocation that holds from the very next handshake.
        self.refresh()
        ssl_object.context = self._current

    def refresh(self) -> None:
        """Reload if the CRL changed on disk (it is replaced by rename, never edited)."""
        stamp = crl_stamp(self._pki_dir)
        if stamp == self._stamp:
            return
        self._current = server_ssl_context(self._pki_dir)
        self._stamp = stamp
        self.generation += 1
        log.info("certificate revocation list reloaded")

    def revoked_serials(self) -> set[int]:
        return {
            record.serial for record in list_records(PkiPaths(self._pki_dir)) if record.revoked
        }


def peer_serial(peercert: dict[str, object] | None) -> int:
    """The serial number of a verified peer certificate, 0 if there is none."""
    serial = (peercert or {}).get("serialNumber")
    return int(str(serial), 16) if serial else 0
