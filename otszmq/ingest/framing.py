"""Sans-IO framer for the CoT XML stream (TCP 8088 / TLS 8089).

TAK clients write ``<event>`` (and, for stream login, ``<auth>``) elements back to back with no
delimiter. :class:`XmlFramer` turns the bytes of one connection into :class:`Frame` objects holding
each root element exactly as received. It never parses XML: it only tracks enough lexical structure
(start tags with quoted attribute values, nesting of the root name, comments, CDATA sections and
processing instructions) to find where the root element ends. Anything subtler - undeclared
entities, mismatched inner tags - is the worker's job when it parses the frame.

The framer is a resumable state machine over one buffer. Every state searches forward with a
compiled ``re`` or ``bytes.find`` from where the previous search stopped, so each byte is looked at
a bounded number of times however the stream is chunked: a 1 MiB event fed one byte at a time costs
about what it costs in one piece.
"""

from __future__ import annotations

import enum
import re
from typing import Generic, NamedTuple, TypeVar

from otszmq.errors import FrameTooLarge, FramingError, UnexpectedData

__all__ = ["Frame", "FrameKind", "XmlFramer", "event_type"]


class FrameKind(enum.Enum):
    """What the root element of a frame is."""

    EVENT = "event"
    AUTH = "auth"


class Frame(NamedTuple):
    """One root element, from ``<event`` / ``<auth`` through its closing tag, bytes unchanged."""

    kind: FrameKind
    data: bytes


# States of the machine. Between frames (_IDLE) nothing is buffered but a few bytes of a possible
# opener; in every other state the buffer starts at the '<' of the item being read.
_IDLE = 0  # between frames
_TAG = 1  # inside a start tag of the root name, outside quotes
_CONTENT = 2  # inside the root element, between markup we care about
_SKIP = 3  # inside a comment, CDATA, PI or quoted value: find _term, then go to state _after
_END_TAG = 4  # after '</event ' (or '</auth '), looking for its '>'
_DONE = 5  # the root element has just closed (never saved between feeds)

# NOTE: XML whitespace is exactly these four bytes; ``\s`` would also accept \v and \f.
_WS = re.compile(rb"[ \t\r\n]*+")
# What may start an item between frames. The root names need one more byte so that '<events>'
# and '<eventx' are not taken for '<event'.
_OPEN = re.compile(rb"[ \t\r\n]*+(?:<(?:(event|auth)(?=[ \t\r\n/>])|(\?)|(!--))|(\xef\xbb\xbf))")
_OPEN_NAME, _OPEN_PI, _OPEN_BOM = 1, 2, 4  # group 3 is "<!--"
# Byte strings a short tail may still grow into; anything else between frames is garbage.
_OPENERS = (b"<event", b"<auth", b"<?", b"<!--", b"\xef\xbb\xbf")
_OPENER_MAX = max(map(len, _OPENERS))
# The rest of a start tag up to (not including) its '>' or an unterminated quote. Possessive
# quantifiers: the alternatives are disjoint, so backtracking could only waste time.
_TAG_PART = re.compile(rb"""[^>"']*+(?:(?:"[^"]*+"|'[^']*+')[^>"']*+)*+""")
_ROOT_KIND = {b"event": FrameKind.EVENT, b"auth": FrameKind.AUTH}
_GT, _SLASH, _DQUOTE = ord(">"), ord("/"), ord('"')
_ERR_SNIPPET = 16  # bytes of the offending input quoted in an UnexpectedData message
_MIN_LIMIT = 16  # openers are matched before the limit applies, so it must exceed them
# The root start tag's type attribute: skip whole attributes (quoted values may hold '>' or
# 'type=') until one is named exactly 'type'.
_TYPE_RE = re.compile(
    rb"""<[^\s/>]++(?:[ \t\r\n]++(?!type[ \t\r\n]*+=)[^\s=/>]++[ \t\r\n]*+=[ \t\r\n]*+"""
    rb"""(?:"[^"]*+"|'[^']*+'))*+[ \t\r\n]++type[ \t\r\n]*+=[ \t\r\n]*+(?:"([^"]*+)"|'([^']*+)')"""
)


