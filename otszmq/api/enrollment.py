"""TAK certificate enrollment (``/Marti/api/tls/*``), as ATAK, iTAK and pytak drive it.

The flow (reference/peers.md §3): ``GET tls/config`` with HTTP Basic gives the subject fields
to put in the request; the client makes a key and a CSR with CN = its user name and
``POST``s it to ``tls/signClient/v2?clientUid=..``; it gets back its certificate and our CA,
then may ``GET tls/profile/enrollment`` for data packages to install.

Shapes follow TAK Server: ``tls/config`` is ``<certificateConfig validityDays=".."><nameEntries>
<nameEntry name="O" value=".."/>..``; ``signClient/v2`` answers JSON ``{"signedCert": ..,
"ca0": ..}`` or, to a client that asks for XML, ``<enrollment><signedCert>..</signedCert>
<ca>..</ca></enrollment>``, each certificate PEM without its BEGIN/END lines. ATAK posts the
CSR as base64 DER without PEM lines; pytak posts PEM; both are accepted, and raw DER too.

Unlike OTS, the CSR's CN must be the authenticated user (403 otherwise): any account could
otherwise get a certificate in another user's name.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import uuid
import zipfile
from pathlib import Path
from typing import Final
from xml.etree import ElementTree as ET

import falcon
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from otszmq.api import errors
from otszmq.api.caller import Caller
from otszmq.api.certificates import record_certificate, signing_authority
from otszmq.api.packages import PackageStore
from otszmq.errors import PkiError
from otszmq.pki import ca, datapackage
from otszmq.pki.files import PkiPaths
from otszmq.pki.policy import CLIENT_DAYS, enrollment_key
from otszmq.pki.tokens import consume_token
from otszmq.store.models import DataPackage

log = logging.getLogger(__name__)

MAX_CSR_BYTES: Final = 64 * 1024
XML_HEADER: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'


def enrolling_caller(req: falcon.Request) -> Caller:
    """Enrollment is for a caller who proved a password or token over TLS (the enrollment
    port) or holds a certificate (the HTTPS port: renewal); never plain HTTP."""
    caller: Caller | None = getattr(req.context, "caller", None)
    if caller is None or caller.via not in ("basic", "certificate"):
        raise falcon.HTTPForbidden(
            title="Forbidden",
            description="certificate enrollment is served on the HTTPS enrollment port, with "
                        "HTTP Basic credentials")
    return caller


def pem_body(certificate: x509.Certificate) -> str:
    """The certificate's PEM without the BEGIN/END lines, as TAK clients expect it."""
    lines = certificate.public_bytes(serialization.Encoding.PEM).decode().splitlines()
    return "".join(line + "\n" for line in lines if line and not line.startswith("-----"))


def read_csr(body: bytes) -> x509.CertificateSigningRequest:
    """A PKCS#10 request from PEM, base64 DER (what ATAK sends) or DER; 400 if none."""
    try:
        # NOTE: raw DER is binary and taken as sent: stripping "white space" would cut a
        # signature that ends in a byte such as 0x20 or 0x0a (one request in ~40).
        if body[:1] == b"\x30":  # an ASN.1 SEQUENCE: raw DER
            return x509.load_der_x509_csr(body)
        text = body.strip()
        if not text:
            errors.bad_request("body", "no certificate request (PKCS#10, PEM or base64 DER)")
        if text.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(text)
        return x509.load_der_x509_csr(base64.b64decode(b"".join(text.split()), validate=True))
    except (ValueError, binascii.Error) as exc:
        errors.bad_request("body", f"not a certificate request (PKCS#10, PEM or base64 "
                                   f"DER): {exc}")


