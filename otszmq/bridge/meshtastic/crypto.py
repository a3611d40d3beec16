"""Meshtastic channel encryption: pre-shared keys, channel hashes, AES-CTR.

Facts of the protocol (the firmware's crypto documentation and its channel code):

- A channel's key (PSK) is 0 bytes (no encryption), 1 byte (an index into well-known keys:
  0 = none, 1 = the default key, n = the default key with its last byte + n - 1), 16 bytes
  (AES-128) or 32 bytes (AES-256); shorter keys are zero-padded to the next of those sizes.
  The app's default ``AQ==`` is base64 for the single byte 1.
- ``Data`` is encrypted with AES in CTR mode. The 16-byte initial counter block is the packet id
  as a 64-bit little-endian integer, then the sender's node number as a 32-bit little-endian
  integer, then a 32-bit block counter starting at 0.
- A packet carries its channel as a one-byte hash: the XOR of the channel name's bytes XOR the
  XOR of the expanded key's bytes (LongFast with the default key hashes to 8).
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from functools import reduce
from operator import xor
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from otszmq.errors import ConfigError

DEFAULT_KEY: Final = bytes.fromhex("d4f1bb3a20290759f0bcffabcf4e6901")
"""The firmware's well-known default channel key, index 1 (``AQ==``)."""


def expand_key(psk: bytes) -> bytes:
    """The AES key a channel's PSK stands for; ``b""`` means the channel is not encrypted."""
    if not psk:
        return b""
    if len(psk) == 1:
        index = psk[0]
        if index == 0:
            return b""
        return DEFAULT_KEY[:-1] + bytes([(DEFAULT_KEY[-1] + index - 1) & 0xFF])
    if len(psk) > 32:
        raise ConfigError(f"a Meshtastic key is at most 32 bytes, got {len(psk)}")
    return psk.ljust(16 if len(psk) <= 16 else 32, b"\0")


def parse_key(text: str) -> bytes:
    """A key as the Meshtastic apps show it (base64, e.g. ``AQ==``), expanded; ``none`` = no
    encryption. Raises :class:`ConfigError` naming what is wrong."""
    if text.strip().lower() in ("", "none"):
        return b""
    try:
        psk = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"Meshtastic key {text!r} is not base64: {exc}") from exc
    return expand_key(psk)


def channel_hash(name: str, key: bytes) -> int:
    """The one-byte channel hash a packet on channel ``name`` with ``key`` carries."""
    return reduce(xor, name.encode(), 0) ^ reduce(xor, key, 0)


def _nonce(packet_id: int, sender: int) -> bytes:
    return struct.pack("<QI", packet_id & 0xFFFFFFFF, sender & 0xFFFFFFFF) + b"\0\0\0\0"


def crypt(key: bytes, packet_id: int, sender: int, data: bytes) -> bytes:
    """AES-CTR over ``data`` (encryption and decryption are the same operation).

    NOTE: cryptography's CTR counts over the whole 16-byte block, the firmware's over its last
    4 bytes; they agree until 2**32 blocks, far beyond a LoRa packet (at most 256 bytes).
    """
    cipher = Cipher(algorithms.AES(key), modes.CTR(_nonce(packet_id, sender)))
    context = cipher.encryptor()
    return context.update(data) + context.finalize()


@dataclass(frozen=True, slots=True)
class ChannelKey:
    """One configured channel: its name, expanded key and hash."""

    name: str
    key: bytes  # b"" = not encrypted

    @property
    def hash(self) -> int:
        return channel_hash(self.name, self.key)


def parse_channel(text: str) -> ChannelKey:
    """``NAME:KEY`` (``LongFast:AQ==``), or ``NAME`` alone for the default key."""
    name, _, key_text = text.partition(":")
    name = name.strip()
    if not name or "." in name or "/" in name or "#" in name or "+" in name:
        raise ConfigError(
            f"Meshtastic channel {text!r}: expected NAME:BASE64KEY with a name without "
            "'.', '/', '#' or '+'"
        )
    return ChannelKey(name, parse_key(key_text) if key_text else DEFAULT_KEY)
