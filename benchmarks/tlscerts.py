"""Throw-away certificates for TLS benchmark runs: a CA, a server and a client certificate.

    python -m benchmarks.tlscerts DIR

Writes DIR/ca.pem, DIR/server.pem + server.key (SAN 127.0.0.1, ::1, localhost) and DIR/client.pem
+ client.key, all EC P-256 and valid for a day, and prints the file names as JSON. For measuring,
not for serving anyone: the keys are unencrypted.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # NOTE: `python benchmarks/tlscerts.py` puts benchmarks/ on sys.path, not the repo root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import ipaddress
import json
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    usage: x509.ObjectIdentifier | None = None,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certs(directory: Path) -> dict[str, str]:
    """Writes the CA, server and client files into `directory`; returns their paths by role."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("otszmq benchmark CA")
    ca_cert = _issue("otszmq benchmark CA", ca_key, ca_name, ca_key, ca=True)
    paths = {"ca": directory / "ca.pem"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    loopback: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("localhost"),
    ]
    roles = (
        ("server", "localhost", ExtendedKeyUsageOID.SERVER_AUTH, loopback),
        ("client", "BENCH-CLIENT", ExtendedKeyUsageOID.CLIENT_AUTH, None),
    )
    for role, common_name, usage, san in roles:
        key = _key()
        cert = _issue(common_name, key, ca_name, ca_key, ca=False, usage=usage, san=san)
        paths[role] = directory / f"{role}.pem"
        paths[f"{role}_key"] = directory / f"{role}.key"
        paths[role].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(paths[f"{role}_key"], key)
    return {role: str(path) for role, path in paths.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.tlscerts", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    print(json.dumps(make_certs(args.directory), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