# PERF: a whole plain <event> in one match: its start tag (quoted values may hold '>' or
# '</event>'), then content up to the first '</event>' holding none of the markup the machine
# must look at (comments, CDATA, PIs, nested or spaced event tags). It takes exactly the frame
# the machine would cut; anything else fails to match and the machine reads it (the chunking
# property tests compare the two). Leading whitespace between frames is skipped.
_PLAIN_EVENT = re.compile(
    rb"[ \t\r\n]*+(<event(?=[ \t\r\n/>])" + _TAG_PART.pattern + rb"(?<!/)>"
    rb"[^<]*+(?:<(?![!?]|/?event[ \t\r\n/>])[^<]*+)*+</event>)"  # unrolled: one test per '<'
)


def _content_pattern(name: bytes) -> re.Pattern[bytes]:
    # Only markup that can hide or move the end of the root element matters; ordinary child tags
    # are passed over inside the regex engine, without a Python-level step each.
    return re.compile(
        rb"<(?:(!--)|(!\[CDATA\[)|(\?)"
        rb"|(/" + name + rb">)"  # the usual close tag, done in one step
        rb"|(/" + name + rb")[ \t\r\n]"  # a close tag with whitespace before its '>'
        rb"|(" + name + rb")(?=[ \t\r\n/>]))"  # a nested start tag of the root's name
    )


_CONTENT_RE = {name: _content_pattern(name) for name in _ROOT_KIND}
# Group number of a _CONTENT_RE match -> (next state, terminator for _SKIP).
_CONTENT_NEXT = (
    (0, b""),
    (_SKIP, b"-->"),
    (_SKIP, b"]]>"),
    (_SKIP, b"?>"),
    (_DONE, b""),
    (_END_TAG, b""),
    (_TAG, b""),
)
# A token _CONTENT_RE may see only partly at the end of the buffer is at most this long
# ('<![CDATA[' minus its last byte).
_CONTENT_TAIL = 8


Item = TypeVar("Item")


class StreamFramer(Generic[Item]):
    """What every framer of a client stream shares: a bounded buffer, a byte count for error
    messages, and death on the first error (every later :meth:`feed` raises its kind again).

    Subclasses validate ``max_event_size`` before calling ``__init__`` and implement ``_feed``.
    """

    __slots__ = ("_buf", "_error", "_fed", "_max")

    def __init__(self, max_event_size: int) -> None:
        self._max = max_event_size
        self._buf = bytearray()  # the unfinished item
        self._fed = 0  # bytes fed before the current chunk, for error messages
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete item."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Item]:
        """Consume one chunk of the stream; return the items it completed, in order.

        ``data`` is ``bytes`` (a ``bytearray`` works too, but not a ``memoryview``). If it
        raises, items completed earlier in the same chunk are not returned: the connection is
        to be closed anyway.
        """
        if self._error is not None:
            raise type(self._error)(f"framer stopped by an earlier error: {self._error}")
        try:
            return self._feed(data)
        except FramingError as exc:
            self._error = exc
            self._buf = bytearray()  # the connection is going away; free the memory now
            raise
        finally:
            self._fed += len(data)

    def _feed(self, data: bytes) -> list[Item]:
        raise NotImplementedError


