"""The OpenAPI 3 document of the admin API (``/api/``), served at ``/api/openapi.json``.

Written by hand next to the routes; tests/unit/test_api_openapi.py checks that every ``/api/``
route and method the app registers is in it and nothing else is.
"""

from __future__ import annotations

from typing import Any

from otszmq.api import openapi_accounts, openapi_certificates, openapi_listings
from otszmq.api.openapi_parts import error, ok, query

_EUD = {
    "type": "object",
    "properties": {
        "uid": {"type": "string"},
        **{name: {"type": "string", "nullable": True} for name in (
            "callsign", "device", "os", "platform", "version", "phone", "team", "role",
            "last_event_time")},
        "last_status": {"type": "string", "enum": ["Connected", "Disconnected"]},
        "last_lat": {"type": "number", "nullable": True},
        "last_lon": {"type": "number", "nullable": True},
        "groups": {"type": "array", "items": {"type": "string"},
                   "description": "the channels its last report went to"},
    },
    "required": ["uid", "last_status"],
}


def document(version: str) -> dict[str, Any]:
    bad = error("a parameter is missing or invalid")
    return {
        "openapi": "3.0.3",
        "info": {"title": "otszmq admin API", "version": version},
        # Every operation needs a token unless it says "security": [] (health, this document,
        # login).
        "security": openapi_accounts.BEARER,
        "paths": {
            **openapi_accounts.PATHS,
            **openapi_listings.PATHS,
            **openapi_certificates.PATHS,
            "/api/health": {"get": {
                "summary": "Liveness; no authentication",
                "operationId": "health", "security": openapi_accounts.PUBLIC,
                "responses": {"200": ok({
                    "type": "object", "properties": {"status": {"type": "string"}},
                    "required": ["status"]})},
            }},
            "/api/status": {"get": {
                "summary": "Uptime, database size, EUD counts and pipeline counters",
                "operationId": "status",
                "parameters": [query("counters", {"type": "boolean", "default": True},
                                      "listen on the bus for each process's counters")],
                "responses": {"200": ok({"$ref": "#/components/schemas/Status"}),
                              "400": bad},
            }},
            "/api/euds": {"get": {
                "summary": "End-user devices the caller's channels read (admins: all), "
                           "paginated",
                "operationId": "listEuds",
                "parameters": [
                    query("page", {"type": "integer", "minimum": 1, "default": 1}, "page"),
                    query("per_page", {"type": "integer", "minimum": 1, "maximum": 500,
                                        "default": 50}, "rows per page"),
                    query("callsign", {"type": "string"}, "substring, case-insensitive"),
                    query("uid", {"type": "string"}, "exact uid"),
                ],
                "responses": {"200": ok({
                    "type": "object",
                    "properties": {
                        "results": {"type": "array", "items": _EUD},
                        "total": {"type": "integer"}, "page": {"type": "integer"},
                        "per_page": {"type": "integer"},
                    },
                    "required": ["results", "total", "page", "per_page"]}),
                    "400": bad},
            }},
            "/api/openapi.json": {"get": {
                "summary": "This document",
                "operationId": "openapi", "security": openapi_accounts.PUBLIC,
                "responses": {"200": ok({"type": "object"})},
            }},
        },
        "components": {"securitySchemes": openapi_accounts.SECURITY_SCHEMES, "schemas": {
            **openapi_accounts.SCHEMAS,
            **openapi_listings.SCHEMAS,
            **openapi_certificates.SCHEMAS,
            "Error": {"type": "object",
                      "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                      "required": ["error", "detail"]},
            "Status": {"type": "object", "properties": {
                "status": {"type": "string"}, "version": {"type": "string"},
                "node_id": {"type": "string"}, "uptime_seconds": {"type": "number"},
                "database_bytes": {"type": "integer", "nullable": True},
                "euds": {"type": "object", "properties": {
                    "total": {"type": "integer"}, "connected": {"type": "integer"}}},
                "data_packages": {"type": "integer"},
                "processes": {"type": "array", "nullable": True,
                              "items": {"type": "object"}},
                "counters_error": {"type": "string"},
            }, "required": ["status", "uptime_seconds", "euds"]},
        }},
    }
