"""The OpenAPI paths and schemas of ``/api/certificates`` (:mod:`otszmq.api.certificates`).

Merged into the admin API's document by :mod:`otszmq.api.openapi`. On the HTTPS port a client
certificate stands in for the bearer token.
"""

from __future__ import annotations

from typing import Any, Final

from otszmq.api.openapi_parts import error, query, ref

_SERIAL = {"name": "serial", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "hexadecimal, as the listing and `otszmq cert list` show it"}
_PACKAGE = {"description": "the data package (zip) with the new certificate and key; its "
                           "serial in the X-Certificate-Serial header",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}
_BAD = error("a field is missing or invalid; the detail names it")
_NO_CALLER = error("no valid token or certificate")
_NOT_ADMIN = error("the caller is not an administrator (or is anonymous)")
_NO_CA = error("the server cannot sign: no stored CA passphrase")
_REVOKED = {"200": {"description": "revoked",
                    "content": {"application/json": {"schema": ref("Certificate")}}},
            "400": _BAD, "401": _NO_CALLER, "403": _NOT_ADMIN,
            "404": error("no client certificate with that serial"),
            "409": error("already revoked"), "503": _NO_CA}
_CLIENT_OPTIONS = [
    query("client", {"type": "string", "enum": ["atak", "itak"], "default": "atak"},
           "ATAK/WinTAK or iTAK package layout"),
    query("host", {"type": "string"}, "server address in the package (default: the server "
                                       "certificate's first name)"),
    query("port", {"type": "integer", "default": 8089}, "TLS CoT port in the package"),
]

PATHS: Final[dict[str, Any]] = {
    "/api/certificates": {
        "get": {
            "summary": "Client certificates: every one for administrators, the caller's own "
                       "for users",
            "operationId": "listCertificates",
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"type": "array", "items": ref("Certificate")}}}},
                "401": _NO_CALLER, "403": _NOT_ADMIN},
        },
        "post": {
            "summary": "Issue a certificate for a user (administrators only)",
            "operationId": "issueCertificate",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": ref("NewCertificate")}}},
            "responses": {"201": _PACKAGE, "400": _BAD, "401": _NO_CALLER,
                          "403": _NOT_ADMIN, "404": error("no such active user"),
                          "503": _NO_CA},
        },
    },
    "/api/certificates/mine/package": {"get": {
        "summary": "A new certificate for the caller, as a data package",
        "operationId": "myCertificatePackage",
        "parameters": _CLIENT_OPTIONS,
        "responses": {"200": _PACKAGE, "400": _BAD, "401": _NO_CALLER, "403": _NOT_ADMIN,
                      "503": _NO_CA},
    }},
    "/api/certificates/{serial}": {"delete": {
        "summary": "Revoke a certificate (administrators only)",
        "operationId": "revokeCertificate",
        "parameters": [_SERIAL, query("reason", {"type": "string"}, "CRL reason, e.g. "
                                                                     "key_compromise")],
        "responses": _REVOKED,
    }},
    "/api/certificates/{serial}/revoke": {"post": {
        "summary": "Revoke a certificate (administrators only); body {\"reason\": ..}",
        "operationId": "revokeCertificateByPost",
        "parameters": [_SERIAL],
        "responses": _REVOKED,
    }},
}

SCHEMAS: Final[dict[str, Any]] = {
    "Certificate": {"type": "object", "properties": {
        "serial": {"type": "string"}, "cn": {"type": "string"}, "kind": {"type": "string"},
        "not_before": {"type": "string", "format": "date-time"},
        "not_after": {"type": "string", "format": "date-time"},
        "revoked_at": {"type": "string", "format": "date-time", "nullable": True},
        "reason": {"type": "string", "nullable": True},
        "status": {"type": "string", "enum": ["valid", "expired", "revoked"]},
        "eud_uid": {"type": "string", "nullable": True}},
        "required": ["serial", "cn", "status"]},
    "NewCertificate": {"type": "object", "properties": {
        "username": {"type": "string"},
        "client": {"type": "string", "enum": ["atak", "itak"], "default": "atak"},
        "host": {"type": "string"}, "port": {"type": "integer", "default": 8089},
        "days": {"type": "integer", "default": 730},
        "key_size": {"type": "integer", "enum": [2048, 3072, 4096], "default": 3072}},
        "required": ["username"]},
}
