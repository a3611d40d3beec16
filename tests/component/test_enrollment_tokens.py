"""Enrollment tokens against SQLite and PostgreSQL: issued once, hashed, used up, expired,
and the last use taken by exactly one of several concurrent signers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from peewee import Database

from otszmq.pki.tokens import (
    TokenError,
    consume_token,
    issue_token,
    qr_string,
    token_hash,
    token_valid,
)
from otszmq.store.models import EnrollmentToken
from otszmq.users import add_user
from tests.store_support import BACKENDS, database_url, migrated

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with database_url(request.param, tmp_path) as url, migrated(url) as db:
        add_user(db, "alice")
        yield db


def test_a_token_is_stored_hashed_and_used_up(database: Database) -> None:
    issued = issue_token("alice", uses=2, hours=1, now=NOW)
    row = EnrollmentToken.get(EnrollmentToken.username == "alice")
    assert row.token_hash == token_hash(issued.token) != issued.token
    assert token_valid("alice", issued.token, NOW)
    assert not token_valid("bob", issued.token, NOW)
    assert not token_valid("alice", issued.token + "x", NOW)
    assert consume_token("alice", issued.token, NOW)
    assert consume_token("alice", issued.token, NOW)
    assert not consume_token("alice", issued.token, NOW)
    # Used up, it still opens the read-only enrollment routes until it expires.
    assert token_valid("alice", issued.token, NOW)
    assert EnrollmentToken.get(EnrollmentToken.username == "alice").total_uses == 2


def test_expiry_and_disabling(database: Database) -> None:
    issued = issue_token("alice", uses=0, hours=1, now=NOW)
    later = NOW + timedelta(hours=1)
    assert consume_token("alice", issued.token, later - timedelta(seconds=1))
    assert not token_valid("alice", issued.token, later)
    assert not consume_token("alice", issued.token, later)
    other = issue_token("alice", now=NOW)
    EnrollmentToken.update(disabled=True).where(
        EnrollmentToken.token_hash == token_hash(other.token)).execute()
    assert not consume_token("alice", other.token, NOW)


def test_bad_requests_store_nothing(database: Database) -> None:
    for kwargs in ({"uses": -1}, {"hours": 0}, {"hours": 24 * 400}):
        with pytest.raises(TokenError):
            issue_token("alice", now=NOW, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TokenError, match="no active user"):
        issue_token("nobody", now=NOW)
    assert EnrollmentToken.select().count() == 0


def test_the_last_use_goes_to_one_of_many_concurrent_signers(database: Database) -> None:
    issued = issue_token("alice", uses=1, hours=1, now=NOW)
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def sign() -> None:
        barrier.wait()
        try:
            results.append(consume_token("alice", issued.token, NOW))
        finally:
            database.close()  # each thread's own connection

    threads = [threading.Thread(target=sign) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * 5 + [True]


def test_qr_string() -> None:
    link = qr_string("tak.example.org", "alice", "t0k-en_", 8446)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("tak", "com.atakmap.app", "/enroll")
    assert parse_qs(parts.query) == {"host": ["tak.example.org"], "username": ["alice"],
                                     "token": ["t0k-en_"]}
    assert parse_qs(urlsplit(qr_string("h", "a b", "t", 9446)).query) == {
        "host": ["h:9446"], "username": ["a b"], "token": ["t"]}
