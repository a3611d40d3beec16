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


class StoreError(OtszmqError):
    """The store cannot open, migrate or write its database, or a record is malformed.

    A bad record costs that record (dropped and counted); a database that cannot be opened or
    migrated stops the store stage at start-up with a message naming the database.
    """


class PkiError(OtszmqError):
    """A certificate-authority operation cannot be done: no CA, a wrong passphrase,
    a bad user name, an unknown serial. The message names the problem; nothing was written.
    """


class BridgeError(OtszmqError):
    """The RabbitMQ bridge cannot do its job: the broker refused its credentials or
    declarations (stops the bridge at its first connect), or one AMQP message is malformed
    (costs that message: dropped and counted).
    """
