"""PKCS#12 files that every TAK client can open.

OpenSSL 3 and ``cryptography``'s ``BestAvailableEncryption`` write PKCS#12 with PBES2 /
AES-256-CBC and a SHA-256 MAC. Android's older keystores (which ATAK uses), iOS's
``SecPKCS12Import`` (iTAK) and Java 8 keystores fail on those files (openssl/openssl#19495,
chris2511/xca#389, kaikramer/keystore-explorer#302); this is why OTS runs
``openssl pkcs12 -legacy``. We write the format OpenSSL 1.1 wrote by default, which they all
read: keys and certificates encrypted with pbeWithSHA1And3-KeyTripleDES-CBC, a SHA-1 MAC,
2048 iterations. OpenSSL 3 still reads it without ``-legacy`` (3DES is in its default
provider; only RC2-40 needs the legacy one, and we do not use RC2).

NOTE: this weak-looking encryption protects the file in transit only; its password travels
beside it in the data package's ``.pref`` anyway. The key's real protection is the device's
keystore once imported.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    KeySerializationEncryption,
    PrivateFormat,
    pkcs12,
)

from otszmq.errors import PkiError

ITERATIONS = 2048


def _legacy_encryption(password: str) -> KeySerializationEncryption:
    if not password:
        raise PkiError("a PKCS#12 password must not be empty (clients refuse empty ones)")
    return (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(ITERATIONS)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 -- the MAC every TAK client can verify
        .build(password.encode())
    )


def client_p12(name: str, key: rsa.RSAPrivateKey, certificate: x509.Certificate,
               ca_certificate: x509.Certificate, password: str) -> bytes:
    """The user's key, certificate and the CA (so iOS can build the chain), under ``name``."""
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, certificate,
        [pkcs12.PKCS12Certificate(ca_certificate, b"ca")],
        _legacy_encryption(password),
    )


def truststore_p12(ca_certificate: x509.Certificate, password: str,
                   friendly_name: str = "otszmq-ca") -> bytes:
    """The CA certificate alone (never its key), as TAK clients' "trust store".

    Named, as OTS and TAK Server name theirs (``openssl pkcs12 -caname``): keystores list
    certificate-only entries by their friendly name.
    """
    return pkcs12.serialize_key_and_certificates(
        None, None, None,
        [pkcs12.PKCS12Certificate(ca_certificate, friendly_name.encode())],
        _legacy_encryption(password),
    )