class XmlFramer(StreamFramer[Frame]):
    """Split one connection's CoT XML byte stream into frames.

    Between frames, XML whitespace, a UTF-8 BOM, ``<?...?>`` processing instructions (the
    ``<?xml?>`` declaration among them; its encoding is ignored because WinTAK declares utf-16 and
    sends single bytes) and ``<!-- -->`` comments are skipped; anything else raises
    :class:`UnexpectedData`. A frame, declaration or comment longer than ``max_event_size`` bytes
    raises :class:`FrameTooLarge` as soon as more than that many bytes of it are buffered. After an
    error the framer is dead: every later :meth:`feed` raises the same kind of error.
    """

    __slots__ = ("_after", "_depth", "_name", "_scan", "_state", "_term")

    def __init__(self, max_event_size: int = 1 << 20) -> None:
        if max_event_size < _MIN_LIMIT:
            raise ValueError(f"max_event_size must be at least {_MIN_LIMIT}, got {max_event_size}")
        # _buf: the unfinished item, from its '<' (or a short opener tail)
        super().__init__(max_event_size)
        self._state = _IDLE
        self._scan = 0  # where to resume searching, as an index into _buf
        self._depth = 0  # open elements named like the root, the root included
        self._name = b"event"  # root element name of the frame being read
        self._term = b""  # what ends _SKIP: "-->", "]]>", "?>" or a closing quote
        self._after = _IDLE  # state to return to when the _SKIP terminator is found

    def _feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        buf = self._buf
        origin = self._fed  # stream offset of data[0], for error messages
        if buf and self._state == _IDLE:
            # A few bytes of an opener ('<ev', part of a BOM) wait; joining is cheap and rare.
            origin -= len(buf)
            data, buf = bytes(buf) + data, bytearray()
            self._buf = buf
        # Frames are slices of data and must be bytes: a bytearray is copied once here
        # (bytes(data) of bytes is data itself).
        data = bytes(data)
        pos = 0
        if buf:
            # PERF: an item is half read. Append the chunk and finish that one item inside the
            # buffer, then go on in `data` itself, so that complete events after it are sliced
            # straight from the caller's bytes instead of being copied through the buffer.
            base = len(buf)
            buf += data
            end = self._run(buf, self._scan, 0, frames, handoff=True, origin=origin - base)
            if self._state != _IDLE:
                self._check_limit(len(buf))
                return frames
            # NOTE: end > base: the item's terminator was not in the old bytes, or it would
            # have been found by the previous feed.
            self._buf = bytearray()
            pos = end - base
        # PERF: most chunks are whole plain events, taken here one regex match each; the
        # machine only runs from the first thing that is not one (or a partial event). No match
        # reaches past max_event_size bytes: a longer frame is the machine's to refuse.
        match, kind, limit = _PLAIN_EVENT.match, FrameKind.EVENT, self._max
        while (m := match(data, pos, pos + limit)) is not None:
            frames.append(Frame(kind, m[1]))
            pos = m.end()
        if pos == len(data):
            return frames
        keep = self._run(data, pos, pos, frames, handoff=False, origin=origin)
        if keep < len(data):
            if self._state != _IDLE:
                self._check_limit(len(data) - keep)  # before copying an oversized tail
            self._buf = bytearray(memoryview(data)[keep:])
            self._scan -= keep
        return frames

    def _check_limit(self, held: int) -> None:
        if held > self._max:
            between = self._state == _SKIP and self._after == _IDLE
            raise FrameTooLarge(
                f"{'declaration/comment' if between else 'frame'} exceeds max_event_size="
                f"{self._max} bytes ({held} bytes buffered and not finished)"
            )

    def _run(  # noqa: PLR0915 - PERF: one flat loop, no call per state change
        self,
        view: bytes | bytearray,
        pos: int,
        start: int,
        frames: list[Frame],
        *,
        handoff: bool,
        origin: int,
    ) -> int:
        """Advance the machine over ``view[pos:]``; ``start`` is where the current item began.

        Returns the index from which ``view`` must be kept (the unfinished item's start, or
        ``len(view)``) and leaves the resume point in ``self._scan``. With ``handoff`` (``view``
        is the buffer) it returns as soon as one item is complete, with the index just past it.
        ``origin`` is the stream offset of ``view[0]``.
        """
        n = len(view)
        state, depth, term, after = self._state, self._depth, self._term, self._after
        name = self._name
        kind, content_re = _ROOT_KIND[name], _CONTENT_RE[name]
        limit = start + self._max  # searches stop here: a longer item is an error anyway
        # PERF: the blocks below are in the order a typical event goes through them and fall
        # through from one to the next; `continue` is only for the less common transitions.
        while True:
            end = n if n < limit else limit
            if state == _SKIP:
                i = view.find(term, pos, end)
                if i < 0:
                    pos = max(pos, end - len(term) + 1)
                    break
                state, pos = after, i + len(term)
                if state == _IDLE and handoff:  # a declaration or comment between frames ended
                    self._state = _IDLE
                    return pos
            if state == _IDLE:
                m = _OPEN.match(view, pos)
                if m is None:
                    self._state = _IDLE
                    return self._idle_tail(view, pos, origin)
                pos = m.end()
                group = m.lastindex or 0
                if group == _OPEN_BOM:
                    continue
                start = m.start(group) - 1  # the item's '<'
                limit = start + self._max
                if group != _OPEN_NAME:
                    state, term, after = _SKIP, b"?>" if group == _OPEN_PI else b"-->", _IDLE
                    continue
                name = m[_OPEN_NAME]
                if name == b"event" and not handoff:
                    plain = _PLAIN_EVENT.match(view, start, limit)
                    if plain is not None:
                        frames.append(Frame(FrameKind.EVENT, plain[1]))
                        pos = plain.end()
                        continue
                kind, content_re = _ROOT_KIND[name], _CONTENT_RE[name]
                state, depth = _TAG, 0
                end = n if n < limit else limit
            if state == _TAG:
                m = _TAG_PART.match(view, pos, end)  # always matches, possibly empty
                pos = m.end() if m else pos
                if pos == end:
                    break
                if view[pos] != _GT:  # an attribute value: skip to its closing quote
                    state, after = _SKIP, _TAG
                    term = b'"' if view[pos] == _DQUOTE else b"'"
                    pos += 1
                    continue
                pos += 1
                if view[pos - 2] != _SLASH:  # not '/>', so an element opens
                    depth += 1
                state = _CONTENT if depth else _DONE
            if state == _CONTENT:
                m = content_re.search(view, pos, end)
                if m is None:
                    pos = max(pos, end - _CONTENT_TAIL)
                    break
                pos = m.end()
                state, term = _CONTENT_NEXT[m.lastindex or 0]
                if state == _DONE:
                    depth -= 1
                    if depth:
                        state = _CONTENT
                        continue
                elif state != _END_TAG:  # a comment, CDATA, PI or nested start tag
                    after = _CONTENT
                    continue
            if state == _END_TAG:  # whatever precedes '>' is the worker's problem
                i = view.find(b">", pos, end)
                if i < 0:
                    pos = end
                    break
                pos, depth = i + 1, depth - 1
                if depth:
                    state = _CONTENT
                    continue
            # state == _DONE: the root element has just closed.
            frame = view[start:pos]  # PERF: slicing the caller's bytes is the only copy
            frames.append(Frame(kind, frame if isinstance(frame, bytes) else bytes(frame)))
            state = _IDLE
            if handoff:
                self._state = _IDLE
                return pos
        # The item is unfinished: remember its state; the caller keeps view[start:].
        self._state, self._depth, self._term, self._after = state, depth, term, after
        self._name, self._scan = name, pos
        return start

    def _idle_tail(self, view: bytes | bytearray, pos: int, origin: int) -> int:
        """Between frames with no opener at ``pos``: return what to keep, or raise."""
        m = _WS.match(view, pos)
        pos = m.end() if m else pos
        tail = bytes(view[pos : pos + _OPENER_MAX + 1])
        if not tail or any(opener.startswith(tail) for opener in _OPENERS):
            self._scan = pos
            return pos  # only whitespace, or what may still become an opener ('<ev')
        raise UnexpectedData(
            f"expected <event>, <auth>, <?xml?> or a comment between frames at stream byte "
            f"{origin + pos}, got {bytes(view[pos : pos + _ERR_SNIPPET])!r}"
        )


def event_type(frame: bytes) -> bytes | None:
    """Return the raw ``type`` attribute of the frame's root start tag, or None if it has none.

    PERF: one anchored regex over the start tag only, no XML parsing, so ingest can spot pings
    (``t-x-c-t``) cheaply. The value is not entity-decoded; CoT types never need escaping.
    """
    m = _TYPE_RE.match(frame)
    if m is None:
        return None
    return m[1] if m[1] is not None else m[2]
