"""The certificate authority: files, certificates, PKCS#12, CRL, TLS handshakes, packages.

RSA key generation dominates the run time, so one CA (2048-bit) is made per module and
every test that changes its state works on its own user names.
"""

from __future__ import annotations

import argparse
import io
import shutil
import socket
import ssl
import subprocess
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from otszmq.errors import PkiError
from otszmq.pki import ca, commands, datapackage, policy
from otszmq.pki.files import PkiPaths
from otszmq.pki.index import REASONS, load_index, parse_serial
from otszmq.pki.pkcs12 import client_p12, truststore_p12
from otszmq.pki.tls import crl_stamp, peer_common_name, server_ssl_context

PASSPHRASE = "test passphrase"
HOSTS = ["localhost", "127.0.0.1"]
KEY = 2048
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def authority(tmp_path_factory) -> ca.CertificateAuthority:
    paths = PkiPaths.for_data_dir(tmp_path_factory.mktemp("data"))
    return ca.init_ca(paths, PASSPHRASE, HOSTS, key_size=KEY)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> ca.CertificateAuthority:
    """Another CA, whose certificates our server must refuse."""
    paths = PkiPaths.for_data_dir(tmp_path_factory.mktemp("foreign"))
    return ca.init_ca(paths, PASSPHRASE, HOSTS, key_size=KEY)


def load_crl(paths: PkiPaths) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(paths.crl.read_bytes())


# --- creating the CA -------------------------------------------------------------------


def test_init_writes_the_layout_with_private_modes(authority):
    paths = authority.paths
    for path in (paths.ca_cert, paths.ca_key, paths.server_cert, paths.server_key,
                 paths.crl, paths.index):
        assert path.is_file(), path
    assert paths.root.stat().st_mode & 0o777 == 0o700
    assert paths.ca_key.stat().st_mode & 0o777 == 0o600
    assert paths.server_key.stat().st_mode & 0o777 == 0o600
    assert not paths.ca_passphrase.exists()  # only with store_passphrase
    assert b"ENCRYPTED PRIVATE KEY" in paths.ca_key.read_bytes()
    with pytest.raises(TypeError):  # encrypted: unusable without the passphrase
        serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
    # The server key loads without a passphrase: the server starts unattended.
    server_key = serialization.load_pem_private_key(paths.server_key.read_bytes(), None)
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert server_key.public_key() == server.public_key()


def test_ca_and_server_certificates(authority):
    ca_cert = authority.certificate
    constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(ca_cert.public_key(), rsa.RSAPublicKey)
    assert ca_cert.public_key().key_size == KEY
    assert ca_cert.signature_hash_algorithm.name == "sha256"

    server = x509.load_pem_x509_certificate(authority.paths.server_cert.read_bytes())
    server.verify_directly_issued_by(ca_cert)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # iOS (iTAK) refuses TLS server certificates valid for more than 825 days.
    assert server.not_valid_after_utc - server.not_valid_before_utc <= timedelta(days=825)
    assert ca.server_hosts(authority.paths) == HOSTS


def test_init_refuses_to_replace_a_ca(authority):
    before = authority.paths.ca_cert.read_bytes()
    with pytest.raises(PkiError, match=r"already exists.*--force"):
        ca.init_ca(authority.paths, PASSPHRASE, HOSTS, key_size=KEY)
    assert authority.paths.ca_cert.read_bytes() == before


def test_init_force_moves_the_old_ca_aside(tmp_path):
    paths = PkiPaths.for_data_dir(tmp_path)
    first = ca.init_ca(paths, PASSPHRASE, HOSTS, key_size=KEY)
    second = ca.init_ca(paths, PASSPHRASE, HOSTS, key_size=KEY, force=True,
                        store_passphrase=True)
    assert first.certificate != second.certificate
    (aside,) = tmp_path.glob("pki.replaced-*")
    assert (aside / "ca.pem").read_bytes() == first.certificate.public_bytes(
        serialization.Encoding.PEM)
    assert paths.ca_passphrase.stat().st_mode & 0o777 == 0o600
    assert ca.stored_passphrase(paths) == PASSPHRASE
    paths.ca_passphrase.chmod(0o644)
    with pytest.raises(PkiError, match="readable by others"):
        ca.stored_passphrase(paths)


