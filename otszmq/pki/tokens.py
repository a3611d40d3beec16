"""One-time enrollment tokens: a password stand-in a user types (or scans) once to enroll.

ATAK's "quick connect" QR code is ``tak://com.atakmap.app/enroll?host=H&username=U&token=T``:
the client then does the usual enrollment on the enrollment port with HTTP Basic
``U:T``. Only the token's SHA-256 is stored: a token is 32 random bytes, so a fast hash is
enough (nobody can guess one to match), and it lets the server look the token up in one
indexed query instead of trying an argon2 hash per stored token.

A token is *used* when it signs a certificate, not when it merely authenticates: one
enrollment makes several requests (``tls/config``, ``signClient/v2``, the profile), and a
single-use token must survive the first of them. A token that has signed its last
certificate still reads the read-only enrollment routes (nothing secret) until it expires.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO
from urllib.parse import urlencode

from peewee import Database

from otszmq.config import Settings
from otszmq.errors import OtszmqError
from otszmq.store.models import EnrollmentToken, User

ENROLL_URL = "tak://com.atakmap.app/enroll"
DEFAULT_ENROLL_PORT = 8446  # what ATAK assumes when the QR host names no port
MAX_HOURS = 24 * 366


class TokenError(OtszmqError):
    """A token cannot be issued; the message says why."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    username: str
    max_uses: int | None
    expires_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(username: str, *, uses: int = 1, hours: float = 24.0,
                now: datetime | None = None) -> IssuedToken:
    """Store a new token for an active ``username`` (``uses`` 0: unlimited); the token itself
    is returned once and never stored."""
    if uses < 0:
        raise TokenError(f"--uses {uses}: must be 0 (unlimited) or more")
    if not 0 < hours <= MAX_HOURS:
        raise TokenError(f"--hours {hours:g}: must be > 0 and at most {MAX_HOURS}")
    user = User.get_or_none((User.username == username) & (User.active == True))  # noqa: E712
    if user is None:
        raise TokenError(f"no active user {username!r}: create it with `otszmq user add` first")
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(hours=hours)
    EnrollmentToken.create(
        token_hash=token_hash(token), username=username, max_uses=uses or None,
        total_uses=0, not_before=now, expires_at=expires_at, disabled=False, created_at=now,
    )
    return IssuedToken(token, username, uses or None, expires_at)


def _usable(username: str, token: str, now: datetime) -> EnrollmentToken | None:
    row: EnrollmentToken | None = EnrollmentToken.get_or_none(
        (EnrollmentToken.token_hash == token_hash(token))
        & (EnrollmentToken.username == username)
        & (EnrollmentToken.disabled == False)  # noqa: E712
    )
    if row is None:
        return None
    if row.not_before is not None and now < row.not_before:
        return None
    if row.expires_at is not None and now >= row.expires_at:
        return None
    return row


def token_valid(username: str, token: str, now: datetime | None = None) -> bool:
    """Does ``token`` authenticate ``username`` (not disabled, not expired)?"""
    return _usable(username, token, now or datetime.now(UTC)) is not None


def consume_token(username: str, token: str, now: datetime | None = None) -> bool:
    """Count one use of ``token``; False if it is invalid, expired or used up.

    One conditional UPDATE, so that two API workers signing at once cannot both take a
    token's last use.
    """
    row = _usable(username, token, now or datetime.now(UTC))
    if row is None:
        return False
    query = EnrollmentToken.update(total_uses=EnrollmentToken.total_uses + 1).where(
        (EnrollmentToken.token_hash == row.token_hash)
        & (EnrollmentToken.max_uses.is_null() | (EnrollmentToken.total_uses
                                                 < EnrollmentToken.max_uses))
    )
    return bool(query.execute() == 1)


def qr_string(host: str, username: str, token: str, port: int = DEFAULT_ENROLL_PORT) -> str:
    """The ``tak://`` enrollment link ATAK reads from a QR code."""
    where = host if port == DEFAULT_ENROLL_PORT else f"{host}:{port}"
    return f"{ENROLL_URL}?{urlencode({'host': where, 'username': username, 'token': token})}"


def run_token_command(settings: Settings, args: argparse.Namespace,
                      out: TextIO | None = None) -> int:
    """``otszmq token issue NAME [--uses N] [--hours H] [--host H]``."""
    from otszmq.pki.ca import server_hosts  # noqa: PLC0415 -- cryptography, only here
    from otszmq.pki.files import PkiPaths  # noqa: PLC0415
    from otszmq.store.migrations import open_migrated  # noqa: PLC0415

    out = out or sys.stdout
    host = args.host
    if host is None:
        paths = PkiPaths.for_data_dir(settings.data_dir)
        paths.require()
        host = server_hosts(paths)[0]
    database: Database
    database, _ = open_migrated(settings.store_database_url)
    try:
        issued = issue_token(args.username, uses=args.uses, hours=args.hours)
    finally:
        database.close()
    uses = "unlimited uses" if issued.max_uses is None else f"{issued.max_uses} use(s)"
    print(f"enrollment token for {issued.username} ({uses}, valid until "
          f"{issued.expires_at:%Y-%m-%d %H:%M} UTC; shown only now):", file=out)
    print(f"  {issued.token}", file=out)
    print("QR code text (ATAK: Settings > Network > Quick Connect > Scan QR):", file=out)
    print(f"  {qr_string(host, issued.username, issued.token, settings.enroll_port)}", file=out)
    return 0
