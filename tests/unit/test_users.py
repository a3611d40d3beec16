from __future__ import annotations

import pytest

from otszmq.store.database import open_database
from otszmq.store.migrations import migrate
from otszmq.store.models import MODELS, GroupMembership, User
from otszmq.users import ANON_GROUP, UserError, add_user, channels_for, verify_password


@pytest.fixture
def database(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'users.db'}")
    db.bind(MODELS)
    migrate(db)
    yield db
    db.close()


def test_user_with_channels(database):
    add_user(database, "alice", password="s3cret!", groups_in=["Red", " "],
             groups_out=["Red", "Blue", "Red"])
    channels = channels_for("alice")
    assert channels is not None
    assert channels.groups_in == ("Red",)
    assert channels.groups_out == frozenset({"Red", "Blue"})
    user = User.get(User.username == "alice")
    assert user.password_hash != "s3cret!"
    assert verify_password(user.password_hash, "s3cret!")
    assert not verify_password(user.password_hash, "wrong")


def test_no_memberships_means_anonymous_and_unknown_means_none(database):
    add_user(database, "bob")
    channels = channels_for("bob")
    assert channels is not None and channels.groups_in == (ANON_GROUP,)
    assert channels.groups_out == frozenset({ANON_GROUP})
    assert channels_for("nobody") is None
    User.update(active=False).where(User.username == "bob").execute()
    assert channels_for("bob") is None


def test_disabled_membership_is_not_a_channel(database):
    add_user(database, "carol", groups_in=["Red"], groups_out=["Red", "Blue"])
    GroupMembership.update(enabled=False).where(GroupMembership.direction == "OUT").execute()
    channels = channels_for("carol")
    assert channels is not None and channels.groups_out == frozenset({ANON_GROUP})


def test_bad_input_creates_nothing(database):
    add_user(database, "dave")
    with pytest.raises(UserError, match="already exists"):
        add_user(database, "dave", groups_in=["X"])
    with pytest.raises(UserError, match="not allowed"):
        add_user(database, "../etc")
    with pytest.raises(UserError, match="invalid group name"):
        add_user(database, "erin", groups_in=["bad\x00group"])
    assert User.select().count() == 1
    assert not verify_password(None, "x")
