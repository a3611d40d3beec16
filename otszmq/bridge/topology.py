"""The exchanges and queues the bridge declares, in one table.

OTS's exchanges are declared exactly as OTS declares them (``reference/ots.md`` §1.2: all
durable; ``firehose`` fanout, ``groups`` and ``missions`` topic, ``dms`` and ``cot_parser``
direct), so that an OTS on the same broker and the bridge agree: RabbitMQ refuses a
re-declaration with other properties (PRECONDITION_FAILED).

Queues:

- inbound (default ``cot_parser``, OTS's shape: bound with the routing key of its own name):
  shared by every consumer of that name, so several servers (or OTS cot_parsers) on one
  broker compete for its messages and each message enters one pipeline; declared with pika's
  defaults as OTS does (not durable, not exclusive, not auto-delete).
- federation, one per server (``<federation exchange>.<server id>``), bound with ``#``:
  durable and not exclusive, so it keeps what arrives while this bridge is cut off and it
  picks up from there on reconnect; bounded (``x-max-length``, oldest dropped by the broker)
  and deleted by the broker after a day unused (``x-expires``), so a server that went away
  for good leaves nothing growing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from otszmq.bridge.mirror import DMS, FIREHOSE, GROUPS, MISSIONS

FANOUT: Final = "fanout"
TOPIC: Final = "topic"
DIRECT: Final = "direct"

OTS_EXCHANGES: Final = ((FIREHOSE, FANOUT), (GROUPS, TOPIC), (DMS, DIRECT), (MISSIONS, TOPIC))

FEDERATION_QUEUE_MAX: Final = 100_000
FEDERATION_QUEUE_EXPIRES_MS: Final = 86_400_000


@dataclass(frozen=True)
class Topology:
    server_id: str
    federation_exchange: str
    inbound_exchange: str
    inbound_queue: str

    @property
    def federation_queue(self) -> str:
        return f"{self.federation_exchange}.{self.server_id}"

    def exchanges(self) -> list[tuple[str, str]]:
        """(name, type) of every exchange, all durable."""
        return [*OTS_EXCHANGES, (self.inbound_exchange, DIRECT),
                (self.federation_exchange, TOPIC)]

    @staticmethod
    def federation_queue_arguments() -> dict[str, Any]:
        return {
            "x-max-length": FEDERATION_QUEUE_MAX,
            "x-overflow": "drop-head",
            "x-expires": FEDERATION_QUEUE_EXPIRES_MS,
        }
