"""Data-package files on disk: ``<data_dir>/packages/<sha256>``, content-addressed.

The file name is the SHA-256 we compute while writing, never a name from the client, so no
request can name a path. A file is written to a temporary name in the same directory and renamed
into place only when complete and within the size limit: a reader never sees half a file, and a
rejected upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from otszmq.errors import OtszmqError

CHUNK: Final = 64 * 1024


class UploadTooLarge(OtszmqError):
    """The upload grew past the configured limit; nothing was kept."""


class HashMismatch(OtszmqError):
    """The upload's SHA-256 is not the one the client announced; nothing was kept."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size: int


class PackageStore:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        """Where the file of ``sha256`` (already checked to be 64 hex digits) lives."""
        return self.root / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        return self.path(sha256).open("rb")

    def save(self, chunks: Iterator[bytes], expected: str | None = None) -> StoredFile:
        """Write ``chunks`` under their SHA-256; :class:`UploadTooLarge` past the limit,
        :class:`HashMismatch` if ``expected`` (lower-case hex) is given and differs."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadTooLarge(
                            f"upload is larger than the limit of {self.max_bytes} bytes"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                # The row that points at this file is committed next: the bytes must be on
                # disk first, or a crash could leave a row without its file.
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            if expected is not None and sha256 != expected:
                raise HashMismatch(f"the upload's SHA-256 is {sha256}, not {expected}")
            # Same content, same name: a re-upload replaces identical bytes (atomic rename).
            tmp.replace(self.path(sha256))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredFile(sha256, size)

class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def read_chunks(stream: Readable, chunk: int = CHUNK) -> Iterator[bytes]:
    while data := stream.read(chunk):
        yield data
