"""The one exception hierarchy of otszmq.

Every error the package raises on purpose is an :class:`OtszmqError`. Third-party
errors are wrapped at the boundary (``raise FramingError(...) from exc``) so that
callers can tell "bad input" from "bug" by type alone.
"""

from __future__ import annotations


class OtszmqError(Exception):
    """Base class of every error raised by otszmq on purpose."""


class ConfigError(OtszmqError):
    """A setting is missing or invalid; the message names the setting."""


class FramingError(OtszmqError):
    """The byte stream of one connection cannot be split into events.

    Costs that connection: it is logged and closed.
    """


class FrameTooLarge(FramingError):
    """An event (or declaration) grew past the configured maximum size."""


class UnexpectedData(FramingError):
    """Bytes between events that are neither whitespace nor a known element."""


class CotParseError(OtszmqError):
    """One event is not well-formed or not valid CoT.

    Costs that event: it is dropped and counted; the connection stays open.
    """


class WireError(OtszmqError):
    """A pipeline message between stages does not have the documented shape."""
