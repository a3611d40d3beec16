"""Create the CA and the server certificate; issue, sign, revoke; keep the CRL current.

Key choices, and the facts behind them:

- RSA, SHA-256 signatures. TAK Server, OTS (RSA-2048) and taky all issue RSA, so RSA is
  what ATAK, iTAK and WinTAK are known to load from a PKCS#12; nobody ships EC client
  certificates to them, so EC would be a bet. 3072-bit by default (NIST's size for use
  past 2030); ``key_size`` is a parameter (tests use 2048). Enrollment CSRs may be EC.
- The CA key is encrypted with the admin's passphrase; there is no default passphrase
  (OTS ships ``atakatak``). The server's own key is stored unencrypted, mode 0600, because
  the server must start unattended: whoever can read it can impersonate the server, but not
  mint client certificates, which needs the CA key.
- Server certificates live at most 825 days, carry the host names in subjectAltName and the
  serverAuth EKU: iOS 13+ (iTAK) rejects TLS server certificates that break any of these.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otszmq.errors import PkiError
from otszmq.pki.files import SECRET_MODE, PkiPaths, locked, make_private_dir, write_atomic
from otszmq.pki.index import CertRecord, Index, load_index, save_index
from otszmq.pki.policy import (
    CA_DAYS,
    CLIENT_DAYS,
    CLOCK_SKEW,
    DEFAULT_KEY_SIZE,
    SERVER_DAYS,
    check_key_size,
    check_reason,
    enrollment_key,
    general_name,
    key_usage,
    validate_name,
    validate_passphrase,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedClient:
    """A freshly issued client certificate with its key (which the CA does not keep)."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    ca_certificate: x509.Certificate
    record: CertRecord


def init_ca(
    paths: PkiPaths,
    passphrase: str,
    hosts: Sequence[str],
    *,
    key_size: int = DEFAULT_KEY_SIZE,
    force: bool = False,
    store_passphrase: bool = False,
    now: datetime | None = None,
) -> CertificateAuthority:
    """Create the CA, the server certificate, an empty index and CRL under ``paths.root``.

    Refuses to replace an existing CA unless ``force``; then the old directory is moved
    aside to ``pki.replaced-<time>`` rather than deleted, since losing a CA key cannot be
    undone. With ``store_passphrase`` the passphrase is kept in ``ca.passphrase`` (0600) so
    that ``serve`` can sign enrollment requests without a human.
    """
    validate_passphrase(passphrase)
    check_key_size(key_size)
    if not hosts:
        raise PkiError("at least one --host is needed for the server certificate")
    for host in hosts:
        general_name(host)
    now = now or datetime.now(UTC)
    if paths.exists():
        if not force:
            raise PkiError(
                f"a CA already exists in {paths.root}; use --force to replace it "
                "(every certificate it issued will stop working)"
            )
        aside = paths.root.with_name(f"{paths.root.name}.replaced-{now:%Y%m%dT%H%M%SZ}")
        try:
            paths.root.rename(aside)
        except OSError as exc:
            raise PkiError(f"cannot move the old CA to {aside}: {exc.strerror}") from exc
        logger.warning("moved the previous CA to %s", aside)
    make_private_dir(paths.root)
    make_private_dir(paths.issued)

    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"otszmq CA {hosts[0]}"[:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "otszmq"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=CA_DAYS))
        # pathlen 0: this CA signs end-entity certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(passphrase.encode())
    write_atomic(paths.ca_key, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption,
    ), SECRET_MODE)
    if store_passphrase:
        write_atomic(paths.ca_passphrase, (passphrase + "\n").encode(), SECRET_MODE)
    write_atomic(paths.ca_cert, certificate.public_bytes(serialization.Encoding.PEM))
    authority = CertificateAuthority(paths, certificate, key)
    with locked(paths):
        authority.commit(Index(), now)
    authority.issue_server(hosts, key_size=key_size, now=now)
    return authority


