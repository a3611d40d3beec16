"""TLS for the benchmark programs: mutual-TLS contexts for the load clients and the relay.

A TAK client over TLS (ATAK's "SSL" streaming port) presents a client certificate and checks the
server's against the CA it was given; the relay's `--tls` asks the same of its clients. Both sides
load PEM files (`--cert`, `--key`, `--ca`), so any TLS TAK server whose CA signed the client
certificate can be measured; `python -m benchmarks.tlscerts DIR` makes a throw-away set.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


class TlsConfigError(Exception):
    """A TLS file that cannot be loaded; the programs print it and exit."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path
    # NOTE: None skips the host-name check (the chain is still verified against `ca`): server
    # certificates of a TAK CA usually name a host, not the loopback address we connect to.
    server_name: str | None = None


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context that presents `cert` and trusts only `ca`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = files.server_name is not None
    _load(context, files)
    return context


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context that requires a client certificate signed by `ca` (mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    _load(context, files)
    return context


def _load(context: ssl.SSLContext, files: TlsFiles) -> None:
    try:
        context.load_cert_chain(files.cert, files.key)
        context.load_verify_locations(cafile=files.ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"cannot load TLS files (cert {files.cert}, key {files.key}, ca {files.ca}): {exc}"
        ) from exc


def files_from_flags(
    cert: str | None, key: str | None, ca: str | None, server_name: str | None = None
) -> TlsFiles | str:
    """The TLS files named by --cert/--key/--ca, or the error message naming what is missing."""
    named = (("--cert", cert), ("--key", key), ("--ca", ca))
    missing = [flag for flag, value in named if not value]
    if missing:
        return f"--tls needs {', '.join(missing)}"
    assert cert and key and ca  # for mypy: checked just above
    return TlsFiles(Path(cert), Path(key), Path(ca), server_name)
