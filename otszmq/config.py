"""Layered settings: defaults, then a TOML file, then ``OTSZMQ_*`` variables, then flags.

One frozen :class:`Settings` dataclass declares every setting once; its field
metadata says which commands take it and what it means. From that single table
come the command-line flags (``--tcp-port``), the environment variables
(``OTSZMQ_TCP_PORT``) and the TOML keys (``tcp_port``), so they cannot drift
apart. Values are validated once, at start-up, with errors that name the
setting and where its bad value came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import socket
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otszmq.errors import ConfigError

ENV_PREFIX = "OTSZMQ_"
LOG_LEVELS = ("debug", "info", "warning", "error")
STORE_PRIORITIES = ("idle", "low", "normal")
SERVER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# Which commands take a setting. `serve` starts every stage, so it takes them all.
_NODE = frozenset(
    {"serve", "ingest", "worker", "fanout", "stats", "store", "api", "user", "bridge", "token"}
)
_INGEST = frozenset({"serve", "ingest"})
_WORKER = frozenset({"serve", "worker"})
_FANOUT = frozenset({"serve", "fanout"})
_STORE = frozenset({"serve", "store"})
_API = frozenset({"serve", "api"})
# Who injects server-made events (otszmq.inject), and ingest, which takes them.
_INJECT = frozenset({"serve", "ingest", "api", "bridge"})
_BRIDGE = frozenset({"serve", "bridge"})


def _opt(default: Any, help_text: str, commands: frozenset[str], *, hidden: bool = False) -> Any:
    return field(
        default=default, metadata={"help": help_text, "commands": commands, "hidden": hidden}
    )


@dataclass(frozen=True)
class Settings:
    """Every setting of one otszmq process; stage configs are derived from it."""

    data_dir: Path = _opt(Path("otszmq-data"), "directory for state and ipc sockets", _NODE)
    log_level: str = _opt("info", "one of " + ", ".join(LOG_LEVELS), _NODE)
    bind: str = _opt("0.0.0.0", "address the client ports listen on", _INGEST | _API)
    tcp_port: int = _opt(8088, "plain TCP CoT port (0: off)", _INGEST)
    tls_port: int = _opt(8089, "mutual-TLS CoT port (0: off)", _INGEST)
    tls_handshake_timeout: float = _opt(
        10.0, "seconds a TLS client has to finish its handshake", _INGEST | _API
    )
    workers: int = _opt(0, "parser worker processes (0: one per core)", frozenset({"serve"}))
    ingest_processes: int = _opt(
        1, "ingest processes sharing the client ports (SO_REUSEPORT)", _INGEST | _WORKER
    )
    max_event_size: int = _opt(1 << 20, "largest accepted event, bytes", _INGEST | _BRIDGE)
    idle_timeout: float = _opt(300.0, "close a client silent this long, seconds", _INGEST)
    client_queue_bytes: int = _opt(
        4 << 20, "outbound backlog bound per client, bytes", _INGEST
    )
    slow_client_timeout: float = _opt(
        10.0, "disconnect a client over its backlog bound this long, seconds", _INGEST
    )
    replay_limit: int = _opt(
        50_000, "map items (latest per uid) kept for replay to new clients", _INGEST
    )
    pending_limit: int = _opt(
        10_000, "events held while no worker is alive; past it clients are not read", _INGEST
    )
    worker_inflight_limit: int = _opt(
        5_000, "events in flight to one worker before its clients are not read", _INGEST
    )
    source_inflight_limit: int = _opt(
        1_000, "events of one client in flight to its worker before that client is not read",
        _INGEST,
    )
    work_endpoint: str = _opt(
        "", "ingest: ZeroMQ endpoint it binds for workers (default ipc in data dir)", _INGEST
    )
    work_endpoints: tuple[str, ...] = _opt(
        (), "worker: comma-separated ingest endpoints it connects to", _WORKER
    )
    inject: bool = _opt(
        True, "bind the inject endpoint for server-made events (only one ingest of a node may: "
        "serve gives its others false)", _INGEST,
    )
    inject_endpoint: str = _opt(
        "", "endpoint the first ingest binds for server-made events from the API and bridge "
        "(default ipc in data dir)", _INJECT,
    )
    fanout_in: str = _opt("", "fan-out proxy input endpoint (publishers connect)", _NODE)
    fanout_out: str = _opt("", "fan-out proxy output endpoint (subscribers connect)", _NODE)
    fanout_hwm: int = _opt(200_000, "messages queued per fan-out peer before loss", _NODE)
    stats_interval: float = _opt(1.0, "seconds between counter snapshots", _NODE)
    name: str = _opt("", "process name in logs and stats (default: role-pid)", _NODE)
    # -- store (otszmq/store) --
    store: bool = _opt(
        True, "run the store (false: nothing is persisted, workers build no records)",
        frozenset({"serve", "worker", "ingest"}),
    )
    database_url: str = _opt(
        "", "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/NAME (default: SQLite "
        "otszmq.db in the data dir)", _STORE | _API | {"user", "ingest", "token"},
    )
    store_priority: str = _opt(
        "idle", "CPU priority of the store's database writer process: idle (only what routing "
        "leaves; Linux SCHED_IDLE), low (nice 10) or normal", _STORE,
    )
    store_work_slice: float = _opt(
        0.001, "seconds the store's writer works before it leaves its core for 0.2 ms, so that "
        "a waiting routing process can have it (0: never)", _STORE,
    )
    store_raw_xml: bool = _opt(True, "keep each event's XML in the CoT log", _STORE)
    store_queue_limit: int = _opt(
        50_000, "records waiting for the database (one worker's batch may pass it), then "
        "batches are dropped and counted", _STORE,
    )
    # PERF: one transaction of 2,000 records costs SQLite less per record than four of 500 (each
    # commit rewrites the index pages it touched); measured here, with the 0.1 s linger that
    # lets a batch fill, 15% less store CPU per record (47.5 vs 55.8 us, interleaved runs).
    store_batch_size: int = _opt(2000, "records written per transaction, at most", _STORE)
    store_flush_interval: float = _opt(
        0.1, "seconds a batch may wait to fill before it is written (0: at once)", _STORE
    )
    points_retention_days: float = _opt(7.0, "keep points this many days (0: forever)", _STORE)
    cot_retention_days: float = _opt(7.0, "keep the CoT log this many days (0: forever)", _STORE)
    chat_retention_days: float = _opt(
        30.0, "keep chat messages this many days (0: forever)", _STORE
    )
    store_prune_interval: float = _opt(600.0, "seconds between retention runs", _STORE)
    # -- HTTP API (otszmq/api) --
    api_port: int = _opt(8080, "plain HTTP port of the API, Marti and /api (0: off)", _API)
    api_workers: int = _opt(2, "gunicorn worker processes of the API", _API)
    upload_max_bytes: int = _opt(100 << 20, "largest accepted data package, bytes", _API)
    https_port: int = _opt(
        8443, "HTTPS port of the API; a client certificate from our CA is required (0: off)",
        _API,
    )
    enroll_port: int = _opt(
        8446, "HTTPS port for certificate enrollment, HTTP Basic with a password or an "
        "enrollment token (0: off)", _API | {"token"},
    )
    api_token_hours: float = _opt(
        24.0, "hours an admin API login token (POST /api/login) stays valid", _API
    )
    # -- RabbitMQ bridge (otszmq/bridge) --
    amqp_url: str = _opt(
        "", "RabbitMQ URL amqp://USER:PASSWORD@HOST:PORT/VHOST for the bridge (empty: no bridge, "
        "nothing of RabbitMQ is needed)", _BRIDGE,
    )
    server_id: str = _opt(
        "", "this server's id in federation (default: host name plus a hash of the data dir)",
        _BRIDGE,
    )
    amqp_federation_exchange: str = _opt(
        "otszmq-federation", "topic exchange federated servers exchange events on", _BRIDGE
    )
    amqp_federated_groups: tuple[str, ...] = _opt(
        (), "comma-separated groups whose events federate (*: all; empty: none)", _BRIDGE
    )
    amqp_inbound_exchange: str = _opt(
        "cot_parser", "direct exchange others publish CoT into (OTS's cot_parser shape)", _BRIDGE
    )
    amqp_inbound_queue: str = _opt(
        "cot_parser", "queue the bridge consumes from the inbound exchange (routing key: the "
        "same name)", _BRIDGE,
    )
    amqp_inbound_groups: tuple[str, ...] = _opt(
        ("__ANON__",), "groups inbound events are written to when the message names none",
        _BRIDGE,
    )
    amqp_mirror: bool = _opt(
        True, "mirror routed events to OTS's firehose/groups/dms/missions exchanges", _BRIDGE
    )
    amqp_mirror_federated: bool = _opt(
        False, "also mirror events that came from other servers (for servers that do not "
        "share one broker)", _BRIDGE,
    )
    amqp_buffer: int = _opt(
        10_000, "events held for RabbitMQ while it is slow or away; then the oldest are "
        "dropped and counted", _BRIDGE,
    )
    bridge_nice: int = _opt(
        10, "CPU niceness the bridge adds to itself, so routing gets the CPU first (0: none)",
        _BRIDGE,
    )
    # -- Meshtastic over RabbitMQ's MQTT plugin (otszmq/bridge/meshtastic) --
    meshtastic: bool = _opt(
        False, "bridge Meshtastic radios: gateways publish to RabbitMQ's MQTT plugin (needs "
        "amqp_url)", _BRIDGE,
    )
    meshtastic_root: str = _opt(
        "msh/US", "root topic the Meshtastic gateways publish under (msh/US or msh.US)", _BRIDGE
    )
    meshtastic_channels: tuple[str, ...] = _opt(
        ("LongFast:AQ==",), "comma-separated Meshtastic channels NAME:BASE64KEY (AQ==: the "
        "default key; none: unencrypted); EUDs go out on the first", _BRIDGE,
    )
    meshtastic_gateway_id: str = _opt(
        "otszmq", "gateway id of the envelopes this server sends to the mesh", _BRIDGE
    )
    meshtastic_position_interval: float = _opt(
        30.0, "seconds between two positions of one EUD sent to the mesh", _BRIDGE
    )
    meshtastic_group: str = _opt(
        "__ANON__", "group mesh events are written to; events written to it go to the mesh",
        _BRIDGE,
    )
    ready_fd: int = _opt(-1, "file descriptor to write 'ready' to", _NODE, hidden=True)

    @property
    def log_level_number(self) -> int:
        return {"debug": 10, "info": 20, "warning": 30, "error": 40}[self.log_level]

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    def ipc(self, name: str) -> str:
        return f"ipc://{self.data_dir.resolve() / name}"

    @property
    def fanout_in_endpoint(self) -> str:
        return self.fanout_in or self.ipc("fanout-in.ipc")

    @property
    def fanout_out_endpoint(self) -> str:
        return self.fanout_out or self.ipc("fanout-out.ipc")

    def work_endpoint_for(self, index: int) -> str:
        """The endpoint ingest process number ``index`` of this node binds."""
        return self.work_endpoint or self.ipc(f"work-{index}.ipc")

    @property
    def inject_endpoint_url(self) -> str:
        """Where server-made events enter the pipeline: bound by ingest process 0."""
        return self.inject_endpoint or self.ipc("inject.ipc")

    @property
    def worker_connects(self) -> tuple[str, ...]:
        return self.work_endpoints or tuple(
            self.ipc(f"work-{i}.ipc") for i in range(self.ingest_processes)
        )

    @property
    def worker_count(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    @property
    def federation_id(self) -> str:
        """``server_id``, or one derived from the host and data dir: stable across restarts,
        distinct for two nodes on one host."""
        if self.server_id:
            return self.server_id
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:8]
        host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
        return f"{host}-{digest}" if host[0].isalnum() else f"h{host}-{digest}"

    @property
    def store_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'otszmq.db'}"


def _fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Settings))


def _convert(name: str, kind: Any, raw: Any, origin: str) -> Any:
    """Turn a raw value (a string from env/flags, or a TOML value) into the field's type."""
    try:
        if kind in ("int", int):
            if isinstance(raw, bool):
                raise ValueError("a boolean is not an integer")
            return int(raw)
        if kind in ("float", float):
            return float(raw)
        if kind in ("bool", bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError("expected true or false")
            return text in ("true", "1", "yes", "on")
        if kind in ("Path", Path):
            return Path(str(raw))
        if kind in ("tuple[str, ...]",):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {type(raw).__name__}")
        return raw
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} (from {origin}): invalid value {raw!r}: {exc}") from exc


