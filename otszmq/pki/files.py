"""Where the CA keeps its files, and how it writes them safely.

Every file is written atomically (a temporary file in the same directory, fsync, rename),
so that a crash or a full disk never leaves a half-written key, index or CRL behind, and a
server reading ``crl.pem`` never sees a torn file. Read-modify-write sequences (issue,
revoke) hold an exclusive ``flock`` on ``.lock`` because the CLI and a running server's
enrollment endpoint may both update the index.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from otszmq.errors import PkiError

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700


@dataclass(frozen=True)
class PkiPaths:
    """The file layout of one CA directory (normally ``<data_dir>/pki``)."""

    root: Path

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> PkiPaths:
        return cls(data_dir / "pki")

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def ca_passphrase(self) -> Path:
        return self.root / "ca.passphrase"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def crl(self) -> Path:
        return self.root / "crl.pem"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    @property
    def issued(self) -> Path:
        return self.root / "issued"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def exists(self) -> bool:
        """Is there a CA here (either half of it)?"""
        return self.ca_cert.exists() or self.ca_key.exists()

    def require(self) -> None:
        """Raise a clear error unless a complete CA is here."""
        if not self.ca_cert.is_file() or not self.ca_key.is_file():
            raise PkiError(f"no CA in {self.root}: run `otszmq ca init` first")


def write_atomic(path: Path, data: bytes, mode: int = PUBLIC_MODE) -> None:
    """Replace ``path`` with ``data`` in one step; ``mode`` is set before any byte is written."""
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise PkiError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        # mkstemp creates the file 0600; widen it only for public files.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise PkiError(f"cannot write {path}: {exc.strerror}") from exc


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it readable by its owner only."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(DIR_MODE)
    except OSError as exc:
        raise PkiError(f"cannot create {path}: {exc.strerror}") from exc


@contextlib.contextmanager
def locked(paths: PkiPaths) -> Iterator[None]:
    """Hold the CA directory's exclusive lock for one read-modify-write sequence."""
    try:
        fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, SECRET_MODE)
    except OSError as exc:
        raise PkiError(f"cannot lock {paths.lock}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
