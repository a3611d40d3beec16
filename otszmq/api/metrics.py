"""``GET /metrics``: every process's counters in the Prometheus text format.

The numbers are the same snapshots ``otszmq stats`` prints, heard on the pipeline
bus; each becomes a sample labelled with the process's name, role and host.
Counters are exposed as Prometheus counters (``otszmq_<name>_total``) and gauges
as gauges (``otszmq_<name>``), so rates and dashboards work as usual.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import falcon
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from otszmq.stats import NoStats

if TYPE_CHECKING:
    from otszmq.api.app import CounterSource

LABELS = ("process", "role", "host")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


class PipelineCollector:
    """A prometheus-client collector over one round of bus snapshots."""

    def __init__(self, snapshots: list[dict[str, Any]]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        counters: dict[str, CounterMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        for snap in self._snapshots:
            labels = [str(snap.get("name", "")), str(snap.get("role", "")),
                      str(snap.get("host", ""))]
            for key, value in snap.get("counters", {}).items():
                name = "otszmq_" + _UNSAFE.sub("_", key)
                family = counters.setdefault(name, CounterMetricFamily(
                    name, f"otszmq counter {key}", labels=LABELS))
                family.add_metric(labels, float(value))
            gauge_values = {**snap.get("gauges", {}), "rss_bytes": snap.get("rss_bytes", 0)}
            for key, value in gauge_values.items():
                name = "otszmq_" + _UNSAFE.sub("_", key)
                gauge = gauges.setdefault(name, GaugeMetricFamily(
                    name, f"otszmq gauge {key}", labels=LABELS))
                gauge.add_metric(labels, float(value))
        yield from counters.values()
        yield from gauges.values()


class Metrics:
    def __init__(self, counters: CounterSource | None) -> None:
        self._counters = counters

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._counters is None:
            raise falcon.HTTPServiceUnavailable(
                title="no pipeline", description="this API is not attached to a node's bus"
            )
        try:
            snapshots = self._counters()
        except NoStats as exc:
            raise falcon.HTTPServiceUnavailable(title="no counters", description=str(exc)) from exc
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PipelineCollector(snapshots))
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(registry)
