"""The API's TLS ports on a real node: HTTPS with client certificates (8443) and certificate
enrollment with HTTP Basic (8446), driven by `requests`, `openssl s_client` and the CoT TLS port.

The enrollment requests are the ones ATAK and pytak make: `GET tls/config`, a CSR built from it
with `cryptography`, `POST tls/signClient/v2`; the certificate that comes back then streams.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.support import CotClient, Node, add_user, otszmq_command, running_node, sa_event

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"  # a test user's password
REFUSED = (requests.exceptions.SSLError, requests.exceptions.ConnectionError)
HANDSHAKE_TIMEOUT = 2.0


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("https") / "data", workers=1, tls=True,
                      https=True, extra=("--tls-handshake-timeout", str(HANDSHAKE_TIMEOUT))
                      ) as running:
        yield running


def ca_file(node: Node) -> str:
    return str(node.data_dir / "pki" / "ca.pem")


def https(node: Node, path: str) -> str:
    return f"https://127.0.0.1:{node.https_port}{path}"


def enroll_url(node: Node, path: str) -> str:
    return f"https://127.0.0.1:{node.enroll_port}{path}"


def issue(node: Node, name: str, out: Path, data_dir: Path | None = None,
          passphrase: str | None = None) -> tuple[str, str]:
    """`otszmq cert issue`; the (certificate, key) file pair `requests` takes as ``cert=``."""
    extra = ["--passphrase", passphrase] if passphrase else []
    subprocess.run(
        otszmq_command("cert", "issue", name, "--data-dir", str(data_dir or node.data_dir),
                       "--out", str(out), "--key-size", "2048", *extra),
        check=True, capture_output=True, timeout=60)
    return str(out / f"{name}.pem"), str(out / f"{name}.key")


def make_csr(common_name: str, key: Any = None) -> tuple[Any, bytes]:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "otszmq")]))
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM)


def atak_body(csr_pem: bytes) -> bytes:
    """What ATAK posts: the CSR's base64 DER, without the PEM lines."""
    return b"".join(line for line in csr_pem.splitlines() if not line.startswith(b"-----"))


def sign(node: Node, auth: tuple[str, str], body: bytes, accept: str = "application/json",
         uid: str = "ANDROID-test") -> requests.Response:
    return requests.post(enroll_url(node, "/Marti/api/tls/signClient/v2"),
                         params={"clientUid": uid, "version": "3"}, data=body, auth=auth,
                         headers={"Accept": accept, "Content-Type": "application/pkcs10"},
                         verify=ca_file(node), timeout=30)


def pem(body: str) -> bytes:
    """A certificate from TAK's header-less PEM body."""
    return b"-----BEGIN CERTIFICATE-----\n" + body.strip().encode() + (
        b"\n-----END CERTIFICATE-----\n")


def write_identity(tmp: Path, name: str, key: Any, certificate_pem: bytes) -> tuple[str, str]:
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(certificate_pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_ready_line_names_the_https_and_enrollment_ports(node: Node) -> None:
    assert f"HTTPS 127.0.0.1:{node.https_port}" in node.ready_line
    assert f"enrollment 127.0.0.1:{node.enroll_port}" in node.ready_line


def test_an_issued_certificate_opens_marti_and_api_as_its_user(node: Node, tmp_path: Path
                                                               ) -> None:
    add_user(node, "hanna", "Red")
    cert = issue(node, "hanna", tmp_path / "hanna")
    endpoints = requests.get(https(node, "/Marti/api/clientEndPoints"), cert=cert,
                             verify=ca_file(node), timeout=30)
    assert endpoints.status_code == 200, endpoints.text
    assert endpoints.json()["type"] == "com.bbn.marti.remote.ClientEndpoint"
    me = requests.get(https(node, "/api/me"), cert=cert, verify=ca_file(node), timeout=30)
    assert me.status_code == 200, me.text
    assert me.json() == {"username": "hanna", "role": "user", "groups_in": ["Red"],
                         "groups_out": ["Red"], "via": "certificate"}


def openssl_get(port: int, ca: str, cert: str | None = None, key: str | None = None) -> bytes:
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", ca, "-quiet",
            "-verify_return_error"]
    if cert and key:
        argv += ["-cert", cert, "-key", key]
    request = b"GET /Marti/api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    result = subprocess.run(argv, input=request, capture_output=True, timeout=30, check=False)
    return result.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl client is not installed")
