"""The CA's record of every certificate it issued: ``<data_dir>/pki/index.json``.

One JSON document, rewritten whole and atomically on each change (the CA issues a few
certificates per user, so it stays small). Serials are upper-case hexadecimal strings, as
``openssl x509 -serial`` prints them: they are 159-bit random numbers, which JavaScript and
some JSON tools cannot hold as numbers. Times are ISO 8601 in UTC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from otszmq.errors import PkiError
from otszmq.pki.files import write_atomic

INDEX_VERSION = 1
KINDS = ("server", "client")
REASONS = (
    "unspecified", "key_compromise", "affiliation_changed", "superseded",
    "cessation_of_operation",
)


def format_serial(serial: int) -> str:
    return f"{serial:X}"


def parse_serial(text: str) -> int:
    """Read a serial as ``cert list`` prints it; colons and a ``0x`` prefix are allowed."""
    cleaned = text.strip().replace(":", "").removeprefix("0x").removeprefix("0X")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise PkiError(f"serial {text!r}: not a hexadecimal number") from None
    if value <= 0:
        raise PkiError(f"serial {text!r}: must be positive")
    return value


@dataclass(frozen=True, slots=True)
class CertRecord:
    """One issued certificate as the index knows it."""

    serial: int
    common_name: str
    kind: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None = None
    reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def status(self, now: datetime) -> str:
        if self.revoked:
            return "revoked"
        return "expired" if now >= self.not_after else "valid"

    def revoke(self, when: datetime, reason: str) -> CertRecord:
        return replace(self, revoked_at=when, reason=reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": format_serial(self.serial),
            "cn": self.common_name,
            "kind": self.kind,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> CertRecord:
        revoked_at = item.get("revoked_at")
        kind = str(item["kind"])
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        return cls(
            serial=parse_serial(str(item["serial"])),
            common_name=str(item["cn"]),
            kind=kind,
            not_before=_utc(item["not_before"]),
            not_after=_utc(item["not_after"]),
            revoked_at=_utc(revoked_at) if revoked_at else None,
            reason=item.get("reason"),
        )


@dataclass(slots=True)
class Index:
    """All records, plus the number of the last CRL signed (RFC 5280 wants it increasing)."""

    records: list[CertRecord] = field(default_factory=list)
    crl_number: int = 0

    def find(self, serial: int) -> CertRecord | None:
        return next((record for record in self.records if record.serial == serial), None)

    def replace_record(self, record: CertRecord) -> None:
        self.records = [record if r.serial == record.serial else r for r in self.records]


def load_index(path: Path) -> Index:
    """Read the index; a missing file is an empty index, a damaged one an error naming it."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Index()
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise PkiError(f"{path} is not valid JSON: {exc}") from exc
    try:
        if document.get("version") != INDEX_VERSION:
            raise ValueError(f"unsupported version {document.get('version')!r}")
        records = [CertRecord.from_json(item) for item in document["certificates"]]
        return Index(records=records, crl_number=int(document.get("crl_number", 0)))
    except (AttributeError, KeyError, TypeError, ValueError, PkiError) as exc:
        raise PkiError(f"{path} is damaged: {exc}") from exc


def save_index(path: Path, index: Index) -> None:
    document = {
        "version": INDEX_VERSION,
        "crl_number": index.crl_number,
        "certificates": [record.to_json() for record in index.records],
    }
    write_atomic(path, (json.dumps(document, indent=2) + "\n").encode())


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment.astimezone(UTC)
