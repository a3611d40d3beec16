"""The OpenAPI document matches the /api/ routes the app registers, path by path and method by
method, both ways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.test_api import make_client

METHODS = ("get", "head", "post", "put", "patch", "delete")


def registered_api_routes(app: Any) -> dict[str, set[str]]:
    # NOTE: falcon offers no public route listing; its compiled router's nodes are read here,
    # in a test only.
    routes: dict[str, set[str]] = {}
    stack = list(app._router._roots)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.resource is not None and node.uri_template.startswith("/api/"):
            routes[node.uri_template] = {
                m for m in METHODS if hasattr(node.resource, f"on_{m}") and m != "head"}
    return routes


def test_openapi_matches_registered_routes(tmp_path: Path):
    client = make_client(tmp_path)
    document = client.simulate_get("/api/openapi.json").json
    assert document["openapi"].startswith("3.")
    documented = {path: {m for m in ops if m in METHODS}
                  for path, ops in document["paths"].items()}
    registered = registered_api_routes(client.app)
    assert registered, "no /api/ routes found: has falcon's router changed?"
    assert documented == registered


def test_every_operation_has_responses_and_an_id(tmp_path: Path):
    document = make_client(tmp_path).simulate_get("/api/openapi.json").json
    ids = []
    for ops in document["paths"].values():
        for operation in ops.values():
            # 200, or 201 (created) / 202 (queued into the pipeline) / 204 (deleted) where
            # that is the answer.
            assert {"200", "201", "202", "204"} & set(operation["responses"]), operation
            ids.append(operation["operationId"])
    assert len(ids) == len(set(ids))