def test_no_revoked_and_foreign_certificates_are_refused_at_the_handshake(
    node: Node, tmp_path: Path
) -> None:
    ca = ca_file(node)
    good = issue(node, "ivan", tmp_path / "ivan")
    add_user(node, "ivan")
    assert b"HTTP/1.1 200" in openssl_get(node.https_port, ca, *good)

    assert b"HTTP/1.1" not in openssl_get(node.https_port, ca)
    with pytest.raises(REFUSED):
        requests.get(https(node, "/Marti/api/version"), verify=ca, timeout=30)

    add_user(node, "mallory")
    revoked = issue(node, "mallory", tmp_path / "mallory")
    assert requests.get(https(node, "/Marti/api/version"), cert=revoked, verify=ca,
                        timeout=30).status_code == 200
    subprocess.run(otszmq_command("cert", "revoke", "mallory", "--data-dir", str(node.data_dir)),
                   check=True, capture_output=True, timeout=60)
    assert b"HTTP/1.1" not in openssl_get(node.https_port, ca, *revoked)
    with pytest.raises(REFUSED):
        requests.get(https(node, "/Marti/api/version"), cert=revoked, verify=ca, timeout=30)

    foreign_dir = tmp_path / "foreign"
    subprocess.run(otszmq_command("ca", "init", "--data-dir", str(foreign_dir), "--key-size",
                                  "2048", "--passphrase", "foreign-passphrase-123"),
                   check=True, capture_output=True, timeout=60)
    foreign = issue(node, "ivan", tmp_path / "eve", data_dir=foreign_dir,
                    passphrase="foreign-passphrase-123")
    assert b"HTTP/1.1" not in openssl_get(node.https_port, ca, *foreign)

    # The server is unaffected: the good certificate still gets in.
    assert requests.get(https(node, "/Marti/api/version"), cert=good, verify=ca,
                        timeout=30).status_code == 200


def test_enrollment_config_sign_and_stream(node: Node, tmp_path: Path) -> None:
    add_user(node, "jules", password=PASSWORD)
    auth = ("jules", PASSWORD)
    config = requests.get(enroll_url(node, "/Marti/api/tls/config"), auth=auth,
                          verify=ca_file(node), timeout=30)
    assert config.status_code == 200, config.text
    assert config.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(config.content)
    assert root.tag == "certificateConfig" and int(root.get("validityDays", "0")) > 0
    entries = {e.get("name"): e.get("value") for e in root.iter("nameEntry")}
    assert entries["O"] and entries["OU"]

    key, csr = make_csr("jules")
    signed = sign(node, auth, atak_body(csr))
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert set(body) == {"signedCert", "ca0"} and "-----" not in body["signedCert"]
    certificate = x509.load_pem_x509_certificate(pem(body["signedCert"]))
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "jules"
    assert pem(body["ca0"]) == Path(ca_file(node)).read_bytes()

    # The XML form, for a client that asks for it; a PEM CSR (pytak's way) and an EC key.
    _, ec_csr = make_csr("jules", ec.generate_private_key(ec.SECP256R1()))
    xml = sign(node, auth, ec_csr, accept="application/xml")
    assert xml.status_code == 200, xml.text
    enrollment = ET.fromstring(xml.content)
    assert enrollment.tag == "enrollment"
    assert x509.load_pem_x509_certificate(pem(enrollment.findtext("signedCert") or ""))
    assert pem(enrollment.findtext("ca") or "") == Path(ca_file(node)).read_bytes()

    # The enrolled certificate streams on the CoT TLS port, and opens the HTTPS port.
    identity = write_identity(tmp_path, "jules", key, pem(body["signedCert"]))
    context = ssl.create_default_context(cafile=ca_file(node))
    context.load_cert_chain(*identity)
    run = tag()
    with CotClient(node.tls_port, tls=context) as jules, node.connect() as tcp:
        jules.send(sa_event(f"uid-{run}", f"JULES-{run}"))
        assert f"uid-{run}".encode() in tcp.recv_until(f"JULES-{run}".encode())[-1]
    assert requests.get(https(node, "/api/me"), cert=identity, verify=ca_file(node),
                        timeout=30).json()["username"] == "jules"

    listed = subprocess.run(otszmq_command("cert", "list", "--json", "--data-dir",
                                           str(node.data_dir)),
                            check=True, capture_output=True, timeout=60).stdout
    assert f"{certificate.serial_number:X}".encode() in listed


