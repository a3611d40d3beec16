"""Request bodies read with a bound, and XML (bodies, stored events) parsed hardened.

The parser is configured as the workers' (:mod:`otszmq.workers.cot`): no DTD, no entity
expansion, no network access, libxml2's size limits; a document with a DOCTYPE is refused
outright. A body that fails any of that is a 400 naming what was wrong.
"""

from __future__ import annotations

from typing import Final

import falcon
from lxml import etree

from otszmq.api.errors import bad_request
from otszmq.safexml import hardened_parser

MAX_XML_BODY: Final = 256 * 1024


class XmlRejected(ValueError):
    """The bytes are not a well-formed XML document without a DOCTYPE."""


def parse_xml(data: bytes) -> etree._Element:
    """The root element of ``data``; :class:`XmlRejected` saying why not."""
    try:
        root = etree.fromstring(data, hardened_parser())
    except (etree.LxmlError, ValueError) as exc:
        raise XmlRejected(f"not well-formed XML: {exc}") from exc
    # NOTE: lxml-stubs 0.5 does not declare DocInfo.doctype ('' when there is no DOCTYPE).
    doctype: str = root.getroottree().docinfo.doctype  # type: ignore[union-attr]
    if doctype:
        raise XmlRejected("a DOCTYPE is not allowed")
    return root


def read_limited(req: falcon.Request, limit: int) -> bytes:
    """The whole request body; 413 (nothing more read) when it is over ``limit`` bytes."""
    too_large = falcon.HTTPContentTooLarge(
        title="Body Too Large", description=f"body: at most {limit} bytes")
    if req.content_length is not None and req.content_length > limit:
        raise too_large
    data = req.bounded_stream.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data


def read_xml_body(req: falcon.Request, expected_root: str) -> etree._Element:
    """The request body as XML whose root is ``expected_root``; 400/413 otherwise."""
    data = read_limited(req, MAX_XML_BODY)
    if not data.strip():
        bad_request("body", f"an XML <{expected_root}> document is required")
    try:
        root = parse_xml(data)
    except XmlRejected as exc:
        bad_request("body", str(exc))
    if root.tag != expected_root:
        bad_request("body", f"root element is <{root.tag}>, expected <{expected_root}>")
    return root
