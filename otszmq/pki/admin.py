"""What ``otszmq ca ...`` and ``otszmq cert ...`` do; the CLI imports this lazily.

Every check that can fail (name, host, CA present, passphrase) runs before anything is
written, so a failed command leaves no half-made files behind.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from otszmq.config import Settings
from otszmq.errors import PkiError
from otszmq.pki import ca, datapackage, pkcs12, policy
from otszmq.pki.commands import PASSPHRASE_ENV
from otszmq.pki.files import SECRET_MODE, PkiPaths, write_atomic
from otszmq.pki.index import format_serial, parse_serial

Handler = Callable[[PkiPaths, argparse.Namespace, Mapping[str, str], TextIO], int]


def run(command: str, settings: Settings, args: argparse.Namespace,
        env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    handlers: dict[tuple[str, str], Handler] = {
        ("ca", "init"): _ca_init,
        ("ca", "server"): _ca_server,
        ("cert", "issue"): _cert_issue,
        ("cert", "revoke"): _cert_revoke,
        ("cert", "list"): _cert_list,
    }
    paths = PkiPaths.for_data_dir(settings.data_dir)
    handler = handlers[(command, args.action)]
    return handler(paths, args, os.environ if env is None else env, out or sys.stdout)


def _ca_init(paths: PkiPaths, args: argparse.Namespace, env: Mapping[str, str],
             out: TextIO) -> int:
    hosts = args.hosts or policy.default_hosts()
    passphrase = args.passphrase or env.get(PASSPHRASE_ENV) or ""
    generated = not passphrase
    if generated:
        passphrase = policy.generate_secret()
    authority = ca.init_ca(paths, passphrase, hosts, key_size=args.key_size,
                           force=args.force, store_passphrase=args.store_passphrase)
    print(f"created a CA in {paths.root}", file=out)
    print(f"  CA certificate  {paths.ca_cert}", file=out)
    print(f"  SHA-256         {policy.fingerprint(authority.certificate)}", file=out)
    print(f"  server cert     {paths.server_cert} for {', '.join(hosts)}", file=out)
    print(f"  server key      {paths.server_key} (unencrypted, 0600: the server starts "
          "unattended)", file=out)
    if args.store_passphrase:
        print(f"  passphrase      stored in {paths.ca_passphrase} (0600) for unattended "
              "enrollment", file=out)
    if generated:
        print("CA passphrase (shown only now; needed to issue and revoke certificates):",
              file=out)
        print(f"  {passphrase}", file=out)
    return 0


def _ca_server(paths: PkiPaths, args: argparse.Namespace, env: Mapping[str, str],
               out: TextIO) -> int:
    paths.require()
    hosts = args.hosts or ca.server_hosts(paths)
    for host in hosts:
        policy.general_name(host)
    authority = ca.load_ca(paths, _passphrase(paths, args, env))
    authority.issue_server(hosts)
    print(f"re-issued {paths.server_cert} for {', '.join(hosts)}; restart the server",
          file=out)
    return 0


def _cert_issue(paths: PkiPaths, args: argparse.Namespace, env: Mapping[str, str],
                out: TextIO) -> int:
    name = policy.validate_name(args.user)
    paths.require()
    host = args.host or ca.server_hosts(paths)[0]
    datapackage.connect_string(host, args.port)  # a bad host or port fails here, early
    if args.days < 1:
        raise PkiError(f"--days {args.days}: must be at least 1")
    authority = ca.load_ca(paths, _passphrase(paths, args, env))
    password = args.p12_password or policy.generate_secret(12)
    outdir: Path = args.out
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PkiError(f"cannot create {outdir}: {exc.strerror}") from exc

    bundle = client_bundle(authority, name, host=host, port=args.port, password=password,
                           key_size=args.key_size, days=args.days)
    issued, files = bundle.issued, bundle.files
    for file_name, (data, mode) in files.items():
        write_atomic(outdir / file_name, data, mode)
    print(f"issued certificate {format_serial(issued.record.serial)} for {name}, valid until "
          f"{issued.record.not_after:%Y-%m-%d}, for {datapackage.connect_string(host, args.port)}",
          file=out)
    for file_name in files:
        print(f"  {outdir / file_name}", file=out)
    if not args.p12_password:
        print(f".p12 password (also inside the zips' .pref): {password}", file=out)
    return 0


@dataclass(frozen=True)
class ClientBundle:
    """A new client certificate and every file a user needs: ``files`` maps a file name
    (NAME.pem/.key/.p12, NAME-atak.zip, NAME-itak.zip, ca.pem) to its bytes and file mode."""

    issued: ca.IssuedClient
    files: dict[str, tuple[bytes, int]]


def client_bundle(authority: ca.CertificateAuthority, name: str, *, host: str, port: int,
                  password: str, key_size: int = policy.DEFAULT_KEY_SIZE,
                  days: int = policy.CLIENT_DAYS) -> ClientBundle:
    """Issue a certificate for ``name`` and build its files (``cert issue``, the admin API)."""
    issued = authority.issue_client(name, key_size=key_size, days=days)
    pem = serialization.Encoding.PEM
    client_p12 = pkcs12.client_p12(name, issued.key, issued.certificate,
                                   issued.ca_certificate, password)
    package = datapackage.ConnectionPackage(
        host=host, port=port, user=name, client_p12=client_p12,
        truststore_p12=pkcs12.truststore_p12(issued.ca_certificate, password),
        truststore_name=_truststore_name(issued.ca_certificate),
        password=password,
    )
    files: dict[str, tuple[bytes, int]] = {
        f"{name}.pem": (issued.certificate.public_bytes(pem), 0o644),
        f"{name}.key": (issued.key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            SECRET_MODE),
        f"{name}.p12": (client_p12, SECRET_MODE),
        f"{name}-atak.zip": (datapackage.atak_package(package), SECRET_MODE),
        f"{name}-itak.zip": (datapackage.itak_package(package), SECRET_MODE),
        "ca.pem": (issued.ca_certificate.public_bytes(pem), 0o644),
    }
    return ClientBundle(issued, files)


def _cert_revoke(paths: PkiPaths, args: argparse.Namespace, env: Mapping[str, str],
                 out: TextIO) -> int:
    if bool(args.user) == bool(args.serial):
        raise PkiError("give either a user NAME or --serial SERIAL")
    serial = parse_serial(args.serial) if args.serial else None
    name = policy.validate_name(args.user) if args.user else None
    paths.require()
    authority = ca.load_ca(paths, _passphrase(paths, args, env))
    if name is not None:
        records = authority.revoke_user(name, args.reason)
    else:
        assert serial is not None
        records = [authority.revoke_serial(serial, args.reason)]
    for record in records:
        print(f"revoked {format_serial(record.serial)} ({record.common_name})", file=out)
    print(f"CRL updated: {paths.crl}; servers pick it up on their next TLS context reload",
          file=out)
    return 0


def _cert_list(paths: PkiPaths, args: argparse.Namespace, env: Mapping[str, str],
               out: TextIO) -> int:
    records = ca.list_records(paths)
    now = datetime.now(UTC)
    if args.json:
        rows = [{**record.to_json(), "status": record.status(now)} for record in records]
        json.dump(rows, out, indent=2)
        out.write("\n")
        return 0
    print(f"{'SERIAL':<41} {'NAME':<24} {'KIND':<6} {'STATUS':<8} {'EXPIRES':<10} REVOKED",
          file=out)
    for record in records:
        revoked = f"{record.revoked_at:%Y-%m-%d} {record.reason}" if record.revoked_at else ""
        print(f"{format_serial(record.serial):<41} {record.common_name:<24} {record.kind:<6} "
              f"{record.status(now):<8} {record.not_after:%Y-%m-%d} {revoked}".rstrip(),
              file=out)
    return 0


def _truststore_name(ca_certificate: x509.Certificate) -> str:
    # Unique per CA: WinTAK mixes up trust stores of different servers with one file name.
    short = policy.fingerprint(ca_certificate).replace(":", "")[:8].lower()
    return f"otszmq-ca-{short}.p12"


def _passphrase(paths: PkiPaths, args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """--passphrase, then $OTSZMQ_CA_PASSPHRASE, then the stored file, then a prompt."""
    for candidate in (args.passphrase, env.get(PASSPHRASE_ENV)):
        if candidate:
            return str(candidate)
    stored = ca.stored_passphrase(paths)
    if stored:
        return stored
    if sys.stdin.isatty():
        return getpass.getpass("CA passphrase: ")
    raise PkiError(f"the CA key is encrypted: give --passphrase or set {PASSPHRASE_ENV}")