def test_enrollment_refusals(node: Node) -> None:
    add_user(node, "kim", password=PASSWORD)
    _, csr = make_csr("kim")
    wrong = sign(node, ("kim", "not the password"), csr)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
    assert sign(node, ("nobody", PASSWORD), csr).status_code == 401
    no_auth = requests.get(enroll_url(node, "/Marti/api/tls/config"), verify=ca_file(node),
                           timeout=30)
    assert no_auth.status_code == 401

    _, someone_else = make_csr("hanna")
    other = sign(node, ("kim", PASSWORD), someone_else)
    assert other.status_code == 403 and "hanna" in other.json()["detail"]

    for bad in (b"", b"not a csr at all", base64.b64encode(b"\x30\x03\x02\x01\x00")):
        refused = sign(node, ("kim", PASSWORD), bad)
        assert refused.status_code == 400, refused.text
        assert set(refused.json()) == {"error", "detail"}

    # Enrollment is never served over plain HTTP.
    plain = requests.post(f"http://127.0.0.1:{node.api_port}/Marti/api/tls/signClient/v2",
                          data=csr, auth=("kim", PASSWORD), timeout=30)
    assert plain.status_code == 403


def issue_token(node: Node, name: str, *flags: str) -> tuple[str, str]:
    out = subprocess.run(otszmq_command("token", "issue", name, "--data-dir",
                                        str(node.data_dir), "--host", "tak.example", *flags),
                         check=True, capture_output=True, timeout=60).stdout.decode()
    qr = re.search(r"tak://com\.atakmap\.app/enroll\?\S+", out)
    assert qr is not None, out
    token = re.search(r"token=([A-Za-z0-9_-]+)", qr.group(0))
    # The token is also printed on its own, above the QR code's line. NOTE: split on that line's
    # label, not on "QR": a random token holds those two letters about once in a hundred.
    assert token is not None and token.group(1) in out.split("QR code text")[0]
    return token.group(1), qr.group(0)


def test_a_one_time_token_enrolls_once(node: Node) -> None:
    add_user(node, "lena")
    token, qr = issue_token(node, "lena", "--uses", "1")
    assert qr.startswith("tak://com.atakmap.app/enroll?host=tak.example%3A") or qr.startswith(
        "tak://com.atakmap.app/enroll?host=tak.example&")
    assert "username=lena" in qr
    auth = ("lena", token)
    assert requests.get(enroll_url(node, "/Marti/api/tls/config"), auth=auth,
                        verify=ca_file(node), timeout=30).status_code == 200
    # The enrollment port serves enrollment only, whatever the credentials.
    for credentials in (auth, ("hanna", "x"), None):
        other = requests.get(enroll_url(node, "/Marti/api/clientEndPoints"), auth=credentials,
                             verify=ca_file(node), timeout=30)
        assert other.status_code == 404
    assert requests.get(enroll_url(node, "/Marti/api/tls/config"), auth=("hanna", token),
                        verify=ca_file(node), timeout=30).status_code == 401

    _, csr = make_csr("lena")
    assert sign(node, auth, csr).status_code == 200
    again = sign(node, auth, csr)
    assert again.status_code == 401, again.text


def test_an_expired_token_is_refused(node: Node) -> None:
    add_user(node, "mona")
    token, _ = issue_token(node, "mona", "--hours", "0.0005")  # 1.8 s
    deadline = time.monotonic() + 30
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status = requests.get(enroll_url(node, "/Marti/api/tls/config"), auth=("mona", token),
                              verify=ca_file(node), timeout=30).status_code
    assert status == 401
    _, csr = make_csr("mona")
    assert sign(node, ("mona", token), csr).status_code == 401


