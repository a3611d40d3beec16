"""The one hardened lxml parser configuration, for every place that parses XML from outside.

Workers parse client events with it, ingest re-reads events to encode them for TAK protocol
clients, the API reads XML request bodies. A fresh parser per owner: an lxml parser keeps
state between parses and is not to be shared (STYLE rule 2).
"""

from __future__ import annotations

from lxml import etree


def hardened_parser() -> etree.XMLParser:
    """No DTD, no entity expansion, no network, libxml2's size limits, UTF-8 forced."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,  # keep libxml2's depth, text-size and entity-amplification limits
        # The framer splits the stream as bytes, so every event on the wire is UTF-8 whatever an
        # XML declaration claims (a WinTAK capture declares "utf-16" over 1-byte text). Forcing
        # the encoding makes such a declaration harmless and turns invalid bytes into an error.
        encoding="utf-8",
        # NOTE: never collect_ids=False: with it, libxml2 opens the file a
        # <!DOCTYPE x SYSTEM "/path"> names even with load_dtd=False, so a client could make a
        # process open (and block on) any local path (tests/unit/test_cot.py checks with a FIFO).
    )