def load_ca(paths: PkiPaths, passphrase: str) -> CertificateAuthority:
    """Open the CA for signing; a wrong passphrase is a :class:`PkiError`."""
    paths.require()
    try:
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), passphrase.encode())
    except OSError as exc:
        raise PkiError(f"cannot read {paths.ca_key}: {exc.strerror}") from exc
    except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
        raise PkiError(f"wrong CA passphrase: cannot decrypt {paths.ca_key}") from exc
    certificate = ca_certificate(paths)
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != certificate.public_key():
        raise PkiError(f"{paths.ca_key} is not the key of {paths.ca_cert}")
    return CertificateAuthority(paths, certificate, key)


def ca_certificate(paths: PkiPaths) -> x509.Certificate:
    """The CA certificate alone (no passphrase needed): for truststores."""
    paths.require()
    return _load_certificate(paths.ca_cert)


def server_hosts(paths: PkiPaths) -> list[str]:
    """The names and addresses the server certificate was issued for, first one first."""
    certificate = _load_certificate(paths.server_cert)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name.value) for name in names]


def stored_passphrase(paths: PkiPaths) -> str | None:
    """The passphrase kept by ``ca init --store-passphrase``, or ``None``.

    Refuses a file others can read, as ssh does for private keys: it unlocks the CA.
    """
    try:
        mode = paths.ca_passphrase.stat().st_mode & 0o777
        text = paths.ca_passphrase.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PkiError(f"cannot read {paths.ca_passphrase}: {exc.strerror}") from exc
    if mode & 0o077:
        raise PkiError(
            f"{paths.ca_passphrase} is readable by others (mode {mode:o}): chmod 600 it"
        )
    return text.strip() or None


def list_records(paths: PkiPaths) -> list[CertRecord]:
    paths.require()
    return load_index(paths.index).records


