"""``serve``'s first start: a node with a TLS port needs a CA, so it makes one if absent."""

from __future__ import annotations

import logging
import secrets
import socket
import sys
from pathlib import Path

from otszmq.pki.ca import init_ca
from otszmq.pki.files import PkiPaths

log = logging.getLogger(__name__)


def ensure_ca(pki_dir: Path) -> bool:
    """Create the CA and server certificate unless they exist; True if created.

    The passphrase is generated (never a default), shown once on stderr, and stored
    0600 beside the key so that the running server can sign enrollment requests; an
    admin who wants the key to need a human runs ``otszmq ca init`` first instead.
    """
    paths = PkiPaths(pki_dir)
    if paths.exists():
        return False
    passphrase = secrets.token_urlsafe(24)
    hosts = sorted({socket.gethostname(), "localhost", "127.0.0.1"})
    log.info("no certificate authority in %s: creating one for %s", pki_dir, ", ".join(hosts))
    init_ca(paths, passphrase, hosts, store_passphrase=True)
    print(
        f"otszmq: created a certificate authority in {pki_dir}.\n"
        f"otszmq: its key passphrase (shown once) is: {passphrase}\n"
        f"otszmq: it is also stored in {paths.ca_passphrase} (mode 0600) so that the server "
        "can sign enrollment requests.",
        file=sys.stderr,
    )
    return True
