"""The command lines of ``otszmq ca`` and ``otszmq cert`` (what they do is in ``admin``).

This module only declares arguments and must stay import-light: ``otszmq --help`` and every
other sub-command build the whole parser, and should not pay for ``cryptography``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from otszmq.pki.index import REASONS

PKI_COMMANDS = {
    "ca": "create the certificate authority and the server certificate",
    "cert": "issue, revoke and list client certificates",
}
PASSPHRASE_ENV = "OTSZMQ_CA_PASSPHRASE"  # noqa: S105 -- a variable name, not a secret
_PASSPHRASE_HELP = (
    f"the CA key's passphrase (safer: env {PASSPHRASE_ENV}, which `ps` does not show; "
    "default: the one stored by `ca init --store-passphrase`, else asked on a terminal)"
)
_KEY_SIZES = ("2048", "3072", "4096")


def add_pki_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the actions of ``command`` (``ca`` or ``cert``) to its parser."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    if command == "ca":
        _add_ca(actions)
    else:
        _add_cert(actions)


def _add_ca(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = _action(actions, "init", "create the CA, the server certificate and an empty CRL")
    init.add_argument("--passphrase", help=(
        f"passphrase to encrypt the CA key with (or env {PASSPHRASE_ENV}); "
        "default: a random one, printed once"))
    init.add_argument("--host", dest="hosts", action="append", metavar="HOST", help=(
        "a DNS name or IP address clients use to reach the server; repeat for more "
        "(default: this machine's host name and 127.0.0.1)"))
    init.add_argument("--force", action="store_true",
                      help="replace an existing CA (it is moved aside, not deleted)")
    init.add_argument("--store-passphrase", action="store_true", help=(
        "keep the passphrase in pki/ca.passphrase (0600) so that `serve` can sign "
        "enrollment requests unattended"))
    init.add_argument("--key-size", type=int, choices=[int(s) for s in _KEY_SIZES],
                      default=3072, help="RSA key size (default 3072)")
    server = _action(actions, "server",
                     "re-issue the server certificate (new host names, or renewal)")
    server.add_argument("--host", dest="hosts", action="append", metavar="HOST",
                        help="host name or IP address; repeat (default: the current ones)")
    server.add_argument("--passphrase", help=_PASSPHRASE_HELP)


def _add_cert(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    issue = _action(actions, "issue", "issue a client certificate and its data packages")
    issue.add_argument("user", metavar="NAME", help="user name; becomes the certificate's CN")
    issue.add_argument("--out", type=Path, required=True, metavar="OUTDIR",
                       help="directory for NAME.pem/.key/.p12, the zips and ca.pem")
    issue.add_argument("--host", help=(
        "server address in the packages' connection string "
        "(default: the server certificate's first name)"))
    issue.add_argument("--port", type=int, default=8089,
                       help="TLS CoT port in the connection string (default 8089)")
    issue.add_argument("--passphrase", help=_PASSPHRASE_HELP)
    issue.add_argument("--p12-password", help="password of the .p12 files (default: random)")
    issue.add_argument("--days", type=int, default=730,
                       help="validity in days (default 730)")
    issue.add_argument("--key-size", type=int, choices=[int(s) for s in _KEY_SIZES],
                       default=3072, help="RSA key size (default 3072)")

    revoke = _action(actions, "revoke",
                     "revoke every valid certificate of a user, or one by serial")
    revoke.add_argument("user", metavar="NAME", nargs="?", help="user name")
    revoke.add_argument("--serial", help="revoke this certificate only (hex, as `list` shows)")
    revoke.add_argument("--reason", choices=REASONS, default="unspecified",
                        help="reason recorded in the CRL (default unspecified)")
    revoke.add_argument("--passphrase", help=_PASSPHRASE_HELP)

    listing = _action(actions, "list", "list the certificates issued, with their state")
    listing.add_argument("--json", action="store_true", help="print JSON")


def _action(actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
            help_text: str) -> argparse.ArgumentParser:
    sub = actions.add_parser(name, help=help_text, description=help_text)
    # Same names, destinations and layering as the stages' flags: --data-dir, then
    # OTSZMQ_DATA_DIR, then data_dir in the TOML file.
    sub.add_argument("--config", type=Path, default=None, help="TOML settings file")
    sub.add_argument("--data-dir", dest="data_dir", default=None, help=(
        "directory for state; the CA lives in its pki/ (default 'otszmq-data'; "
        "env OTSZMQ_DATA_DIR)"))
    return sub
