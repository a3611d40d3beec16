"""The Marti routes TAK clients call on connect: version, server config, contacts.

Shapes follow TAK Server as ATAK/WinTAK/iTAK read them (reference/peers.md §3): most JSON GETs
are wrapped in TAK Server's ApiResponse ``{"version": "3", "type": <java class>, "data": ...,
"nodeId": ...}``; ``contacts/all`` is a bare list.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import falcon

from otszmq.api.params import bool_param, int_param
from otszmq.api.scope import caller_of, visible
from otszmq.store.models import Eud

if TYPE_CHECKING:
    from otszmq.api.app import ApiConfig

API_VERSION: Final = "3"  # TAK Server's Marti API version, which clients check
ONE_YEAR: Final = 365 * 24 * 3600


def tak_time(value: datetime | None) -> str | None:
    """TAK's timestamp form: ISO 8601 UTC with milliseconds and a Z."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def api_response(config: ApiConfig, type_name: str, data: Any) -> dict[str, Any]:
    return {"version": API_VERSION, "type": type_name, "data": data, "nodeId": config.node_id}


class Version:
    def __init__(self, config: ApiConfig) -> None:
        self._config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = self._config.server_version


class VersionConfig:
    def __init__(self, config: ApiConfig) -> None:
        self._config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # hostname: the host the client reached us by (TAK Server does the same), so a client
        # behind NAT gets back an address it can use.
        data = {"version": self._config.server_version, "api": API_VERSION, "hostname": req.host}
        resp.media = api_response(self._config, "ServerConfig", data)


class ClientEndPoints:
    """Every EUD the store has seen. ``secAgo`` (seconds, 0: all) limits to recent activity;
    ``showCurrentlyConnectedClients=true`` to connected ones."""

    def __init__(self, config: ApiConfig) -> None:
        self._config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sec_ago = int_param(req, "secAgo", 0, 0, 100 * ONE_YEAR)
        connected_only = bool_param(req, "showCurrentlyConnectedClients", False)
        # Only the EUDs whose channels the caller reads (TAK's ContactManagerApi does the same).
        query = visible(Eud.select(), Eud.groups, caller_of(req)).order_by(Eud.callsign, Eud.uid)
        if sec_ago:
            since = datetime.now(UTC) - timedelta(seconds=sec_ago)
            query = query.where(Eud.last_event_time >= since)
        if connected_only:
            query = query.where(Eud.last_status == "Connected")
        data: list[dict[str, Any]] = [
            {
                "callsign": eud.callsign or "",
                "uid": eud.uid,
                # NOTE: no user accounts yet (plain TCP clients are anonymous).
                "username": "",
                "team": eud.team or "",
                "role": eud.role or "",
                "lastEventTime": tak_time(eud.last_event_time),
                "lastStatus": eud.last_status,
                "groups": [],
            }
            for eud in query
        ]
        resp.media = api_response(self._config, "com.bbn.marti.remote.ClientEndpoint", data)


class Contacts:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = [
            {
                "filterGroups": None,
                "notes": "",
                "callsign": eud.callsign or "",
                "team": eud.team or "",
                "role": eud.role or "",
                "takv": _takv(eud),
                "uid": eud.uid,
            }
            for eud in visible(Eud.select(), Eud.groups, caller_of(req))
            .order_by(Eud.callsign, Eud.uid)
        ]


def _takv(eud: Eud) -> str:
    """ATAK's ``takv`` as one string: device, platform, os, version."""
    parts = (eud.device, eud.platform, eud.os, eud.version)
    return " ".join(str(p) for p in parts if p)
