"""The Meshtastic link's settings, derived once from :class:`otszmq.config.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from otszmq.bridge.meshtastic.crypto import ChannelKey, parse_channel
from otszmq.config import Settings
from otszmq.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MeshtasticConfig:
    """Where the gateways publish, which channels we read and write, how often EUDs go out.

    ``root`` is in AMQP form (``msh.US``): RabbitMQ's MQTT plugin turns the MQTT topic
    ``msh/US/2/e/LongFast/!a1b2c3d4`` into the routing key ``msh.US.2.e.LongFast.!a1b2c3d4``
    on ``amq.topic``.
    """

    root: str = "msh.US"
    channels: tuple[ChannelKey, ...] = (parse_channel("LongFast:AQ=="),)
    gateway_id: str = "otszmq"
    position_interval: float = 30.0
    group: str = "__ANON__"
    nodeinfo_every: int = 10
    """Send an EUD's NODEINFO (its name) with its first position and every this many after."""
    queue_limit: int = 10_000
    """Envelopes waiting in RabbitMQ for us (then the oldest are dropped by the broker), and
    envelopes waiting for us to publish (then new ones are dropped and counted)."""
    memory_limit: int = 10_000
    """Nodes, EUDs and packet ids remembered (least recently used forgotten first)."""

    def __post_init__(self) -> None:
        if not self.channels:
            raise ConfigError("meshtastic_channels: must name a channel")
        if any(c in self.gateway_id for c in "./#+ ") or not self.gateway_id:
            raise ConfigError(
                f"meshtastic_gateway_id: must be non-empty, without '.', '/', '#', '+' or "
                f"spaces, got {self.gateway_id!r}"
            )
        if not self.root or any(c in self.root for c in "#+ ") or ".." in self.root:
            raise ConfigError(f"meshtastic_root: not a topic prefix: {self.root!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> MeshtasticConfig:
        """Raises :class:`ConfigError` naming the setting that is wrong."""
        channels = []
        for text in settings.meshtastic_channels:
            try:
                channels.append(parse_channel(text))
            except ConfigError as exc:
                raise ConfigError(f"meshtastic_channels: {exc}") from exc
        return cls(
            root=settings.meshtastic_root.replace("/", ".").strip("."),
            channels=tuple(channels),
            gateway_id=settings.meshtastic_gateway_id,
            position_interval=settings.meshtastic_position_interval,
            group=settings.meshtastic_group,
        )

    @property
    def outbound(self) -> ChannelKey:
        """The channel EUDs' positions and chat go out on: the first one configured."""
        return self.channels[0]

    @property
    def bindings(self) -> tuple[str, ...]:
        """What the link reads from ``amq.topic``: each configured channel's envelopes, and
        map reports. A busy root (the public ``msh.US``) carries many channels: only ours."""
        return (*(f"{self.root}.2.e.{c.name}.*" for c in self.channels), f"{self.root}.2.map.#")

    def routing_key(self, channel: ChannelKey) -> str:
        """Where our envelopes go: ``<root>.2.e.<channel>.<gateway id>`` on ``amq.topic``."""
        return f"{self.root}.2.e.{channel.name}.{self.gateway_id}"
