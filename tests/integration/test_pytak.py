"""pytak (PyPI), a real TAK client library, talking to the real server."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytak
import pytest

from tests.support import running_node

pytestmark = pytest.mark.integration


def pytak_config(port: int, callsign: str) -> dict[str, str]:
    # NOTE: a plain dict, not a ConfigParser section: ConfigParser lower-cases keys and
    # pytak then falls back to its default (UDP multicast) URL.
    return {"COT_URL": f"tcp://127.0.0.1:{port}", "CALLSIGN": callsign}


async def exchange(port: int) -> tuple[bytes, list[bytes]]:
    """Two pytak clients; one sends SAs through TXWorker, the other reads with RXWorker."""
    run = uuid.uuid4().hex[:8]
    sender_cfg, receiver_cfg = pytak_config(port, f"S-{run}"), pytak_config(port, f"R-{run}")
    _, s_writer = await pytak.protocol_factory(sender_cfg)
    r_reader, r_writer = await pytak.protocol_factory(receiver_cfg)
    tx_queue: asyncio.Queue[bytes] = asyncio.Queue()
    rx_queue: asyncio.Queue[bytes] = asyncio.Queue()
    tx = pytak.TXWorker(tx_queue, sender_cfg, s_writer)
    rx = pytak.RXWorker(rx_queue, receiver_cfg, r_reader)
    tasks = [asyncio.create_task(tx.run()), asyncio.create_task(rx.run())]
    try:
        # The receiver is connected (protocol_factory returned); announce it so that the
        # server knows it, then send from the other client until the events arrive.
        r_writer.write(pytak.gen_cot(lat=1, lon=1, uid=f"R-{run}", cot_type="a-f-G-U-C",
                                     callsign=f"R-{run}"))
        await r_writer.drain()
        sent = [pytak.gen_cot(lat=10 + i, lon=20, uid=f"S-{run}", cot_type="a-f-G-U-C",
                              callsign=f"S-{run}") for i in range(5)]
        for event in sent:
            await tx_queue.put(event)
        received: list[bytes] = []
        async with asyncio.timeout(15):
            while len(received) < len(sent):
                data = await rx_queue.get()
                if f'uid="S-{run}"'.encode() in data:
                    received.append(data)
        return b"".join(sent), received
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in (s_writer, r_writer):
            writer.close()


def test_pytak_clients_exchange_sa(tmp_path: Path) -> None:
    with running_node(tmp_path / "data", workers=1) as node:
        sent, received = asyncio.run(exchange(node.port))
    assert len(received) == 5
    # Byte-identical relay: what pytak wrote is what pytak read.
    assert all(event.strip() in sent for event in received)
    assert [b'lat="1' + str(i).encode() in e for i, e in enumerate(received)] == [True] * 5
