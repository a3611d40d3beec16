"""``/Marti/api/clientEndPoints`` and ``/Marti/api/contacts/all`` list only the EUDs whose
channels the caller reads, over SQLite and PostgreSQL (EUDs stored by the store's writer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.marti_support import MartiApp, marti_app, user_caller
from tests.store_support import BACKENDS
from tests.support import sa_event


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MartiApp]:
    with marti_app(request.param, tmp_path) as app:
        app.store(sa_event("ANON-1", "ANONYMOUS"), groups=("__ANON__",))
        app.store(sa_event("RED-1", "REDLEADER"), groups=("Red",))
        app.store(sa_event("BLUE-1", "BLUELEADER"), groups=("Blue",))
        yield app


def listed(api: MartiApp) -> tuple[list[str], list[str]]:
    endpoints = api.client.simulate_get("/Marti/api/clientEndPoints").json["data"]
    contacts = api.client.simulate_get("/Marti/api/contacts/all").json
    return sorted(e["uid"] for e in endpoints), sorted(c["uid"] for c in contacts)


def test_anonymous_callers_see_the_anonymous_channel(api: MartiApp) -> None:
    assert listed(api) == (["ANON-1"], ["ANON-1"])


def test_a_user_sees_the_channels_it_reads(api: MartiApp) -> None:
    api.who.caller = user_caller("alice", ("Red",), ("Red", "__ANON__"))
    assert listed(api) == (["ANON-1", "RED-1"], ["ANON-1", "RED-1"])


def test_an_admin_sees_everything(api: MartiApp) -> None:
    api.who.caller = user_caller("root", admin=True)
    everyone = ["ANON-1", "BLUE-1", "RED-1"]
    assert listed(api) == (everyone, everyone)
