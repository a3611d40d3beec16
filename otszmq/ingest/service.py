"""The ingest stage: client connections in, routed events out to the right clients.

Inbound, each complete event is tagged with its source and sent to that source's
worker (ingest never parses XML; it only spots pings by their type attribute).
Outbound, every routed event from the fan-out is resolved against this process's
own connections and appended to their write batches, which are flushed once per
event-loop iteration.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import unescape as _unescape

import zmq

from otszmq import servercot
from otszmq.errors import CotParseError, WireError
from otszmq.ingest.delivery import Delivery
from otszmq.ingest.framing import event_type
from otszmq.ingest.outbound import HARD_LIMIT_FACTOR
from otszmq.ingest.protocol import CotStreamProtocol
from otszmq.ingest.registry import Connection, Registry
from otszmq.ingest.replay import ReplayCache
from otszmq.ingest.takproto_codec import TakCodec
from otszmq.ingest.throttle import ReadThrottle
from otszmq.ingest.tls import TlsContexts
from otszmq.ingest.workerpool import WorkerPool
from otszmq.metrics import Counters, publish_stats
from otszmq.users import ANONYMOUS, Channels
from otszmq.wire import (
    INJECT_DISCONNECT,
    INJECT_EVENTS,
    INJECT_REGROUP,
    SequenceGaps,
    SourceHeader,
    SourceKind,
    routed_batch,
    unpack_disconnect,
    unpack_inject,
    unpack_regroup,
)

log = logging.getLogger(__name__)


def unescape(value: bytes) -> str:
    return _unescape(value.decode("utf-8", "replace"), {"&quot;": '"', "&apos;": "'"})

_AUTH_ATTRIBUTE = re.compile(rb"""\b(username|password|uid)\s*=\s*(?:"([^"]*)"|'([^']*)')""")

DRAIN_BATCH = 2000
"""Routed events handled per loop iteration before client sockets get a turn (at least one
whole routed batch)."""

PROBE_INTERVAL = 0.25
PROBE_CONN = -1  # the pseudo source of start-up probes
INJECT_CONN = 0  # the pseudo source of server-made events (client connections count from 1)
INJECT_BATCH = 1000
"""Inject messages handled per loop iteration before client sockets get a turn."""


@dataclass(frozen=True)
class IngestConfig:
    name: str
    ingest_id: str
    bind: str
    tcp_port: int
    tls_port: int
    tls_handshake_timeout: float
    pki_dir: Path
    reuse_port: bool
    max_event_size: int
    idle_timeout: float
    client_queue_bytes: int
    slow_client_timeout: float
    replay_limit: int
    pending_limit: int
    inflight_limit: int
    source_inflight_limit: int
    stats_interval: float