def api_login(node: Node, name: str) -> dict[str, str]:
    result = requests.post(f"http://127.0.0.1:{node.api_port}/api/login",
                           json={"username": name, "password": PASSWORD}, timeout=30)
    assert result.status_code == 200, result.text
    return {"Authorization": f"Bearer {result.json()['token']}"}


def test_admin_certificate_api(node: Node, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{node.api_port}"
    subprocess.run(otszmq_command("user", "add", "root", "--admin", "--password", PASSWORD,
                                  "--data-dir", str(node.data_dir)),
                   check=True, capture_output=True, timeout=60)
    add_user(node, "nina", password=PASSWORD)
    admin, nina = api_login(node, "root"), api_login(node, "nina")

    refused = requests.post(f"{base}/api/certificates", json={"username": "nina"},
                            headers=nina, timeout=30)
    assert refused.status_code == 403
    ghost = requests.post(f"{base}/api/certificates", json={"username": "ghost"},
                          headers=admin, timeout=30)
    assert ghost.status_code == 404 and "ghost" in ghost.json()["detail"]
    assert requests.post(f"{base}/api/certificates", json={"username": "nina", "client": "x"},
                         headers=admin, timeout=30).status_code == 400
    issued = requests.post(f"{base}/api/certificates", headers=admin, timeout=60,
                           json={"username": "nina", "key_size": 2048, "client": "atak"})
    assert issued.status_code == 201, issued.text
    serial = issued.headers["X-Certificate-Serial"]
    with zipfile.ZipFile(BytesIO(issued.content)) as package:
        assert "MANIFEST/manifest.xml" in package.namelist()
        assert "certs/nina.p12" in package.namelist()

    mine = requests.get(f"{base}/api/certificates/mine/package", headers=nina, timeout=60,
                        params={"client": "itak", "key_size": "2048"})
    assert mine.status_code == 200, mine.text
    assert "config.pref" in zipfile.ZipFile(BytesIO(mine.content)).namelist()

    everything = requests.get(f"{base}/api/certificates", headers=admin, timeout=30).json()
    own = requests.get(f"{base}/api/certificates", headers=nina, timeout=30).json()
    assert serial in {row["serial"] for row in own} and len(own) == 2
    assert {row["cn"] for row in own} == {"nina"}
    assert len(everything) > len(own)

    assert requests.delete(f"{base}/api/certificates/{serial}", headers=nina,
                           timeout=30).status_code == 403
    revoked = requests.delete(f"{base}/api/certificates/{serial}", headers=admin, timeout=30)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    again = requests.post(f"{base}/api/certificates/{serial}/revoke", headers=admin, json={},
                          timeout=30)
    assert again.status_code == 409
    assert requests.delete(f"{base}/api/certificates/ABC123", headers=admin,
                           timeout=30).status_code == 404
    assert requests.delete(f"{base}/api/certificates/not-hex", headers=admin,
                           timeout=30).status_code == 400
    rows = requests.get(f"{base}/api/certificates", headers=nina, timeout=30).json()
    assert {row["serial"]: row["status"] for row in rows}[serial] == "revoked"

    # An admin's certificate opens the admin API on the HTTPS port, with no token.
    root_cert = issue(node, "root", tmp_path / "root")
    listing = requests.get(https(node, "/api/certificates"), cert=root_cert,
                           verify=ca_file(node), timeout=30)
    assert listing.status_code == 200 and serial in {row["serial"] for row in listing.json()}


def test_packages_over_https_and_the_enrollment_profile(node: Node, tmp_path: Path) -> None:
    add_user(node, "otto", password=PASSWORD)
    cert, verify = issue(node, "otto", tmp_path / "otto"), ca_file(node)
    profile_url = enroll_url(node, "/Marti/api/tls/profile/enrollment")
    empty = requests.get(profile_url, params={"clientUid": "ANDROID-otto"},
                         auth=("otto", PASSWORD), verify=verify, timeout=30)
    assert empty.status_code == 204

    payload = os.urandom(1_500_000)
    sha = hashlib.sha256(payload).hexdigest()
    uploaded = requests.post(
        https(node, "/Marti/sync/missionupload"), cert=cert, verify=verify, timeout=60,
        params={"hash": sha, "filename": "welcome.zip", "creatorUid": "ANDROID-otto"},
        files={"assetfile": ("welcome.zip", payload, "application/zip")})
    assert uploaded.status_code == 200, uploaded.text
    # The link names the HTTPS port: the app knows the request came over TLS.
    assert uploaded.text == https(node, f"/Marti/sync/content?hash={sha}")
    downloaded = requests.get(uploaded.text, cert=cert, verify=verify, timeout=60)
    assert downloaded.status_code == 200 and downloaded.content == payload

    with sqlite3.connect(node.data_dir / "otszmq.db") as db:
        db.execute("UPDATE data_package SET install_on_enrollment = 1 WHERE hash = ?", (sha,))
    profile = requests.get(profile_url, params={"clientUid": "ANDROID-otto"},
                           auth=("otto", PASSWORD), verify=verify, timeout=30)
    assert profile.status_code == 200
    with zipfile.ZipFile(BytesIO(profile.content)) as package:
        assert package.read(f"{sha}/welcome.zip") == payload
        assert f'zipEntry="{sha}/welcome.zip"' in package.read(
            "MANIFEST/manifest.xml").decode()


def test_stalled_handshakes_are_cut_and_do_not_starve_the_port(node: Node, tmp_path: Path
                                                               ) -> None:
    add_user(node, "pia")
    cert = issue(node, "pia", tmp_path / "pia")
    # More stalled clients than the API has threads (2 workers x 4): each sends the first
    # bytes of a TLS record, so a thread takes it up, and then nothing more.
    stalled = [socket.create_connection(("127.0.0.1", node.https_port)) for _ in range(12)]
    try:
        for sock in stalled:
            sock.sendall(b"\x16\x03\x01\x02\x00")
        started = time.monotonic()
        answered = requests.get(https(node, "/Marti/api/version"), cert=cert,
                                verify=ca_file(node), timeout=30)
        assert answered.status_code == 200
        assert time.monotonic() - started < 3 * HANDSHAKE_TIMEOUT + 5
        for sock in stalled:
            sock.settimeout(3 * HANDSHAKE_TIMEOUT + 5)
            with contextlib.suppress(ConnectionResetError):  # a reset is closed too
                assert sock.recv(100) == b""  # closed by the server, not answered
    finally:
        for sock in stalled:
            sock.close()


def read_response(sock: ssl.SSLSocket) -> bytes:
    """One whole HTTP/1.1 response (headers and a Content-Length body) from a kept-alive
    connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert length is not None, head
    while len(body) < int(length.group(1)):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-body: {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_connection_kept_alive_across_its_revocation_is_refused(node: Node, tmp_path: Path
                                                                  ) -> None:
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "quinn")
    subprocess.run(otszmq_command("user", "add", "chief", "--admin", "--password", PASSWORD,
                                  "--data-dir", str(node.data_dir)),
                   check=True, capture_output=True, timeout=60)
    admin = api_login(node, "chief")
    cert_path, key_path = issue(node, "quinn", tmp_path / "quinn")
    serial = format(x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).serial_number,
                    "X")
    context = ssl.create_default_context(cafile=ca_file(node))
    context.load_cert_chain(cert_path, key_path)
    request = b"GET /api/me HTTP/1.1\r\nHost: x\r\n\r\n"
    with context.wrap_socket(socket.create_connection(("127.0.0.1", node.https_port)),
                             server_hostname="127.0.0.1") as sock:
        sock.settimeout(10)
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        # gunicorn keeps the connection 2 s; the revocation over the API takes ~0.15 s.
        assert requests.delete(f"{base}/api/certificates/{serial}", headers=admin,
                               timeout=30).status_code == 200
        sock.sendall(request)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"revoked" in answer
