"""``/api/certificates``: client certificates for admins (issue, list, revoke) and users (their
own list and a fresh package).

The CA's index (``pki/index.json``) is the record of what was issued and revoked, whoever did
it (``otszmq cert``, enrollment, this API); the ``certificate`` table adds what only the API
knows (the EUD that enrolled). No private key is kept anywhere, so a package can be handed out
only when its certificate is issued: ``mine/package`` issues a new one each time.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import falcon
from cryptography import x509

from otszmq.api import errors
from otszmq.api.auth import require_admin
from otszmq.api.caller import Caller
from otszmq.api.scope import caller_of, require_user
from otszmq.errors import PkiError
from otszmq.pki import ca, datapackage, policy
from otszmq.pki.admin import client_bundle
from otszmq.pki.files import PkiPaths
from otszmq.pki.index import CertRecord, format_serial, parse_serial
from otszmq.store.models import Certificate, User

log = logging.getLogger(__name__)

CLIENTS = ("atak", "itak")
MAX_BODY = 16 * 1024


def signing_authority(pki_dir: Path) -> ca.CertificateAuthority:
    """The CA, opened with the passphrase ``serve`` (or ``ca init --store-passphrase``) stored.

    NOTE: opened per request and dropped after it, so that the decrypted CA key does not sit
    in every API worker's memory between the rare requests that sign.
    """
    paths = PkiPaths(pki_dir)
    try:
        passphrase = ca.stored_passphrase(paths) if paths.exists() else None
        if passphrase is None:
            raise PkiError(f"no stored CA passphrase in {paths.root}: the server cannot sign "
                           "(run `otszmq ca init --store-passphrase`, or use `otszmq cert issue`)")
        return ca.load_ca(paths, passphrase)
    except PkiError as exc:
        log.error("api: cannot open the CA: %s", exc)
        raise falcon.HTTPServiceUnavailable(title="CA Unavailable", description=str(exc)) from exc


def record_certificate(certificate: x509.Certificate, username: str,
                       eud_uid: str | None = None) -> None:
    """Note an issued certificate in the database (the CA's index has it already)."""
    Certificate.create(
        serial=format_serial(certificate.serial_number), common_name=username,
        username=username, eud_uid=eud_uid, fingerprint_sha256=policy.fingerprint(certificate),
        not_before=certificate.not_valid_before_utc, not_after=certificate.not_valid_after_utc,
    )


def require_caller(req: falcon.Request) -> Caller:
    """A signed-in caller (a token, a certificate, Basic); 403 for the anonymous one."""
    caller = caller_of(req)
    require_user(caller, "certificates")
    return caller


def _json_body(req: falcon.Request) -> dict[str, Any]:
    if req.content_length and req.content_length > MAX_BODY:
        errors.bad_request("body", f"larger than {MAX_BODY} bytes")
    raw = req.bounded_stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        errors.bad_request("body", f"larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        errors.bad_request("body", f"not JSON: {exc}")
    if not isinstance(body, dict):
        errors.bad_request("body", "must be a JSON object")
    return body


def _option(body: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if kind is int and isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        errors.bad_request(name, f"must be a {kind.__name__}")
    return value


class _Issuer:
    """Issue a certificate for a user and answer with its data package."""

    def __init__(self, pki_dir: Path) -> None:
        self._pki_dir = pki_dir

    def issue(self, resp: falcon.Response, username: str, options: dict[str, Any]) -> None:
        try:
            policy.validate_name(username)
        except PkiError as exc:
            errors.bad_request("username", str(exc))
        client = _option(options, "client", str, "atak")
        if client not in CLIENTS:
            errors.bad_request("client", f"must be one of {', '.join(CLIENTS)}")
        port = _option(options, "port", int, datapackage.DEFAULT_PORT)
        days = _option(options, "days", int, policy.CLIENT_DAYS)
        key_size = _option(options, "key_size", int, policy.DEFAULT_KEY_SIZE)
        if days < 1:
            errors.bad_request("days", "must be at least 1")
        if key_size not in policy.KEY_SIZES:
            errors.bad_request("key_size", f"must be one of {policy.KEY_SIZES}")
        paths = PkiPaths(self._pki_dir)
        authority = signing_authority(self._pki_dir)
        host = _option(options, "host", str, "") or ca.server_hosts(paths)[0]
        try:
            datapackage.connect_string(host, port)
        except PkiError as exc:
            errors.bad_request("host", str(exc))
        bundle = client_bundle(authority, username, host=host, port=port,
                               password=policy.generate_secret(12), key_size=key_size, days=days)
        record_certificate(bundle.issued.certificate, username)
        serial = format_serial(bundle.issued.record.serial)
        file_name = f"{username}-{client}.zip"
        resp.content_type = "application/zip"
        resp.data = bundle.files[file_name][0]
        resp.downloadable_as = file_name
        resp.set_header("X-Certificate-Serial", serial)
        log.info("api: issued certificate %s for %s", serial, username)


def _listing(record: CertRecord, rows: dict[str, Certificate], now: datetime) -> dict[str, Any]:
    row = rows.get(format_serial(record.serial))
    return {**record.to_json(), "status": record.status(now),
            "eud_uid": row.eud_uid if row is not None else None}


class Certificates:
    """``GET``: admins see every client certificate, users their own. ``POST`` (admin):
    issue one for ``{"username": .., "client": "atak"|"itak", "host", "port", "days"}`` and
    answer with its data package (zip; the serial in ``X-Certificate-Serial``)."""

    def __init__(self, pki_dir: Path) -> None:
        self._pki_dir = pki_dir
        self._issuer = _Issuer(pki_dir)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = require_caller(req)
        try:
            records = ca.list_records(PkiPaths(self._pki_dir))
        except PkiError as exc:
            raise falcon.HTTPServiceUnavailable(title="CA Unavailable",
                                                description=str(exc)) from exc
        records = [r for r in records if r.kind == "client"
                   and (caller.admin or r.common_name == caller.name)]
        rows = {str(row.serial): row for row in Certificate.select()}
        now = datetime.now(UTC)
        resp.media = [_listing(record, rows, now) for record in records]

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        body = _json_body(req)
        username = body.get("username")
        if not isinstance(username, str):
            errors.bad_request("username", "required, a string")
        if User.get_or_none((User.username == username) & (User.active == True)) is None:  # noqa: E712
            errors.not_found(f"no active user {username!r} (a certificate's CN must be one)")
        self._issuer.issue(resp, username, body)
        resp.status = falcon.HTTP_201


class MyPackage:
    """``GET /api/certificates/mine/package?client=atak|itak``: a new certificate for the
    caller, as a data package; nobody can fetch another user's."""

    def __init__(self, pki_dir: Path) -> None:
        self._issuer = _Issuer(pki_dir)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = require_caller(req)
        self._issuer.issue(resp, caller.name, dict(req.params))


class _Revoker:
    def __init__(self, pki_dir: Path) -> None:
        self._pki_dir = pki_dir

    def _revoke(self, req: falcon.Request, resp: falcon.Response, serial: str,
                reason: str) -> None:
        admin = require_admin(req)
        try:
            number = parse_serial(serial)
        except PkiError as exc:
            errors.bad_request("serial", str(exc))
        try:
            policy.check_reason(reason)
        except PkiError as exc:
            errors.bad_request("reason", str(exc))
        paths = PkiPaths(self._pki_dir)
        known = next((r for r in ca.list_records(paths) if r.serial == number), None)
        if known is None or known.kind != "client":
            errors.not_found(f"no client certificate with serial {format_serial(number)}")
        if known.revoked:
            raise falcon.HTTPConflict(title="Already Revoked",
                                      description=f"certificate {serial} is already revoked")
        authority = signing_authority(self._pki_dir)
        try:
            record = authority.revoke_serial(number, reason)
        except PkiError as exc:  # revoked meanwhile, by another request or the CLI
            raise falcon.HTTPConflict(title="Already Revoked", description=str(exc)) from exc
        Certificate.update(revoked_at=record.revoked_at).where(
            Certificate.serial == format_serial(number)).execute()
        log.info("api: %s revoked certificate %s of %s (%s)", admin.name,
                 format_serial(number), record.common_name, reason)
        resp.media = {**record.to_json(), "status": "revoked"}


class CertificateItem(_Revoker):
    """``DELETE /api/certificates/{serial}?reason=..`` (admin): revoke it; refused from the
    next TLS handshake on every port, and open CoT connections with it are closed."""

    def on_delete(self, req: falcon.Request, resp: falcon.Response, serial: str) -> None:
        self._revoke(req, resp, serial, req.get_param("reason") or "unspecified")


class CertificateRevoke(_Revoker):
    """``POST /api/certificates/{serial}/revoke`` with ``{"reason": ..}`` (admin): the same."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, serial: str) -> None:
        reason = _option(_json_body(req), "reason", str, "unspecified")
        self._revoke(req, resp, serial, reason)


def add_certificate_routes(app: falcon.App[falcon.Request, falcon.Response],
                           pki_dir: Path) -> None:
    app.add_route("/api/certificates", Certificates(pki_dir))
    app.add_route("/api/certificates/mine/package", MyPackage(pki_dir))
    app.add_route("/api/certificates/{serial}", CertificateItem(pki_dir))
    app.add_route("/api/certificates/{serial}/revoke", CertificateRevoke(pki_dir))
