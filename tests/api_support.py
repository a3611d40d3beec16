"""Signing in to the admin API in tests: make a user, log in, get the headers to send.

In-process (falcon.testing): ``make_user(database, "alice", admin=True)`` then
``login(client, "alice")``. Against a running node or gunicorn: ``add_user_command(data_dir,
"alice", admin=True)`` (the real ``otszmq user add``) then ``login(base_url, "alice")``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import falcon.testing
import pytest
import requests
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from peewee import Database

import otszmq.api.accounts
import otszmq.users
from otszmq.store.models import User
from otszmq.users import add_user
from tests.support import otszmq_command

PASSWORD = "correct horse battery staple"


def cheap_hash(password: str) -> str:
    """An argon2id hash with argon2's cheapest parameters: microseconds, not half a second.
    Verifying reads the parameters from the hash, so the server checks it just as fast."""
    return PasswordHasher.from_parameters(CHEAPEST).hash(password)


def use_cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords the API itself hashes (new users, new passwords) use :func:`cheap_hash`."""
    monkeypatch.setattr(otszmq.users, "hash_password", cheap_hash)
    monkeypatch.setattr(otszmq.api.accounts, "hash_password", cheap_hash)


def make_user(
    database: Database, name: str, *, admin: bool = False, groups_in: Sequence[str] = (),
    groups_out: Sequence[str] = (), password: str = PASSWORD,
) -> User:
    """A user in ``database`` (bound to the models, as create_app leaves it); an empty
    ``password`` makes a certificate-only user. The password is hashed cheaply (fast tests)."""
    user = add_user(database, name, admin=admin, groups_in=groups_in, groups_out=groups_out)
    if password:
        user.password_hash = cheap_hash(password)
        user.save()
    return user


def add_user_command(
    data_dir: Path, name: str, *, admin: bool = False, groups_in: Sequence[str] = (),
    groups_out: Sequence[str] = (), password: str = PASSWORD, database_url: str = "",
) -> None:
    """The same through ``otszmq user add``, for a node's database."""
    argv = otszmq_command("user", "add", name, "--data-dir", str(data_dir),
                          "--password", password)
    if admin:
        argv.append("--admin")
    if groups_in:
        argv += ["--in", ",".join(groups_in)]
    if groups_out:
        argv += ["--out", ",".join(groups_out)]
    if database_url:
        argv += ["--database-url", database_url]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(
    where: str | falcon.testing.TestClient, name: str, password: str = PASSWORD
) -> dict[str, str]:
    """Log in through ``POST /api/login``; the headers that carry the token."""
    credentials = {"username": name, "password": password}
    if isinstance(where, falcon.testing.TestClient):
        result = where.simulate_post("/api/login", json=credentials)
        assert result.status_code == 200, result.text
        return bearer(result.json["token"])
    response = requests.post(f"{where}/api/login", json=credentials, timeout=10)
    assert response.status_code == 200, response.text
    return bearer(response.json()["token"])