class IngestService:
    def __init__(
        self,
        config: IngestConfig,
        router: zmq.Socket[bytes],
        sub: zmq.Socket[bytes],
        stats_pub: zmq.Socket[bytes],
        channels_of: Callable[[str], Channels | None] | None = None,
        authenticate: Callable[[str, str], Channels | None] | None = None,
        inject: zmq.Socket[bytes] | None = None,
    ) -> None:
        self.config = config
        # PULL of server-made events and channel changes (otszmq.inject); the first ingest only.
        self._inject = inject
        self._authenticate = authenticate
        # Blocking (a database query): always called in an executor thread.
        self._channels_of = channels_of
        self._router = router
        self._sub = sub
        self._stats_pub = stats_pub
        self.counters = Counters()
        self.registry = Registry()
        self.replay = ReplayCache(config.replay_limit)
        self.pool = WorkerPool(
            router, self.counters, config.pending_limit, config.inflight_limit,
            config.source_inflight_limit, ReadThrottle(self.registry),
            lambda: asyncio.get_running_loop().call_soon(self.pool.flush),
        )
        self.takcodec = TakCodec()  # TAK protocol v1 clients (negotiated on the TLS port)
        self._conn_ids = itertools.count(1)
        self._gaps = SequenceGaps()
        self._ready = asyncio.Event()
        self.delivery = Delivery(
            config.ingest_id, self.registry, self.replay, self.counters,
            config.client_queue_bytes, self._proto_message, self._maybe_announce,
            self._ready.set,
        )
        self._stopping = False
        self._servers: list[asyncio.Server] = []
        self._tls: TlsContexts | None = None
        self._tls_generation_seen = 0
        self._probe_header = SourceHeader(
            SourceKind.PROBE, config.ingest_id, PROBE_CONN, "probe", "", ()
        )
        c = self.counters
        c.preset(
            "connections_opened", "connections_closed", "events_in", "pings", "auth_frames",
            "framing_errors", "routed_in", "slow_disconnects",
            "idle_disconnects", "fanout_lost", "wire_errors", "delivery_errors",
            "injected_events", "inject_errors", "regroups", "user_disconnects",
        )
        c.gauge("connections", lambda: len(self.registry))
        c.gauge("announced", lambda: self.registry.announced)
        c.gauge("replay_items", lambda: len(self.replay))
        c.gauge("queued_bytes", lambda: sum(
            conn.out.queued_bytes() for conn in self.registry.by_id.values()
        ))

    # -- life cycle -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready_fd: int = -1) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._sub.fileno(), self._drain_routed)
        loop.add_reader(self._router.fileno(), self.pool.receive)
        if self._inject is not None:
            loop.add_reader(self._inject.fileno(), self._drain_inject)
        sweeper = asyncio.create_task(self._sweep_forever())
        try:
            config = self.config
            if config.tcp_port:
                self._servers.append(await loop.create_server(
                    self._new_protocol, config.bind, config.tcp_port,
                    reuse_port=config.reuse_port or None, backlog=4096,
                ))
            if config.tls_port:
                self._tls = TlsContexts(config.pki_dir)
                self._servers.append(await loop.create_server(
                    self._new_protocol, config.bind, config.tls_port, ssl=self._tls.listener,
                    ssl_handshake_timeout=config.tls_handshake_timeout,
                    reuse_port=config.reuse_port or None, backlog=4096,
                ))
            await self._prove_pipeline(stop)
            if not stop.is_set():
                log.info(
                    "%s ready: CoT/TCP port %d, CoT/TLS port %d (0: off), %d workers",
                    config.name, config.tcp_port, config.tls_port, self.pool.alive,
                )
                if ready_fd >= 0:
                    os.write(ready_fd, b"ready\n")
            await stop.wait()
        finally:
            sweeper.cancel()
            await self._shutdown()
            self.pool.flush()  # what the last loop turns dispatched (the ROUTER lingers)
            loop.remove_reader(self._sub.fileno())
            loop.remove_reader(self._router.fileno())
            if self._inject is not None:
                loop.remove_reader(self._inject.fileno())

    async def _prove_pipeline(self, stop: asyncio.Event) -> None:
        """Send probes through worker and fan-out until one comes back to us.

        ZeroMQ subscriptions and connections come up asynchronously; the probe
        returning proves that events from this ingest reach a worker and that
        routed events reach this ingest, with no guessing about timing.
        """
        started = time.monotonic()
        warned = False
        while not self._ready.is_set() and not stop.is_set():
            self.pool.receive()
            self.pool.dispatch(PROBE_CONN, self._probe_header, [])
            self.pool.release(PROBE_CONN)
            try:
                await asyncio.wait_for(self._ready.wait(), PROBE_INTERVAL)
            except TimeoutError:
                if not warned and time.monotonic() - started > 10:
                    log.warning("still waiting for a worker and the fan-out to answer")
                    warned = True

    async def _shutdown(self) -> None:
        self._stopping = True
        for server in self._servers:
            server.close()
        self.delivery.flush()
        for conn in list(self.registry.by_id.values()):
            conn.out.transport.close()
        for server in self._servers:
            await server.wait_closed()

    def _new_protocol(self) -> CotStreamProtocol:
        return CotStreamProtocol(self, next(self._conn_ids))

    # -- events from clients ------------------------------------------------------------

    def connected(self, conn: Connection) -> None:
        self.counters.values["connections_opened"] += 1
        conn.source_header = self._source_header(conn)
        if conn.user:
            # Not routed to or from until its channels are known (a database query).
            conn.held = []
            asyncio.get_running_loop().create_task(self._admit_user(conn))
            return
        self._admit(conn)

    async def _admit_user(self, conn: Connection) -> None:
        channels = await self._look_up(
            conn, self._channels_of, (conn.user,), "unknown_users",
            f"refusing client {conn.peer}: no active user {conn.user!r}",
        )
        if channels is None:
            return
        conn.groups_in, conn.groups_out = channels.groups_in, channels.groups_out
        self._admit(conn)
        self._release_held(conn)

    async def _look_up(
        self,
        conn: Connection,
        lookup: Callable[..., Channels | None] | None,
        args: tuple[str, ...],
        refused_counter: str,
        refusal: str,
    ) -> Channels | None:
        """Run a blocking user lookup in an executor thread; None if the connection is gone
        or refused (then it is closed, counted and logged)."""
        loop = asyncio.get_running_loop()
        try:
            if lookup is None:
                raise RuntimeError("this ingest has no user database")
            channels = await loop.run_in_executor(None, lookup, *args)
        except Exception:
            self.counters.inc("user_lookup_errors")
            log.exception("cannot look up user %r for client %s", args[0], conn.peer)
            channels = None
        if conn.closing:
            return None
        if channels is None:
            self.counters.inc(refused_counter)
            log.warning("%s", refusal)
            self._close(conn, abort=True)
        return channels

    def _release_held(self, conn: Connection) -> None:
        """Route what the client sent while it was being looked up, in order."""
        held, conn.held = conn.held or [], None
        if held:
            self.events_from(conn, held)

    def _admit(self, conn: Connection) -> None:
        conn.source_header = self._source_header(conn)
        self.registry.add(conn)
        state = self.replay.visible(conn.groups_out, time.time())
        if state:
            if conn.out.proto:  # it negotiated TAK protocol while its user was looked up
                state = [self._proto_message(item) for item in state]
            conn.out.transport.write(b"".join(state))
        if conn.user:
            log.info("client %s connected over TLS as user %r (in %s, out %s)", conn.peer,
                     conn.user, ",".join(conn.groups_in), ",".join(sorted(conn.groups_out)))
        else:
            log.debug("client %s connected (conn %d)", conn.peer, conn.id)

    def events_from(self, conn: Connection, events: list[bytes]) -> None:
        """The events one read of ``conn`` completed, in order: one batch to its worker."""
        if conn.held is not None:
            conn.held.extend(events)
            if sum(map(len, conn.held)) > self.config.max_event_size:
                self.reject(conn, "too much sent before its user was looked up")
            return
        counters = self.counters.values
        counters["events_in"] += len(events)
        routable = events
        for data in events:
            # PERF: the substring test is a C scan; the start-tag parse runs only for likely pings.
            if b"t-x-c-t" in data and event_type(data) == b"t-x-c-t":
                counters["pings"] += 1
                self._send_to(conn, servercot.pong())
                routable = [e for e in routable if e is not data]
        if routable:
            assert conn.source_header is not None  # set by connected()
            self.pool.dispatch(conn.id, conn.source_header, routable)

    def auth_from(self, conn: Connection, data: bytes) -> None:
        """``<auth><cot username= password= uid=/></auth>``: log the connection in as a user.

        NOTE: a regex over a small, fixed-shape element, not an XML parse; values are
        XML-unescaped. A connection that is already a user (its certificate) ignores it.
        """
        self.counters.values["auth_frames"] += 1
        if conn.user or conn.held is not None:
            return
        fields = {m[1].decode(): unescape(m[2] if m[2] is not None else m[3])
                  for m in _AUTH_ATTRIBUTE.finditer(data)}
        username, password = fields.get("username", ""), fields.get("password", "")
        if not username or self._authenticate is None:
            self.reject(conn, "stream login without a username, or no user database")
            return
        conn.held = []
        asyncio.get_running_loop().create_task(self._log_in(conn, username, password))

    async def _log_in(self, conn: Connection, username: str, password: str) -> None:
        channels = await self._look_up(
            conn, self._authenticate, (username, password), "login_failures",
            f"closing client {conn.peer}: login as {username!r} failed",
        )
        if channels is None:
            return
        conn.user = username
        self._set_channels(conn, channels.groups_in, channels.groups_out)
        log.info("client %s logged in as %r (in %s)", conn.peer, username,
                 ",".join(channels.groups_in))
        self._release_held(conn)

    def _set_channels(
        self, conn: Connection, groups_in: tuple[str, ...], groups_out: frozenset[str]
    ) -> None:
        before = conn.groups_out
        self.registry.regroup(conn, groups_in, groups_out)
        conn.source_header = self._source_header(conn)
        # Like a new client, it gets the current map state of the channels it now reads.
        state = self.replay.visible(groups_out - before, time.time())
        if state:
            self._send_to(conn, *state)

    def reject(self, conn: Connection, reason: str) -> None:
        self.counters.values["framing_errors"] += 1
        log.warning("closing client %s (conn %d, uid %r): %s", conn.peer, conn.id, conn.uid, reason)
        self._close(conn, abort=True)

    def disconnected(self, conn: Connection, exc: Exception | None) -> None:
        self.counters.values["connections_closed"] += 1
        self.registry.remove(conn)
        conn.closing = True
        if conn.uid and not self._stopping:
            # Through the pipeline like any event of this source: after its last one,
            # routed to its groups, stored, and it clears the replay state everywhere.
            goodbye = servercot.delete(conn.uid, conn.sa_type)
            assert conn.source_header is not None  # set by connected()
            self.pool.dispatch(conn.id, conn.source_header, [goodbye])
        self.pool.release(conn.id)
        log.debug("client %s (uid %r) disconnected: %s", conn.peer, conn.uid, exc or "closed")

    # -- server-made events and channel changes (otszmq.inject) ------------------------

    def _drain_inject(self) -> None:
        inject = self._inject
        assert inject is not None
        for _ in range(INJECT_BATCH):
            try:
                frames = inject.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._injected(frames)
            except WireError as exc:
                self.counters.inc("inject_errors")
                log.warning("dropping a malformed inject message: %s", exc)
        # Edge-triggered fd (see _drain_routed): come back for the rest.
        asyncio.get_running_loop().call_soon(self._drain_inject)

    def _injected(self, frames: list[bytes]) -> None:
        kind = frames[0] if frames else b""
        if kind == INJECT_EVENTS and len(frames) >= 2:
            header = unpack_inject(frames[1])
            events = frames[2:]
            if any(len(event) > self.config.max_event_size for event in events):
                raise WireError(f"an event from {header.source!r} is over max_event_size")
            source = SourceHeader(
                SourceKind.EVENT, self.config.ingest_id, INJECT_CONN, f"inject:{header.source}",
                header.sender_uid, header.groups_in or ANONYMOUS.groups_in, header.origin,
            )
            self.counters.values["injected_events"] += len(events)
            if events:
                self.pool.dispatch(INJECT_CONN, source, events)
        elif kind == INJECT_REGROUP and len(frames) == 2:
            regroup = unpack_regroup(frames[1])
            self.counters.values["regroups"] += 1
            groups_in = regroup.groups_in or ANONYMOUS.groups_in
            groups_out = frozenset(regroup.groups_out) or ANONYMOUS.groups_out
            for conn in self._live_connections_of(regroup.user):
                self._set_channels(conn, groups_in, groups_out)
                log.info("client %s (user %r) now in %s, out %s", conn.peer, conn.user,
                         ",".join(groups_in), ",".join(sorted(groups_out)))
        elif kind == INJECT_DISCONNECT and len(frames) == 2:
            disconnect = unpack_disconnect(frames[1])
            for conn in self._live_connections_of(disconnect.user):
                self.counters.values["user_disconnects"] += 1
                log.warning("closing client %s: user %r was %s", conn.peer, conn.user,
                            disconnect.reason)
                self._close(conn, abort=True)
        else:
            raise WireError(f"unknown inject message {kind[:8]!r} with {len(frames)} frames")

    def _live_connections_of(self, user: str) -> list[Connection]:
        """The user's connections that are not closing, as a list (the caller may close them)."""
        return [conn for conn in self.registry.by_id.values()
                if conn.user == user and not conn.closing]

    # -- routed events from the fan-out --------------------------------------------------

    def _drain_routed(self) -> None:
        sub = self._sub
        deliver = self.delivery.deliver
        counters = self.counters.values
        handled = 0
        while handled < DRAIN_BATCH:
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                batch = routed_batch(frames)
            except WireError as exc:
                self.counters.inc("wire_errors")
                log.error("dropping a malformed pipeline message: %s", exc)
                continue
            events = batch.events
            lost = self._gaps.check(batch.worker, batch.first_seq, len(events))
            if lost:
                self.counters.inc("fanout_lost", lost)
            handled += len(events)
            try:
                deliver(events)
            except Exception:
                # A bug must cost this batch, not the stage.
                self.counters.inc("delivery_errors")
                log.exception("unexpected error delivering a routed batch")
        counters["routed_in"] += handled
        self.delivery.flush()
        self._close_overflowed()
        if handled >= DRAIN_BATCH:
            # The ZeroMQ fd is edge-triggered: keep draining on the next iteration.
            asyncio.get_running_loop().call_soon(self._drain_routed)

    def _maybe_announce(self, conn_id: int, uid: str, callsign: str, sa_type: str) -> None:
        conn = self.registry.by_id.get(conn_id)
        if conn is None or (conn.uid and conn.uid != uid):
            return  # gone, or an event about another uid (a marker this client placed)
        conn.sa_type = sa_type
        if self.registry.announce(conn, uid, callsign):
            conn.source_header = self._source_header(conn)
            log.info("client %s is %r (uid %s)", conn.peer, callsign, uid)

    def _proto_message(self, event: bytes) -> bytes:
        """``event`` as a TAK protocol stream message; b"" (counted) if it cannot be encoded."""
        try:
            data = self.takcodec.encode(event)
        except CotParseError as exc:
            self.counters.inc("proto_encode_errors")
            log.warning("cannot encode an event as TAK protocol: %s", exc)
            return b""
        self.counters.inc("proto_encoded")
        return data

    def _send_to(self, conn: Connection, *events: bytes) -> None:
        self.delivery.send(conn, events)
        asyncio.get_running_loop().call_soon(self.delivery.flush)

    # -- housekeeping --------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = min(1.0, self.config.stats_interval, self.config.idle_timeout / 4)
        next_stats = 0.0
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            self.pool.receive()
            self.pool.sweep(now)
            self._sweep_clients(now)
            self._sweep_revocations()
            self.replay.prune(time.time())
            # The fd may have missed an edge while we were busy: drain anyway.
            self._drain_routed()
            if self._inject is not None:
                self._drain_inject()
            if now >= next_stats:
                next_stats = now + self.config.stats_interval
                publish_stats(self._stats_pub, self.config.name, "ingest", self.counters)

    def _sweep_clients(self, now: float) -> None:
        config = self.config
        for conn in list(self.registry.by_id.values()):
            if now - conn.last_activity > config.idle_timeout and not conn.paused:
                self.counters.values["idle_disconnects"] += 1
                log.info("closing idle client %s (uid %r)", conn.peer, conn.uid)
                self._close(conn, abort=False)
                continue
            why = conn.out.check_bound(config.client_queue_bytes, now, config.slow_client_timeout)
            if why is not None:
                self._slow_disconnect(conn, why)

    def _close_overflowed(self) -> None:
        for conn in self.delivery.take_overflowed():
            if not conn.closing:  # closed meanwhile for another reason: said and counted there
                self._slow_disconnect(conn, f"over {HARD_LIMIT_FACTOR}x its queue bound")

    def _sweep_revocations(self) -> None:
        """After a revocation: new handshakes already check it; close open connections."""
        if self._tls is None:
            return
        self._tls.refresh()
        if self._tls.generation == self._tls_generation_seen:
            return
        self._tls_generation_seen = self._tls.generation
        revoked = self._tls.revoked_serials()
        for conn in list(self.registry.by_id.values()):
            if conn.cert_serial and conn.cert_serial in revoked:
                self.counters.inc("revoked_disconnects")
                log.warning("closing client %s: certificate of user %r was revoked",
                            conn.peer, conn.user)
                self._close(conn, abort=True)

    def _slow_disconnect(self, conn: Connection, why: str) -> None:
        self.counters.values["slow_disconnects"] += 1
        log.warning("disconnecting slow client %s (uid %r): %s", conn.peer, conn.uid, why)
        self._close(conn, abort=True)

    def _close(self, conn: Connection, *, abort: bool) -> None:
        if conn.closing:
            return
        conn.closing = True
        self.registry.remove(conn)
        if abort:
            conn.out.transport.abort()
        else:
            conn.out.transport.close()

    def _source_header(self, conn: Connection) -> SourceHeader:
        return SourceHeader(
            SourceKind.EVENT, self.config.ingest_id, conn.id, conn.peer, conn.uid, conn.groups_in,
        )
