"""The OpenAPI paths and schemas of logging in and of users and groups (:mod:`otszmq.api.accounts`).

Merged into the admin API's document by :mod:`otszmq.api.openapi`; kept apart so that each file
stays the size of what it describes.
"""

from __future__ import annotations

from typing import Any, Final

from otszmq.api.openapi_parts import body, error, ok, query, ref

SECURITY_SCHEMES: Final = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "a token from POST /api/login"},
}
BEARER: Final[list[dict[str, list[str]]]] = [{"bearerAuth": []}]
PUBLIC: Final[list[dict[str, list[str]]]] = []  # an operation's "security": no token needed


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_BAD = error("the body or a parameter is missing or invalid; the detail names the field")
_NO_TOKEN = error("no valid token (missing, malformed, expired or logged out)")
_NOT_ADMIN = error("the caller is not an administrator")
_MISSING = error("no such user or group")
_CONFLICT = error("already exists, or would leave no active administrator")
_PAGE = [
    query("page", {"type": "integer", "minimum": 1, "default": 1}, "page"),
    query("per_page", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
           "rows per page"),
]


def _admin(responses: dict[str, Any]) -> dict[str, Any]:
    return {**responses, "401": _NO_TOKEN, "403": _NOT_ADMIN}


def _page_of(item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "results": {"type": "array", "items": ref(item)}, "total": {"type": "integer"},
        "page": {"type": "integer"}, "per_page": {"type": "integer"}},
        "required": ["results", "total", "page", "per_page"]}


PATHS: Final[dict[str, Any]] = {
    "/api/login": {"post": {
        "summary": "Trade a user name and password for a bearer token",
        "operationId": "login", "security": PUBLIC,
        "requestBody": body("Login"),
        "responses": {"200": ok(ref("Token")), "400": _BAD,
                      "401": error("wrong user name or password")},
    }},
    "/api/logout": {"post": {
        "summary": "Revoke the token of this request",
        "operationId": "logout",
        "responses": {"200": ok({"type": "object", "properties": {
            "status": {"type": "string"}}}), "401": _NO_TOKEN,
            "400": error("the caller came with a client certificate, not a token")},
    }},
    "/api/me": {"get": {
        "summary": "Who the token stands for",
        "operationId": "me",
        "responses": {"200": ok(ref("Me")), "401": _NO_TOKEN},
    }},
    "/api/users": {
        "get": {
            "summary": "Users, paginated (administrators only)",
            "operationId": "listUsers",
            "parameters": [
                *_PAGE,
                query("username", {"type": "string"}, "substring, case-insensitive"),
                query("role", {"type": "string", "enum": ["admin", "user"]}, "role"),
                query("active", {"type": "boolean"}, "active or not"),
            ],
            "responses": _admin({"200": ok(_page_of("User")), "400": _BAD}),
        },
        "post": {
            "summary": "Add a user (administrators only)",
            "operationId": "addUser",
            "requestBody": body("NewUser"),
            "responses": _admin({"201": ok(ref("User"), "Created"), "400": _BAD,
                                 "409": _CONFLICT}),
        },
    },
    "/api/users/{username}": {
        "get": {
            "summary": "One user (administrators only)",
            "operationId": "getUser", "parameters": [_path("username")],
            "responses": _admin({"200": ok(ref("User")), "404": _MISSING}),
        },
        "patch": {
            "summary": "Change a user's password, role, activity or groups (administrators only)",
            "operationId": "changeUser", "parameters": [_path("username")],
            "requestBody": body("UserChange"),
            "responses": _admin({"200": ok(ref("User")), "400": _BAD, "404": _MISSING,
                                 "409": _CONFLICT}),
        },
        "delete": {
            "summary": (
                "Delete a user, its memberships and tokens, and close its live CoT streams "
                "(administrators only)"),
            "operationId": "deleteUser", "parameters": [_path("username")],
            "responses": _admin({"204": {"description": "Deleted"}, "404": _MISSING,
                                 "409": _CONFLICT}),
        },
    },
    "/api/groups": {
        "get": {
            "summary": "Groups (channels) with member counts, paginated (administrators only)",
            "operationId": "listGroups",
            "parameters": [*_PAGE, query("name", {"type": "string"},
                                          "substring, case-insensitive")],
            "responses": _admin({"200": ok(_page_of("Group")), "400": _BAD}),
        },
        "post": {
            "summary": "Add a group (administrators only)",
            "operationId": "addGroup",
            "requestBody": body("NewGroup"),
            "responses": _admin({"201": ok(ref("Group"), "Created"), "400": _BAD,
                                 "409": _CONFLICT}),
        },
    },
    "/api/groups/{name}": {
        "delete": {
            "summary": "Delete a group and its memberships (administrators only)",
            "operationId": "deleteGroup", "parameters": [_path("name")],
            "responses": _admin({"204": {"description": "Deleted"}, "404": _MISSING,
                                 "409": _CONFLICT}),
        },
    },
}

_STRING = {"type": "string"}
_NAMES = {"type": "array", "items": _STRING}
_ROLE = {"type": "string", "enum": ["admin", "user"]}
_TIME = {"type": "string", "format": "date-time", "nullable": True}

SCHEMAS: Final[dict[str, Any]] = {
    "Login": {"type": "object", "properties": {"username": _STRING, "password": _STRING},
              "required": ["username", "password"], "additionalProperties": False},
    "Token": {"type": "object", "properties": {
        "token": _STRING, "expires": {"type": "string", "format": "date-time"},
        "username": _STRING, "role": _ROLE},
        "required": ["token", "expires", "username", "role"]},
    "Me": {"type": "object", "properties": {
        "username": _STRING, "role": _ROLE, "groups_in": _NAMES, "groups_out": _NAMES,
        "via": {"type": "string", "enum": ["token", "certificate", "basic", "anonymous"]}}},
    "User": {"type": "object", "properties": {
        "username": _STRING, "role": _ROLE, "active": {"type": "boolean"},
        "has_password": {"type": "boolean"}, "created_at": _TIME, "last_login": _TIME,
        "groups_in": _NAMES, "groups_out": _NAMES},
        "required": ["username", "role", "active", "groups_in", "groups_out"]},
    "NewUser": {"type": "object", "properties": {
        "username": _STRING,
        "password": {"type": "string", "description": "none: a certificate-only user"},
        "role": {**_ROLE, "default": "user"}, "groups_in": _NAMES, "groups_out": _NAMES},
        "required": ["username"], "additionalProperties": False},
    "UserChange": {"type": "object", "properties": {
        "password": {"type": "string", "description": "also revokes the user's tokens"},
        "role": _ROLE,
        "active": {"type": "boolean", "description": (
            "false also revokes the user's tokens and closes its live CoT streams")},
        "groups_in": {**_NAMES, "description": "replaces the user's IN groups"},
        "groups_out": {**_NAMES, "description": "replaces the user's OUT groups"}},
        "minProperties": 1, "additionalProperties": False},
    "Group": {"type": "object", "properties": {
        "name": _STRING, "description": {"type": "string", "nullable": True},
        "created_at": _TIME, "members_in": {"type": "integer"},
        "members_out": {"type": "integer"}},
        "required": ["name", "members_in", "members_out"]},
    "NewGroup": {"type": "object", "properties": {"name": _STRING, "description": _STRING},
                 "required": ["name"], "additionalProperties": False},
}
