"""The ``otszmq`` command: one sub-command per stage, plus ``serve``, ``stats``, ``ca`` and
``cert``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import zmq

from otszmq import __version__
from otszmq.config import Settings, add_arguments, load_settings
from otszmq.errors import OtszmqError
from otszmq.pki.commands import PKI_COMMANDS, add_pki_arguments
from otszmq.stats import LISTEN_INTERVALS

COMMANDS = {
    "serve": "run every stage of one node (fan-out, workers, ingest) and supervise them",
    "ingest": "run one ingest process: client connections in and out",
    "worker": "run one parser/router worker",
    "fanout": "run the fan-out proxy",
    "store": "run the store: write what the workers parsed into SQLite or PostgreSQL",
    "stats": "print a live snapshot of a running node's counters",
    "api": "run the HTTP API (Marti and /api) under gunicorn",
    "bridge": "run the RabbitMQ bridge: OTS-layout mirror, inbound CoT, federation",
    "user": "manage users: otszmq user add NAME [--password P] [--admin] [--in G,..] [--out G,..]",
    "token": "issue an enrollment token: otszmq token issue NAME [--uses N] [--hours H] "
             "[--host H]",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otszmq", description="A TAK server on ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"otszmq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, help_text in COMMANDS.items():
        sub = commands.add_parser(command, help=help_text, description=help_text)
        add_arguments(sub, command)
        if command == "user":
            sub.add_argument("action", choices=["add"], help="what to do")
            sub.add_argument("username", help="the user name (a client certificate's CN)")
            sub.add_argument("--password", default=None,
                             help="for stream <auth> and enrollment (default: certificate only)")
            sub.add_argument("--admin", action="store_true", help="role administrator")
            sub.add_argument("--in", dest="groups_in", default="",
                             help="comma-separated groups the user writes to (default __ANON__)")
            sub.add_argument("--out", dest="groups_out", default="",
                             help="comma-separated groups the user reads (default __ANON__)")
        if command == "token":
            sub.add_argument("action", choices=["issue"], help="what to do")
            sub.add_argument("username", help="the user the token enrolls (must exist)")
            sub.add_argument("--uses", type=int, default=1,
                             help="certificates it may sign (default 1; 0: unlimited)")
            sub.add_argument("--hours", type=float, default=24.0,
                             help="hours it stays valid (default 24)")
            sub.add_argument("--host", default=None, help=(
                "server address in the QR string (default: the server certificate's "
                "first name)"))
        if command == "stats":
            sub.add_argument("--json", action="store_true", help="print JSON")
            sub.add_argument("--wait", type=float, default=None,
                             help=f"seconds to listen (default: {LISTEN_INTERVALS:g} stats "
                             "intervals)")
    for command, help_text in PKI_COMMANDS.items():
        sub = commands.add_parser(command, help=help_text, description=help_text)
        add_pki_arguments(sub, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags: dict[str, Any] = vars(args)
    try:
        settings = load_settings(flags, config_file=args.config)
        return _run(args.command, settings, args)
    except OtszmqError as exc:
        print(f"otszmq {args.command}: {exc}", file=sys.stderr)
        return 2


def _run(command: str, settings: Settings, args: argparse.Namespace) -> int:
    if command == "serve":
        from otszmq.runtime import setup_logging
        from otszmq.supervisor import Supervisor, build_children

        setup_logging(settings, "serve")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.tls_port or (settings.api_port and (settings.https_port
                                                        or settings.enroll_port)):
            from otszmq.pki.bootstrap import ensure_ca

            ensure_ca(settings.pki_dir)
        return Supervisor(settings, build_children(settings)).run()
    if command == "user":
        from otszmq.store.migrations import open_migrated
        from otszmq.users import add_user

        database, _ = open_migrated(settings.store_database_url)
        try:
            add_user(
                database, args.username, password=args.password, admin=args.admin,
                groups_in=args.groups_in.split(","), groups_out=args.groups_out.split(","),
            )
        finally:
            database.close()
        print(f"user {args.username} added")
        return 0
    if command == "token":
        from otszmq.pki.tokens import run_token_command

        return run_token_command(settings, args)
    if command == "ingest":
        from otszmq.ingest.main import run as run_ingest

        return run_ingest(settings)
    if command == "worker":
        from otszmq.workers.main import run as run_worker

        return run_worker(settings)
    if command == "fanout":
        from otszmq.fanout.main import run as run_fanout

        return run_fanout(settings)
    if command == "store":
        from otszmq.store.main import run as run_store

        return run_store(settings)
    if command == "bridge":
        from otszmq.bridge.main import run as run_bridge

        return run_bridge(settings)
    if command == "api":
        from otszmq.api.main import run as run_api

        return run_api(settings)
    if command == "stats":
        from otszmq.stats import collect, render

        logging.basicConfig(level=logging.WARNING)
        wait = args.wait if args.wait is not None else LISTEN_INTERVALS * settings.stats_interval
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            snapshots = collect(context, settings.fanout_out_endpoint, wait)
        finally:
            context.term()
        render(snapshots, sys.stdout, as_json=args.json)
        return 0
    if command in PKI_COMMANDS:
        from otszmq.pki.admin import run as run_pki

        return run_pki(command, settings, args)
    raise AssertionError(command)
