"""Users and their channels (TAK Server's groups): who may write to and read which group.

A user has IN groups (its events go to them) and OUT groups (it receives their
events), each membership with ATAK's ``enabled`` toggle. A user with no enabled
membership in a direction falls back to ``__ANON__`` there, as TAK Server and OTS
do. Passwords are stored as argon2id hashes only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from peewee import Database, IntegrityError

from otszmq.errors import OtszmqError
from otszmq.pki.policy import validate_name
from otszmq.store.models import Group, GroupMembership, User

ANON_GROUP = "__ANON__"
ROLES = ("user", "administrator")


class UserError(OtszmqError):
    """A user cannot be created or found; the message names the problem."""


@dataclass(frozen=True)
class Channels:
    groups_in: tuple[str, ...]
    groups_out: frozenset[str]


ANONYMOUS = Channels((ANON_GROUP,), frozenset({ANON_GROUP}))


def hash_password(password: str) -> str:
    return PasswordHasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _group_names(names: Iterable[str]) -> list[str]:
    cleaned = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if len(name) > 100 or any(ord(c) < 32 for c in name):
            raise UserError(f"invalid group name {name[:40]!r}")
        cleaned.append(name)
    return cleaned


def add_user(
    database: Database,
    name: str,
    *,
    password: str | None = None,
    admin: bool = False,
    groups_in: Sequence[str] = (),
    groups_out: Sequence[str] = (),
) -> User:
    """Create a user with its channel memberships, all or nothing."""
    try:
        validate_name(name)
    except OtszmqError as exc:
        raise UserError(str(exc)) from exc
    wanted = {"IN": _group_names(groups_in), "OUT": _group_names(groups_out)}
    now = datetime.now(UTC)
    with database.atomic():
        try:
            user = User.create(
                username=name, password_hash=hash_password(password) if password else None,
                role="administrator" if admin else "user", active=True, created_at=now,
            )
        except IntegrityError as exc:
            raise UserError(f"user {name!r} already exists") from exc
        for direction, names in wanted.items():
            for group_name in dict.fromkeys(names):  # once each, in order
                group = Group.get_or_none(Group.name == group_name) or Group.create(
                    name=group_name, created_at=now
                )
                GroupMembership.create(user=user, group=group, direction=direction, enabled=True)
    return user


def channels_for(username: str) -> Channels | None:
    """The enabled channels of an active user; None if there is no such active user."""
    user = User.get_or_none((User.username == username) & (User.active == True))  # noqa: E712
    if user is None:
        return None
    memberships = (
        GroupMembership.select(GroupMembership, Group)
        .join(Group)
        .where((GroupMembership.user == user) & (GroupMembership.enabled == True))  # noqa: E712
    )
    groups_in: list[str] = []
    groups_out: set[str] = set()
    for membership in memberships:
        name = str(membership.group.name)
        if membership.direction == "IN":
            groups_in.append(name)
        else:
            groups_out.add(name)
    return Channels(
        tuple(sorted(groups_in)) or ANONYMOUS.groups_in,
        frozenset(groups_out) or ANONYMOUS.groups_out,
    )


def authenticate(username: str, password: str) -> Channels | None:
    """The channels of an active user whose password matches; None otherwise."""
    user = User.get_or_none((User.username == username) & (User.active == True))  # noqa: E712
    if user is None or not verify_password(user.password_hash, password):
        return None
    return channels_for(username)
