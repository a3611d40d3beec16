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
from otszmq.store.database import write_transaction
from otszmq.store.models import ApiToken, Group, GroupMembership, User

ANON_GROUP = "__ANON__"
ADMIN_ROLE = "administrator"
ROLES = ("user", ADMIN_ROLE)


class UserError(OtszmqError):
    """A user cannot be created or found; the message names the problem."""


class UserNotFound(UserError):
    """No user or group of that name."""


class UserConflict(UserError):
    """The change contradicts what is stored: a duplicate, or no administrator left."""


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


def clean_group_names(names: Iterable[str]) -> list[str]:
    """Group names stripped, blanks dropped; :class:`UserError` for one unfit to store."""
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
    wanted = {"IN": clean_group_names(groups_in), "OUT": clean_group_names(groups_out)}
    now = datetime.now(UTC)
    # PERF: argon2 takes tens of milliseconds on purpose; not while holding the write lock.
    password_hash = hash_password(password) if password else None
    with write_transaction(database):
        try:
            user = User.create(
                username=name, password_hash=password_hash,
                role=ADMIN_ROLE if admin else "user", active=True, created_at=now,
            )
        except IntegrityError as exc:
            raise UserConflict(f"user {name!r} already exists") from exc
        for direction, names in wanted.items():
            _set_memberships(user, direction, names, now)
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


# -- changing users and groups (the admin API) -----------------------------------------------


def _group(name: str, now: datetime) -> Group:
    return Group.get_or_none(Group.name == name) or Group.create(name=name, created_at=now)


def _set_memberships(user: User, direction: str, names: Sequence[str], now: datetime) -> None:
    """Make ``user``'s memberships in ``direction`` exactly ``names`` (groups made as needed).

    A membership kept keeps its ``enabled`` toggle (the user's choice in ATAK); new ones are on.
    """
    wanted = dict.fromkeys(names)  # once each, in order
    existing = {
        str(membership.group.name): membership
        for membership in GroupMembership.select(GroupMembership, Group).join(Group).where(
            (GroupMembership.user == user) & (GroupMembership.direction == direction))
    }
    for name, membership in existing.items():
        if name not in wanted:
            membership.delete_instance()
    for name in wanted:
        if name not in existing:
            GroupMembership.create(
                user=user, group=_group(name, now), direction=direction, enabled=True)


def memberships(users: Iterable[User]) -> dict[str, dict[str, list[str]]]:
    """Each user's group names by direction (``IN``, ``OUT``), sorted, by user name; one query."""
    found: dict[str, dict[str, list[str]]] = {}
    chosen = list(users)
    if not chosen:
        return found
    rows = (GroupMembership.select(GroupMembership, Group, User).join(Group)
            .switch(GroupMembership).join(User)
            .where(GroupMembership.user.in_(chosen)).order_by(Group.name))
    for row in rows:
        by_direction = found.setdefault(str(row.user.username), {"IN": [], "OUT": []})
        by_direction[str(row.direction)].append(str(row.group.name))
    return found


def _find(name: str) -> User:
    user = User.get_or_none(User.username == name)
    if user is None:
        raise UserNotFound(f"no user {name!r}")
    return user


def _active_admins() -> int:
    return int(User.select().where(
        (User.role == ADMIN_ROLE) & (User.active == True)).count())  # noqa: E712


def update_user(
    database: Database,
    name: str,
    *,
    password: str | None = None,
    admin: bool | None = None,
    active: bool | None = None,
    groups_in: Sequence[str] | None = None,
    groups_out: Sequence[str] | None = None,
) -> User:
    """Change what is given (``None``: keep it), all or nothing.

    A new password or a deactivation revokes the user's API tokens: whoever held them must
    prove who they are again. Refused (:class:`UserConflict`) if it would leave no active
    administrator, which nobody could then undo through the API.
    """
    wanted = {
        direction: clean_group_names(names)
        for direction, names in (("IN", groups_in), ("OUT", groups_out)) if names is not None
    }
    password_hash = hash_password(password) if password is not None else None
    now = datetime.now(UTC)
    with write_transaction(database):
        user = _find(name)
        was_admin = user.role == ADMIN_ROLE and bool(user.active)
        if password_hash is not None:
            user.password_hash = password_hash
        if admin is not None:
            user.role = ADMIN_ROLE if admin else "user"
        if active is not None:
            user.active = active
        user.save()
        for direction, names in wanted.items():
            _set_memberships(user, direction, names, now)
        if password_hash is not None or active is False:
            ApiToken.delete().where(ApiToken.user == user).execute()
        if was_admin and _active_admins() == 0:
            # Raised inside the transaction: the change is rolled back.
            raise UserConflict(f"user {name!r} is the last active administrator")
    return user


def delete_user(database: Database, name: str) -> None:
    """Delete a user with its memberships and API tokens; never the last active admin."""
    with write_transaction(database):
        user = _find(name)
        if user.role == ADMIN_ROLE and user.active and _active_admins() == 1:
            raise UserConflict(f"user {name!r} is the last active administrator")
        # NOTE: explicit, not left to ON DELETE CASCADE: tables made by other tools may lack it.
        ApiToken.delete().where(ApiToken.user == user).execute()
        GroupMembership.delete().where(GroupMembership.user == user).execute()
        user.delete_instance()


def add_group(database: Database, name: str, description: str | None = None) -> Group:
    cleaned = clean_group_names([name])
    if not cleaned:
        raise UserError("a group name must not be blank")
    with write_transaction(database):
        try:
            return Group.create(
                name=cleaned[0], description=description, created_at=datetime.now(UTC))
        except IntegrityError as exc:
            raise UserConflict(f"group {cleaned[0]!r} already exists") from exc


def delete_group(database: Database, name: str) -> None:
    """Delete a group and every membership in it."""
    if name == ANON_GROUP:
        raise UserConflict(f"{ANON_GROUP} is every ungrouped user's channel; it stays")
    with write_transaction(database):
        group = Group.get_or_none(Group.name == name)
        if group is None:
            raise UserNotFound(f"no group {name!r}")
        GroupMembership.delete().where(GroupMembership.group == group).execute()
        group.delete_instance()