def _common_names(csr: x509.CertificateSigningRequest) -> list[str]:
    return [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def wants_xml(accept: str | None) -> bool:
    """XML only for a client that asks for XML and not JSON: JSON is TAK Server's default
    (for no Accept, ``*/*`` and JSON alike)."""
    accept = (accept or "").lower()
    return "xml" in accept and "json" not in accept


class TlsConfig:
    """``GET /Marti/api/tls/config``: what to put in the CSR's subject besides the CN."""

    def __init__(self, pki_dir: Path) -> None:
        self._pki_dir = pki_dir

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        enrolling_caller(req)
        try:
            subject = ca.ca_certificate(PkiPaths(self._pki_dir)).subject
        except PkiError as exc:
            raise falcon.HTTPServiceUnavailable(title="CA Unavailable",
                                                description=str(exc)) from exc
        organizations = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        organization = str(organizations[0].value) if organizations else "otszmq"
        root = ET.Element("certificateConfig", validityDays=str(CLIENT_DAYS))
        entries = ET.SubElement(root, "nameEntries")
        for name, value in (("O", organization), ("OU", organization)):
            ET.SubElement(entries, "nameEntry", name=name, value=value)
        resp.content_type = falcon.MEDIA_XML
        resp.text = XML_HEADER + ET.tostring(root, encoding="unicode")


class SignClientV2:
    """``POST /Marti/api/tls/signClient/v2?clientUid=..&version=..``: sign the caller's CSR."""

    def __init__(self, pki_dir: Path) -> None:
        self._pki_dir = pki_dir

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = enrolling_caller(req)
        client_uid = req.get_param("clientUid") or None
        if client_uid is not None and len(client_uid) > 200:
            errors.bad_request("clientUid", "longer than 200 characters")
        if req.content_length and req.content_length > MAX_CSR_BYTES:
            errors.bad_request("body", f"larger than {MAX_CSR_BYTES} bytes")
        body = req.bounded_stream.read(MAX_CSR_BYTES + 1)
        if len(body) > MAX_CSR_BYTES:
            errors.bad_request("body", f"larger than {MAX_CSR_BYTES} bytes")
        csr = read_csr(body)
        names = _common_names(csr)
        if names != [caller.name]:
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description=f"the request's common name {names!r} is not the user "
                            f"{caller.name!r}")
        try:
            # Checked before a token's use is spent on a request that cannot be signed.
            if not csr.is_signature_valid:
                raise PkiError("the certificate request's signature does not verify")
            enrollment_key(csr.public_key())
        except PkiError as exc:
            errors.bad_request("body", str(exc))
        authority = signing_authority(self._pki_dir)
        token = getattr(req.context, "enrollment_token", None)
        if token is not None and not consume_token(caller.name, token):
            raise falcon.HTTPUnauthorized(
                title="Unauthorized", description="the enrollment token is used up or expired",
                challenges=['Basic realm="otszmq enrollment"'])
        try:
            certificate = authority.sign_csr(
                csr.public_bytes(serialization.Encoding.DER), caller.name)
        except PkiError as exc:
            errors.bad_request("body", str(exc))
        record_certificate(certificate, caller.name, client_uid)
        log.info("api: enrolled %s (uid %s), certificate %X", caller.name, client_uid,
                 certificate.serial_number)
        signed, ca_body = pem_body(certificate), pem_body(authority.certificate)
        if wants_xml(req.get_header("Accept")):
            root = ET.Element("enrollment")
            ET.SubElement(root, "signedCert").text = signed
            ET.SubElement(root, "ca").text = ca_body
            resp.content_type = falcon.MEDIA_XML
            resp.text = XML_HEADER + ET.tostring(root, encoding="unicode")
        else:
            resp.content_type = falcon.MEDIA_JSON
            resp.text = json.dumps({"signedCert": signed, "ca0": ca_body})


class ProfileEnrollment:
    """``GET /Marti/api/tls/profile/enrollment?clientUid=..``: the data packages an admin
    flagged ``install_on_enrollment``, in one package to import; 204 if there are none."""

    def __init__(self, store: PackageStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = enrolling_caller(req)
        flagged = (DataPackage.select()
                   .where(DataPackage.install_on_enrollment == True)  # noqa: E712
                   .order_by(DataPackage.submission_time))
        rows = [row for row in flagged if self._store.exists(str(row.hash))]
        if not rows:
            resp.status = falcon.HTTP_204
            return
        buffer = io.BytesIO()
        entries = [f"{row.hash}/{Path(str(row.filename)).name or 'package.zip'}" for row in rows]
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for row, entry in zip(rows, entries, strict=True):
                archive.write(self._store.path(str(row.hash)), entry)
            archive.writestr("MANIFEST/manifest.xml", datapackage.manifest(
                str(uuid.uuid4()), f"Enrollment-{caller.name}", entries))
        resp.content_type = "application/zip"
        resp.data = buffer.getvalue()
        resp.downloadable_as = "enrollment.zip"


def add_enrollment_routes(app: falcon.App[falcon.Request, falcon.Response], pki_dir: Path,
                          store: PackageStore) -> None:
    app.add_route("/Marti/api/tls/config", TlsConfig(pki_dir))
    app.add_route("/Marti/api/tls/signClient/v2", SignClientV2(pki_dir))
    app.add_route("/Marti/api/tls/profile/enrollment", ProfileEnrollment(store))
