"""Meshtastic over MQTT: radios' gateways publish to RabbitMQ's MQTT plugin; this link turns
their envelopes into CoT for the pipeline and EUDs' positions and chat into envelopes.

Entry point: :class:`MeshtasticLink` (see :mod:`otszmq.bridge.meshtastic.link`).
"""

from otszmq.bridge.meshtastic.config import MeshtasticConfig
from otszmq.bridge.meshtastic.link import MeshtasticLink

__all__ = ["MeshtasticConfig", "MeshtasticLink"]
