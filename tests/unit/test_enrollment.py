"""Enrollment's pure parts: CSR forms, the Accept choice, header-less PEM, Basic credentials."""

from __future__ import annotations

import base64
import datetime as dt

import falcon
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from otszmq.api.enrollment import pem_body, read_csr, wants_xml
from otszmq.api.tls_auth import basic_credentials
from otszmq.config import load_settings
from otszmq.errors import ConfigError


@pytest.fixture(scope="module")
def csr() -> x509.CertificateSigningRequest:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
            .sign(key, hashes.SHA256()))


def test_a_csr_is_read_from_pem_base64_der_and_der(csr: x509.CertificateSigningRequest) -> None:
    pem = csr.public_bytes(serialization.Encoding.PEM)
    der = csr.public_bytes(serialization.Encoding.DER)
    atak = b"".join(line + b"\r\n" for line in pem.splitlines() if not line.startswith(b"--"))
    for body in (pem, b"\n" + pem + b"\n", atak, base64.b64encode(der), der):
        assert read_csr(body).public_bytes(serialization.Encoding.DER) == der


def test_a_der_request_that_ends_in_a_white_space_byte_is_read_whole() -> None:
    # ECDSA signs with a fresh nonce each time: sign until the DER's last byte is one that
    # bytes.strip() would remove (about one request in 40).
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
    for _ in range(10_000):
        der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        if der[-1:].isspace():
            break
    assert der[-1:].isspace(), "no signature ending in a white space byte in 10,000 tries"
    assert read_csr(der).public_bytes(serialization.Encoding.DER) == der


@pytest.mark.parametrize("body", [b"", b"   ", b"hello", b"\x30\x00", b"MIIB" * 10,
                                  b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END"])
def test_anything_else_is_a_400(body: bytes) -> None:
    with pytest.raises(falcon.HTTPBadRequest):
        read_csr(body)


@pytest.mark.parametrize(("accept", "xml"), [
    (None, False), ("", False), ("*/*", False), ("application/json", False),
    ("application/xml", True), ("text/xml", True), ("application/json, application/xml", False),
])
def test_json_unless_only_xml_is_asked_for(accept: str | None, xml: bool) -> None:
    assert wants_xml(accept) is xml


def test_pem_body_has_no_armour_and_round_trips() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    body = pem_body(cert)
    assert "-----" not in body and body.endswith("\n")
    assert base64.b64decode(body) == cert.public_bytes(serialization.Encoding.DER)


def test_basic_credentials() -> None:
    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert basic_credentials(header("alice:pa:ss")) == ("alice", "pa:ss")
    assert basic_credentials("basic " + base64.b64encode(b"bob:").decode()) == ("bob", "")
    for bad in (None, "", "Bearer abc", "Basic", "Basic !!!", header("nocolon"), header(":pw"),
                "Basic " + base64.b64encode(b"\xff\xfe:x").decode()):
        with pytest.raises(falcon.HTTPUnauthorized):
            basic_credentials(bad)


def test_the_api_ports_are_settings_that_must_differ() -> None:
    settings = load_settings({}, env={})
    assert (settings.https_port, settings.enroll_port) == (8443, 8446)
    off = load_settings({"https_port": "0", "enroll_port": "0"}, env={})
    assert (off.https_port, off.enroll_port) == (0, 0)
    assert load_settings({}, env={"OTSZMQ_ENROLL_PORT": "9446"}).enroll_port == 9446
    with pytest.raises(ConfigError, match="must differ"):
        load_settings({"https_port": "8080"}, env={})
    with pytest.raises(ConfigError, match="https_port"):
        load_settings({"https_port": "70000"}, env={})
