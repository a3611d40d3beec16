"""What the CA accepts and issues: names, hosts, passphrases, key sizes, validity periods."""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from otszmq.errors import PkiError
from otszmq.pki.index import REASONS

DEFAULT_KEY_SIZE = 3072
KEY_SIZES = (2048, 3072, 4096)
CA_DAYS = 3650
SERVER_DAYS = 820  # NOTE: iOS refuses TLS server certificates valid for more than 825 days.
CLIENT_DAYS = 730
# Back-date every certificate a little: phones with a clock a few minutes slow would
# otherwise reject a certificate issued "in the future".
CLOCK_SKEW = timedelta(minutes=5)
MIN_PASSPHRASE = 8

# A user name becomes a certificate CN (at most 64 characters, RFC 5280) and a file name,
# so: no path separators, no leading dot, nothing a shell or a zip tool would mangle.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def validate_name(name: str) -> str:
    """Return ``name`` if it can be a certificate's CN and a file name, else raise."""
    if not name:
        raise PkiError("user name is empty")
    if not _NAME.match(name):
        raise PkiError(
            f"user name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', '-' "
            "or '@', starting with a letter or digit (no '/', '\\' or spaces)"
        )
    return name


def validate_passphrase(passphrase: str) -> str:
    if len(passphrase) < MIN_PASSPHRASE:
        raise PkiError(f"CA passphrase is too short: at least {MIN_PASSPHRASE} characters")
    return passphrase


def generate_secret(nbytes: int = 24) -> str:
    """A random passphrase or password, URL-safe base64 (24 bytes: 32 characters)."""
    return secrets.token_urlsafe(nbytes)


def default_hosts() -> list[str]:
    """The server certificate's names when the admin gives none."""
    return [socket.gethostname(), "127.0.0.1"]


def general_name(host: str) -> x509.GeneralName:
    """A subjectAltName entry for ``host``: an IP address, or else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise PkiError(f"host {host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host)


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def check_key_size(key_size: int) -> None:
    if key_size not in KEY_SIZES:
        raise PkiError(f"key size {key_size}: must be one of {', '.join(map(str, KEY_SIZES))}")


def check_reason(reason: str) -> None:
    if reason not in REASONS:
        raise PkiError(f"revocation reason {reason!r}: must be one of {', '.join(REASONS)}")


def key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # End entities: digitalSignature (ECDHE handshakes) + keyEncipherment (RSA key
    # exchange, still used by some TLS 1.2 stacks). The CA: certificate and CRL signing.
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not cert_sign,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def enrollment_key(key: object) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The CSR's key if TAK clients and our TLS stack can both use it, else an error."""
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in (
        "secp256r1", "secp384r1",
    ):
        return key
    raise PkiError("the request's key must be RSA >= 2048 bits or EC P-256/P-384")