class CertificateAuthority:
    """The CA opened for signing: certificate, key and the directory it keeps state in."""

    def __init__(self, paths: PkiPaths, certificate: x509.Certificate,
                 key: rsa.RSAPrivateKey) -> None:
        self.paths = paths
        self.certificate = certificate
        self._key = key

    def issue_client(self, name: str, *, key_size: int = DEFAULT_KEY_SIZE,
                     days: int = CLIENT_DAYS, now: datetime | None = None) -> IssuedClient:
        """A new key pair and client certificate with CN = ``name``."""
        validate_name(name)
        check_key_size(key_size)
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        certificate, record = self._issue(name, key.public_key(), "client", days, now)
        return IssuedClient(certificate, key, self.certificate, record)

    def sign_csr(self, csr_pem: bytes, user: str, *, days: int = CLIENT_DAYS,
                 now: datetime | None = None) -> x509.Certificate:
        """Sign an enrollment CSR for the authenticated ``user``.

        The CSR's CN must be that user: OTS signs whatever CN the CSR names, so any
        account could mint a certificate for any other. The issued certificate carries
        only CN = user, whatever else the CSR asked for.
        """
        validate_name(user)
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            try:
                csr = x509.load_der_x509_csr(csr_pem)
            except ValueError as exc:
                raise PkiError("the certificate request is neither PEM nor DER") from exc
        if not csr.is_signature_valid:
            raise PkiError("the certificate request's signature does not verify")
        names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [user]:
            raise PkiError(f"the request's common name {names!r} is not the user {user!r}")
        public_key = enrollment_key(csr.public_key())
        return self._issue(user, public_key, "client", days, now)[0]

    def issue_server(self, hosts: Sequence[str], *, key_size: int = DEFAULT_KEY_SIZE,
                     now: datetime | None = None) -> x509.Certificate:
        """(Re)issue the server certificate for ``hosts`` and store it with its key.

        A previous server certificate is revoked as superseded, so that the index and the
        CRL say which one is current.
        """
        if not hosts:
            raise PkiError("at least one host is needed for the server certificate")
        check_key_size(key_size)
        now = now or datetime.now(UTC)
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        certificate, _ = self._issue(
            hosts[0], key.public_key(), "server", SERVER_DAYS, now,
            sans=[general_name(host) for host in hosts],
        )
        # NOTE: unencrypted on purpose (the server starts unattended), hence mode 0600.
        write_atomic(self.paths.server_key, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ), SECRET_MODE)
        write_atomic(self.paths.server_cert, certificate.public_bytes(serialization.Encoding.PEM))
        with locked(self.paths):
            index = load_index(self.paths.index)
            previous = [r for r in index.records if r.kind == "server" and not r.revoked
                        and r.serial != certificate.serial_number]
            for record in previous:
                index.replace_record(record.revoke(now, "superseded"))
            if previous:
                self.commit(index, now)
        return certificate

    def revoke_user(self, name: str, reason: str = "unspecified",
                    now: datetime | None = None) -> list[CertRecord]:
        """Revoke every unrevoked client certificate of ``name``; re-sign the CRL."""
        validate_name(name)
        check_reason(reason)
        now = now or datetime.now(UTC)
        with locked(self.paths):
            index = load_index(self.paths.index)
            targets = [r for r in index.records
                       if r.kind == "client" and r.common_name == name and not r.revoked]
            if not targets:
                raise PkiError(f"no unrevoked certificate for user {name!r}")
            revoked = [record.revoke(now, reason) for record in targets]
            for record in revoked:
                index.replace_record(record)
            self.commit(index, now)
        for record in revoked:
            logger.info("revoked certificate %X of %s (%s)", record.serial, name, reason)
        return revoked

    def revoke_serial(self, serial: int, reason: str = "unspecified",
                      now: datetime | None = None) -> CertRecord:
        """Revoke one certificate by serial number; re-sign the CRL."""
        check_reason(reason)
        now = now or datetime.now(UTC)
        with locked(self.paths):
            index = load_index(self.paths.index)
            record = index.find(serial)
            if record is None:
                raise PkiError(f"no certificate with serial {serial:X}")
            if record.revoked:
                raise PkiError(f"certificate {serial:X} is already revoked")
            record = record.revoke(now, reason)
            index.replace_record(record)
            self.commit(index, now)
        logger.info("revoked certificate %X of %s (%s)", serial, record.common_name, reason)
        return record

    def write_crl(self, index: Index, now: datetime) -> None:
        """Sign a CRL of every revoked certificate in ``index``; the caller holds the lock.

        nextUpdate is the CA's own expiry, not a week or a month: ``ssl`` with
        VERIFY_CRL_CHECK_LEAF rejects *every* client once the CRL has expired, and this CRL
        is re-signed on each revocation and read from disk by the server itself, so there
        is no relying party that needs to be told when to fetch a fresh one.
        """
        index.crl_number += 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - CLOCK_SKEW)
            .next_update(self.certificate.not_valid_after_utc)
            .add_extension(x509.CRLNumber(index.crl_number), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
        )
        for record in index.records:
            if record.revoked_at is None:
                continue
            entry = x509.RevokedCertificateBuilder().serial_number(record.serial)
            entry = entry.revocation_date(record.revoked_at)
            if record.reason and record.reason != "unspecified":
                # RFC 5280: leave reasonCode out rather than say "unspecified".
                entry = entry.add_extension(
                    x509.CRLReason(x509.ReasonFlags[record.reason]), critical=False
                )
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(self._key, hashes.SHA256())
        write_atomic(self.paths.crl, crl.public_bytes(serialization.Encoding.PEM))

    def commit(self, index: Index, now: datetime) -> None:
        """Write a new CRL, then the index; the caller holds the lock."""
        # The CRL first: if we die between the two writes, the revocation is already in
        # force, and the next revocation re-derives the CRL from the index anyway.
        self.write_crl(index, now)
        save_index(self.paths.index, index)

    def _issue(
        self, common_name: str, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        kind: str, days: int, now: datetime | None, sans: list[x509.GeneralName] | None = None,
    ) -> tuple[x509.Certificate, CertRecord]:
        if days < 1:
            raise PkiError(f"validity of {days} days: must be at least 1")
        now = now or datetime.now(UTC)
        not_after = min(now + timedelta(days=days), self.certificate.not_valid_after_utc)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else (
            ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        record = CertRecord(
            serial=certificate.serial_number, common_name=common_name, kind=kind,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
        )
        with locked(self.paths):
            index = load_index(self.paths.index)
            index.records.append(record)
            write_atomic(self.paths.issued / f"{certificate.serial_number:X}.pem",
                         certificate.public_bytes(serialization.Encoding.PEM))
            save_index(self.paths.index, index)
        logger.info("issued %s certificate %X for %s", kind, record.serial, common_name)
        return certificate, record

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise PkiError(f"{path} is not a PEM certificate") from exc
