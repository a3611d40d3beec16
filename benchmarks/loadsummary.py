"""The few lines of a load result a human reads on stderr; the JSON on stdout has everything."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def summary(result: Json) -> str:
    """A few lines for a human; the JSON on stdout has everything."""
    cfg, send, delivery = result["config"], result["send"], result["delivery"]
    lat, gen, server = result["latency_ms"], result["generator"], result["server"]
    loss = delivery["loss"]
    lines = [
        f"{result['scenario']}  clients {cfg['clients']}  offered {send['offered_rate']:.0f}/s  "
        f"sent {send['sent_rate']}/s over {send['window_seconds']} s  "
        f"event {send['event_bytes']} B  "
        f"settle {'ok' if result['settle']['complete'] else 'INCOMPLETE'}",
        f"deliveries {delivery['deliveries_per_s']}/s  expected {delivery['expected']}  "
        f"delivered {delivery['delivered']}  loss {'n/a' if loss is None else f'{loss:.4%}'}  "
        f"dup {delivery['duplicates']}  out-of-order {delivery['out_of_order']}",
        f"latency ms  p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}",
        f"generator CPU {gen['cpu_percent']}%  waited for a core "
        f"{gen.get('runqueue_wait_ms_per_s')} ms/s  machine busy "
        f"{result['system']['cpu_busy_percent']}% of {100 * (result['machine']['nproc'] or 1)}%  "
        f"skipped {send['skipped_burst']} (burst) "
        f"{send['skipped_blocked']} (blocked)  max tick lag {send['max_tick_lag_ms']} ms",
    ]
    if server is not None:
        lines.append(
            f"server {server['processes']} processes  CPU {server['cpu_percent_total']}%  "
            f"waited for a core {server.get('runqueue_wait_ms_per_s_total')} ms/s  "
            f"RSS {server['rss_kb_total']} kB  PSS {server['pss_kb_total']} kB  "
            + " ".join(f"[{p['pid']}: {p.get('cpu_percent')}%]" for p in server["pids"][:20])
        )
    pings = result["pings"]
    if pings["sent"]:
        lines.append(f"pings {pings['sent']}  pongs {pings['pongs']}")
    if delivery["misdelivered"]:
        lines.append(f"MISDELIVERED {delivery['misdelivered']} direct messages")
    lines.extend(result["errors"][:5])
    return "\n".join(lines)