def _validate(settings: Settings) -> None:
    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{name}: {what}, got {getattr(settings, name)!r}")

    need(settings.log_level in LOG_LEVELS, "log_level", "must be one of " + ", ".join(LOG_LEVELS))
    need(0 <= settings.tcp_port <= 65535, "tcp_port", "must be a port number 0-65535")
    need(0 <= settings.tls_port <= 65535, "tls_port", "must be a port number 0-65535")
    need(settings.tls_handshake_timeout > 0, "tls_handshake_timeout", "must be > 0")
    need(settings.workers >= 0, "workers", "must be >= 0")
    need(settings.ingest_processes >= 1, "ingest_processes", "must be >= 1")
    need(settings.max_event_size >= 256, "max_event_size", "must be >= 256 bytes")
    need(settings.idle_timeout > 0, "idle_timeout", "must be > 0")
    need(settings.client_queue_bytes >= 4096, "client_queue_bytes", "must be >= 4096")
    need(settings.slow_client_timeout > 0, "slow_client_timeout", "must be > 0")
    need(settings.replay_limit >= 0, "replay_limit", "must be >= 0")
    need(settings.pending_limit >= 0, "pending_limit", "must be >= 0")
    for name, least in (
        ("worker_inflight_limit", 100), ("source_inflight_limit", 10), ("fanout_hwm", 1000)
    ):
        need(getattr(settings, name) >= least, name, f"must be >= {least}")
    need(settings.stats_interval > 0, "stats_interval", "must be > 0")
    url = settings.database_url
    if url and not url.startswith(("sqlite://", "postgresql://", "postgres://")):
        # NOTE: the value is not quoted back: a database URL may hold a password.
        scheme = url.split("://", 1)[0] if "://" in url else "(none)"
        raise ConfigError(f"database_url: must start with sqlite:// or postgresql://, "
                          f"got scheme {scheme!r}")
    need(settings.store_queue_limit >= 1, "store_queue_limit", "must be >= 1")
    need(settings.store_priority in STORE_PRIORITIES, "store_priority",
         "must be one of " + ", ".join(STORE_PRIORITIES))
    need(settings.store_batch_size >= 1, "store_batch_size", "must be >= 1")
    for name in ("store_flush_interval", "store_work_slice", "points_retention_days",
                 "cot_retention_days", "chat_retention_days"):
        need(getattr(settings, name) >= 0, name, "must be >= 0")
    need(settings.store_prune_interval > 0, "store_prune_interval", "must be > 0")
    need(0 <= settings.api_port <= 65535, "api_port", "must be a port number 0-65535")
    need(settings.api_workers >= 1, "api_workers", "must be >= 1")
    need(settings.upload_max_bytes >= 1, "upload_max_bytes", "must be >= 1")
    need(0 <= settings.https_port <= 65535, "https_port", "must be a port number 0-65535")
    need(0 <= settings.enroll_port <= 65535, "enroll_port", "must be a port number 0-65535")
    api_ports = [p for p in (settings.api_port, settings.https_port, settings.enroll_port) if p]
    need(len(api_ports) == len(set(api_ports)), "enroll_port",
         "api_port, https_port and enroll_port must differ")
    need(0 < settings.api_token_hours <= 24 * 366, "api_token_hours", "must be > 0 and <= 8784")
    amqp = settings.amqp_url
    if amqp and not amqp.startswith(("amqp://", "amqps://")):
        # NOTE: not quoted back: an AMQP URL may hold a password.
        raise ConfigError("amqp_url: must start with amqp:// or amqps://")
    need(not settings.server_id or SERVER_ID.fullmatch(settings.server_id) is not None,
         "server_id", "must be 1-64 letters, digits, '.', '_' or '-', starting alphanumeric")
    need(settings.amqp_buffer >= 1, "amqp_buffer", "must be >= 1")
    need(0 <= settings.bridge_nice <= 19, "bridge_nice", "must be 0-19")
    need(settings.meshtastic_position_interval > 0, "meshtastic_position_interval", "must be > 0")
    for mesh_name in ("meshtastic_root", "meshtastic_gateway_id", "meshtastic_group"):
        value = getattr(settings, mesh_name)
        need(bool(value) and not any(c in value for c in "#+ "), mesh_name,
             "must be non-empty, without '#', '+' or spaces")
    need(bool(settings.meshtastic_channels), "meshtastic_channels", "must name a channel")
    for exchange in ("amqp_federation_exchange", "amqp_inbound_exchange", "amqp_inbound_queue"):
        need(bool(getattr(settings, exchange)), exchange, "must not be empty")
    for endpoint_name in ("work_endpoint", "inject_endpoint", "fanout_in", "fanout_out"):
        value = getattr(settings, endpoint_name)
        need(
            not value or value.startswith(("tcp://", "ipc://", "inproc://")),
            endpoint_name, "must be a tcp:// or ipc:// ZeroMQ endpoint",
        )
    if len(str(settings.data_dir.resolve() / "fanout-out.ipc")) > 100:
        raise ConfigError(
            f"data_dir: {settings.data_dir} is too long for ipc:// socket paths "
            "(limit ~100 characters); use a shorter path or tcp:// endpoints"
        )


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add a flag for every setting ``command`` takes; unset flags stay ``None``."""
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    for item in _fields():
        if command not in item.metadata["commands"]:
            continue
        flag = "--" + item.name.replace("_", "-")
        help_text = argparse.SUPPRESS if item.metadata["hidden"] else (
            f"{item.metadata['help']} (default {item.default!r}; env "
            f"{ENV_PREFIX}{item.name.upper()})"
        )
        parser.add_argument(flag, dest=item.name, default=None, help=help_text)


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve the layers into validated :class:`Settings`.

    ``flags`` maps setting names to raw flag values (``None`` = not given);
    ``env`` defaults to ``os.environ``; ``config_file`` (or ``OTSZMQ_CONFIG``)
    names a TOML file whose top-level keys are setting names.
    """
    env = os.environ if env is None else env
    known = {item.name: item for item in _fields()}
    values: dict[str, Any] = {}

    env_config = env.get(f"{ENV_PREFIX}CONFIG")
    path = config_file or (Path(env_config) if env_config else None)
    if path is not None:
        values.update(_read_toml(path, known))
    for name, item in known.items():
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in env:
            values[name] = _convert(name, item.type, env[env_name], f"${env_name}")
    for name, raw in flags.items():
        if raw is not None and name in known:
            values[name] = _convert(name, known[name].type, raw, "--" + name.replace("_", "-"))
    settings = Settings(**values)
    _validate(settings)
    return settings


def _read_toml(path: Path, known: Mapping[str, dataclasses.Field[Any]]) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, raw in document.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        values[name] = _convert(name, known[name].type, raw, str(path))
    return values


def child_flags(settings: Settings, names: Iterable[str]) -> list[str]:
    """Render settings as flags for a child process (the supervisor's hand-off)."""
    argv: list[str] = []
    for name in names:
        value = getattr(settings, name)
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        argv += ["--" + name.replace("_", "-"), text]
    return argv
