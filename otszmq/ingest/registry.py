"""The clients one ingest process holds, and who may see what.

Each ingest knows only its own connections. Routing decisions arrive from the
workers as intents (broadcast to groups, or direct to uids/callsigns) and each
ingest resolves them against this registry, so no process needs a global view
and adding ingest processes or hosts needs no shared state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from otszmq.ingest.outbound import Outbound
from otszmq.wire import SourceHeader

ANON_GROUP = "__ANON__"


@dataclass(eq=False, slots=True)
class Connection:
    """One client connection (plain TCP now; TLS later fills in the groups)."""

    id: int
    peer: str
    out: Outbound
    groups_in: tuple[str, ...] = (ANON_GROUP,)
    groups_out: frozenset[str] = frozenset({ANON_GROUP})
    user: str = ""  # the client certificate's CN on the TLS port; "" for anonymous TCP
    cert_serial: int = 0
    uid: str = ""
    callsign: str = ""
    sa_type: str = "a-f-G-U-C"
    last_activity: float = 0.0
    source_header: SourceHeader | None = None  # what it sends with, rebuilt on identity change
    held: list[bytes] | None = None  # events sent while the user's channels are looked up
    paused: bool = False  # not read: its worker is over its credit (ingest/throttle.py)
    closing: bool = field(default=False)


class Registry:
    """Connections by id, by uid, by callsign, and readers by group."""

    def __init__(self) -> None:
        self.by_id: dict[int, Connection] = {}
        self._by_uid: dict[str, set[Connection]] = {}
        self._by_callsign: dict[str, set[Connection]] = {}
        self._readers: dict[str, dict[int, Connection]] = {}
        self._announced = 0

    def __len__(self) -> int:
        return len(self.by_id)

    @property
    def announced(self) -> int:
        return self._announced

    def add(self, conn: Connection) -> None:
        self.by_id[conn.id] = conn
        self._index_reader(conn)

    def remove(self, conn: Connection) -> None:
        if self.by_id.pop(conn.id, None) is None:
            return
        self._unindex_reader(conn)
        self._unindex(conn)

    def regroup(
        self, conn: Connection, groups_in: tuple[str, ...], groups_out: frozenset[str]
    ) -> None:
        """Change a registered connection's channels (after a stream login)."""
        self._unindex_reader(conn)
        conn.groups_in, conn.groups_out = groups_in, groups_out
        self._index_reader(conn)

    def _index_reader(self, conn: Connection) -> None:
        for group in conn.groups_out:
            self._readers.setdefault(group, {})[conn.id] = conn

    def _unindex_reader(self, conn: Connection) -> None:
        for group in conn.groups_out:
            readers = self._readers.get(group)
            if readers is not None:
                readers.pop(conn.id, None)
                if not readers:
                    del self._readers[group]

    def announce(self, conn: Connection, uid: str, callsign: str) -> bool:
        """Record the uid/callsign a connection speaks as; True if anything changed."""
        if conn.uid == uid and conn.callsign == callsign:
            return False
        self._unindex(conn)
        conn.uid, conn.callsign = uid, callsign
        self._by_uid.setdefault(uid, set()).add(conn)
        if callsign:
            self._by_callsign.setdefault(callsign, set()).add(conn)
        self._announced += 1
        return True

    def _unindex(self, conn: Connection) -> None:
        if conn.uid:
            self._announced -= 1
            _discard(self._by_uid, conn.uid, conn)
        if conn.callsign:
            _discard(self._by_callsign, conn.callsign, conn)

    def readers(self, groups: Iterable[str]) -> Iterable[Connection]:
        """Connections whose OUT groups meet ``groups``, each exactly once."""
        groups = tuple(groups)
        if len(groups) == 1:
            # PERF: the common case (one channel, e.g. __ANON__) needs no set.
            readers = self._readers.get(groups[0])
            return readers.values() if readers else ()
        seen: dict[int, Connection] = {}
        for group in groups:
            seen.update(self._readers.get(group, {}))
        return seen.values()

    def addressed(
        self, uids: Iterable[str], callsigns: Iterable[str], groups: Iterable[str]
    ) -> list[Connection]:
        """Connections named by uid or callsign that may read ``groups``, each once."""
        allowed = set(groups)
        found: dict[int, Connection] = {}
        for uid in uids:
            for conn in self._by_uid.get(uid, ()):
                found[conn.id] = conn
        for callsign in callsigns:
            for conn in self._by_callsign.get(callsign, ()):
                found[conn.id] = conn
        return [conn for conn in found.values() if not allowed.isdisjoint(conn.groups_out)]


def _discard(index: dict[str, set[Connection]], key: str, conn: Connection) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(conn)
        if not members:
            del index[key]