@pytest.mark.parametrize(("passphrase", "hosts", "key_size", "message"), [
    ("short", HOSTS, KEY, "too short"),
    (PASSPHRASE, [], KEY, "at least one"),
    (PASSPHRASE, ["bad host/name"], KEY, "neither an IP address nor a DNS name"),
    (PASSPHRASE, HOSTS, 1024, "key size 1024"),
])
def test_init_rejects_bad_input_before_writing(tmp_path, passphrase, hosts, key_size, message):
    paths = PkiPaths.for_data_dir(tmp_path)
    with pytest.raises(PkiError, match=message):
        ca.init_ca(paths, passphrase, hosts, key_size=key_size)
    assert not paths.root.exists()


def test_wrong_passphrase_is_rejected(authority):
    with pytest.raises(PkiError, match="wrong CA passphrase"):
        ca.load_ca(authority.paths, "not the passphrase")
    assert ca.load_ca(authority.paths, PASSPHRASE).certificate == authority.certificate


def test_missing_ca_is_named(tmp_path):
    with pytest.raises(PkiError, match=r"no CA in .*otszmq ca init"):
        ca.load_ca(PkiPaths.for_data_dir(tmp_path), PASSPHRASE)


# --- issuing ---------------------------------------------------------------------------


def test_issued_client_certificate(authority):
    issued = authority.issue_client("alice", key_size=KEY)
    cert = issued.certificate
    cert.verify_directly_issued_by(authority.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert issued.key.public_key() == cert.public_key()
    record = load_index(authority.paths.index).find(cert.serial_number)
    assert record is not None and record.common_name == "alice" and record.kind == "client"
    assert record.status(datetime.now(UTC)) == "valid"
    assert (authority.paths.issued / f"{cert.serial_number:X}.pem").is_file()


@pytest.mark.parametrize("name", [
    "", "../evil", "a/b", "a\\b", ".hidden", "-dash", "with space", "x" * 65, "tab\t",
    "caf\u00e9", "nul\x00",
])
def test_bad_names_are_rejected(authority, name):
    with pytest.raises(PkiError, match="user name"):
        authority.issue_client(name, key_size=KEY)


@pytest.mark.parametrize("name", ["bob", "bob.smith", "u_1", "a@example.org", "x" * 64])
def test_good_names_pass(name):
    assert policy.validate_name(name) == name


def _csr(common_name: str,
         key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([
                   x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TAK"),
               ]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM)


def test_sign_csr_binds_the_certificate_to_the_user(authority):
    cert = authority.sign_csr(_csr("carol"), "carol")
    cert.verify_directly_issued_by(authority.certificate)
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carol")])
    der = x509.load_pem_x509_csr(_csr("carol")).public_bytes(serialization.Encoding.DER)
    assert authority.sign_csr(der, "carol").subject == cert.subject
    with pytest.raises(PkiError, match="is not the user 'carol'"):
        authority.sign_csr(_csr("admin"), "carol")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(PkiError, match="RSA >= 2048"):
        authority.sign_csr(_csr("carol", weak), "carol")
    with pytest.raises(PkiError, match="neither PEM nor DER"):
        authority.sign_csr(b"not a request", "carol")


# --- PKCS#12 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dave(authority):
    return authority.issue_client("dave", key_size=KEY)


def test_client_p12_opens_with_its_password(dave):
    data = client_p12("dave", dave.key, dave.certificate, dave.ca_certificate, "p12 secret")
    key, cert, extra = pkcs12.load_key_and_certificates(data, b"p12 secret")
    assert cert == dave.certificate
    assert key is not None and key.public_key() == dave.certificate.public_key()
    assert extra == [dave.ca_certificate]
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(data, b"wrong")
    with pytest.raises(PkiError, match="must not be empty"):
        client_p12("dave", dave.key, dave.certificate, dave.ca_certificate, "")


def test_truststore_p12_holds_only_the_ca(authority):
    loaded = pkcs12.load_pkcs12(truststore_p12(authority.certificate, "pw"), b"pw")
    assert loaded.key is None and loaded.cert is None
    assert [c.certificate for c in loaded.additional_certs] == [authority.certificate]
    assert loaded.additional_certs[0].friendly_name == b"otszmq-ca"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
@pytest.mark.parametrize("legacy", [False, True])
def test_openssl_reads_the_p12_in_the_legacy_compatible_format(tmp_path, dave, legacy):
    path = tmp_path / "dave.p12"
    path.write_bytes(client_p12("dave", dave.key, dave.certificate, dave.ca_certificate, "pw"))
    command = ["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", "pass:pw"]
    result = subprocess.run(command + (["-legacy"] if legacy else []),
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if legacy and "unable to load provider" in result.stderr:
        pytest.skip("this openssl has no legacy provider")
    assert result.returncode == 0, result.stderr
    report = result.stdout + result.stderr
    # What old Android, iOS and Java keystores read; OpenSSL 3 defaults to AES/PBES2.
    assert "MAC: sha1" in report
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in report
    assert "AES" not in report
    wrong = subprocess.run([*command[:-1], "pass:wrong"], capture_output=True, text=True,
                           timeout=TIMEOUT, check=False)
    assert wrong.returncode != 0


# --- revocation ------------------------------------------------------------------------


def test_revoke_by_user_revokes_all_of_them_and_updates_the_crl(authority):
    first = authority.issue_client("erin", key_size=KEY).certificate
    second = authority.issue_client("erin", key_size=KEY).certificate
    number_before = load_index(authority.paths.index).crl_number
    stamp = crl_stamp(authority.paths.root)

    revoked = authority.revoke_user("erin", "key_compromise")

    assert {r.serial for r in revoked} == {first.serial_number, second.serial_number}
    crl = load_crl(authority.paths)
    assert crl.is_signature_valid(authority.certificate.public_key())
    for cert in (first, second):
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        assert entry is not None
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
            x509.ReasonFlags.key_compromise)
    index = load_index(authority.paths.index)
    assert index.crl_number == number_before + 1
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == (
        index.crl_number)
    record = index.find(first.serial_number)
    assert record is not None and record.reason == "key_compromise"
    assert record.status(datetime.now(UTC)) == "revoked"
    assert crl_stamp(authority.paths.root) != stamp
    with pytest.raises(PkiError, match="no unrevoked certificate for user 'erin'"):
        authority.revoke_user("erin")


def test_revoke_by_serial(authority):
    keep = authority.issue_client("frank", key_size=KEY).certificate
    drop = authority.issue_client("frank", key_size=KEY).certificate
    authority.revoke_serial(drop.serial_number)
    crl = load_crl(authority.paths)
    entry = crl.get_revoked_certificate_by_serial_number(drop.serial_number)
    assert entry is not None
    # "unspecified" is expressed by leaving the reason out (RFC 5280).
    with pytest.raises(x509.ExtensionNotFound):
        entry.extensions.get_extension_for_class(x509.CRLReason)
    assert crl.get_revoked_certificate_by_serial_number(keep.serial_number) is None
    with pytest.raises(PkiError, match="already revoked"):
        authority.revoke_serial(drop.serial_number)
    with pytest.raises(PkiError, match="no certificate with serial"):
        authority.revoke_serial(0xDEADBEEF)
    with pytest.raises(PkiError, match="revocation reason"):
        authority.revoke_serial(keep.serial_number, "because")


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_can_be_signed(authority, reason):
    record = authority.issue_client(f"reason-{reason}"[:64], key_size=KEY).record
    authority.revoke_serial(record.serial, reason)


def test_reissuing_the_server_certificate_supersedes_the_old_one(tmp_path):
    paths = PkiPaths.for_data_dir(tmp_path)
    authority = ca.init_ca(paths, PASSPHRASE, ["old.example.org"], key_size=KEY)
    old = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    authority.issue_server(["new.example.org", "10.0.0.1"], key_size=KEY)
    assert ca.server_hosts(paths) == ["new.example.org", "10.0.0.1"]
    record = load_index(paths.index).find(old.serial_number)
    assert record is not None and record.reason == "superseded"


def test_serials_parse_as_list_prints_them():
    assert parse_serial("0A:ff") == parse_serial("aff") == parse_serial("0xAFF") == 0xAFF
    for bad in ("zz", "", "0"):
        with pytest.raises(PkiError):
            parse_serial(bad)


def test_a_damaged_index_is_named(tmp_path):
    path = tmp_path / "index.json"
    path.write_text("{not json")
    with pytest.raises(PkiError, match=r"index\.json is not valid JSON"):
        load_index(path)
    path.write_text('{"version": 1, "certificates": [{"serial": "1"}]}')
    with pytest.raises(PkiError, match=r"index\.json is damaged"):
        load_index(path)


# --- TLS handshakes on loopback --------------------------------------------------------


def _write_identity(tmp_path: Path, issued: ca.IssuedClient) -> tuple[Path, Path]:
    cert = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(issued.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert, key


def _client_context(authority, identity: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=authority.paths.ca_cert)
    # As strict as Python 3.13's default clients: our certificates must pass it.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if identity:
        context.load_cert_chain(*identity)
    return context


def _handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext,
               server_hostname: str = "localhost") -> tuple[BaseException | None, bool, str]:
    """Run one TLS session over a socketpair; returns (server error, echoed?, peer CN)."""
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(TIMEOUT)
    client_sock.settimeout(TIMEOUT)
    outcome: dict[str, object] = {}

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_sock, server_side=True) as tls:
                outcome["cn"] = peer_common_name(tls.getpeercert())
                tls.sendall(tls.recv(4))
        except (OSError, ssl.SSLError) as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    echoed = False
    try:
        with client_context.wrap_socket(client_sock, server_hostname=server_hostname) as tls:
            tls.sendall(b"ping")
            echoed = tls.recv(4) == b"ping"
    except (OSError, ssl.SSLError):
        echoed = False  # TLS 1.3 reports a refused client certificate only on first read
    finally:
        client_sock.close()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    server_sock.close()
    return outcome.get("error"), echoed, str(outcome.get("cn"))  # type: ignore[return-value]


def test_server_context_settings(authority):
    context = server_ssl_context(authority.paths.root)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_client_with_an_issued_certificate_connects(authority, tmp_path):
    identity = _write_identity(tmp_path, authority.issue_client("grace", key_size=KEY))
    server = server_ssl_context(authority.paths.root)
    server.verify_flags |= ssl.VERIFY_X509_STRICT
    for hostname in HOSTS:  # the DNS name and the IP address are both in the SAN
        error, echoed, cn = _handshake(server, _client_context(authority, identity), hostname)
        assert error is None and echoed and cn == "grace"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_revoked_certificate_is_refused(authority, tmp_path, version):
    issued = authority.issue_client(f"heidi-{version.name}", key_size=KEY)
    identity = _write_identity(tmp_path, issued)
    client = _client_context(authority, identity)
    client.maximum_version = version
    before = server_ssl_context(authority.paths.root)
    assert _handshake(before, client)[1]

    authority.revoke_user(issued.record.common_name)

    error, echoed, _ = _handshake(server_ssl_context(authority.paths.root), client)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "revoked" in error.verify_message
    assert not echoed


def test_a_certificate_from_another_ca_is_refused(authority, foreign, tmp_path):
    identity = _write_identity(tmp_path, foreign.issue_client("ivan", key_size=KEY))
    error, echoed, _ = _handshake(server_ssl_context(authority.paths.root),
                                  _client_context(authority, identity))
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert not echoed


def test_a_client_without_a_certificate_is_refused(authority):
    error, echoed, _ = _handshake(server_ssl_context(authority.paths.root),
                                  _client_context(authority, None))
    assert isinstance(error, ssl.SSLError)
    assert not echoed


def test_server_context_names_missing_files(tmp_path):
    with pytest.raises(PkiError, match="no CA in"):
        server_ssl_context(tmp_path)


def test_peer_common_name():
    assert peer_common_name(None) is None
    assert peer_common_name({"subject": ((("organizationName", "x"),),
                                         (("commonName", "judy"),))}) == "judy"


# --- data packages ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def package(dave) -> datapackage.ConnectionPackage:
    return datapackage.ConnectionPackage(
        host="tak.example.org", port=8089, user="dave",
        client_p12=client_p12("dave", dave.key, dave.certificate, dave.ca_certificate, "pw1"),
        truststore_p12=truststore_p12(dave.ca_certificate, "pw1"),
        truststore_name="otszmq-ca-0123abcd.p12", password="pw1",
    )


def _entries(pref: bytes) -> dict[tuple[str | None, str | None], str | None]:
    root = etree.fromstring(pref)
    return {(section.get("name"), entry.get("key")): entry.text
            for section in root.iter("preference") for entry in section.iter("entry")}


def test_atak_package_layout(package):
    archive = zipfile.ZipFile(io.BytesIO(datapackage.atak_package(package)))
    names = archive.namelist()
    manifest = etree.fromstring(archive.read("MANIFEST/manifest.xml"))
    listed = [c.get("zipEntry") for c in manifest.iter("Content")]
    assert sorted(map(str, listed)) == sorted(n for n in names if n != "MANIFEST/manifest.xml")
    assert all(c.get("ignore") == "false" for c in manifest.iter("Content"))
    parameters = {p.get("name"): p.get("value") for p in manifest.iter("Parameter")}
    assert parameters["uid"] and parameters["name"]
    assert parameters["onReceiveDelete"] == "true"

    prefs = _entries(archive.read("certs/preference.pref"))
    assert prefs[("cot_streams", "connectString0")] == "tak.example.org:8089:ssl"
    assert prefs[("cot_streams", "count")] == "1"
    for section, suffix in (("cot_streams", "0"), ("com.atakmap.app_preferences", "")):
        assert prefs[(section, f"caLocation{suffix}")] == "cert/otszmq-ca-0123abcd.p12"
        assert prefs[(section, f"certificateLocation{suffix}")] == "cert/dave.p12"
        assert prefs[(section, f"caPassword{suffix}")] == "pw1"
    client = archive.read("certs/dave.p12")
    key, cert, _ = pkcs12.load_key_and_certificates(
        client, str(prefs[("com.atakmap.app_preferences", "clientPassword")]).encode())
    assert cert is not None and key is not None
    trust = pkcs12.load_pkcs12(archive.read("certs/otszmq-ca-0123abcd.p12"), b"pw1")
    assert trust.key is None


def test_itak_package_is_flat(package):
    archive = zipfile.ZipFile(io.BytesIO(datapackage.itak_package(package)))
    assert sorted(archive.namelist()) == ["config.pref", "dave.p12", "otszmq-ca-0123abcd.p12"]
    prefs = _entries(archive.read("config.pref"))
    assert prefs[("cot_streams", "connectString0")] == "tak.example.org:8089:ssl"
    assert prefs[("com.atakmap.app_preferences", "certificateLocation")] == "cert/dave.p12"
    assert ("com.atakmap.app_preferences", "displayServerConnectionWidget") not in prefs


@pytest.mark.parametrize(("host", "port", "message"), [
    ("::1", 8089, "IPv6"), ("a b", 8089, "cannot be put"), ("", 8089, "cannot be put"),
    ("tak.example.org", 0, "port 0"),
])
def test_connect_string_rejects(host, port, message):
    with pytest.raises(PkiError, match=message):
        datapackage.connect_string(host, port)


def test_cli_defaults_follow_the_policy():
    """commands.py repeats a few defaults to stay import-light; keep them in step."""
    parser = argparse.ArgumentParser()
    commands.add_pki_arguments(parser, "cert")
    args = parser.parse_args(["issue", "x", "--out", "o"])
    assert args.days == policy.CLIENT_DAYS
    assert args.key_size == policy.DEFAULT_KEY_SIZE
    assert args.port == datapackage.DEFAULT_PORT
