"""The store's receiver-to-writer link (otszmq.store.handoff) over a real ZeroMQ PAIR.

Both ends run in the test's thread: the writer's end (LinkSource) blocks only in ``take`` and
``wait_closed``, with timeouts, so each step is driven explicitly, in order.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pytest
import zmq

from otszmq.errors import StoreError
from otszmq.store.buffer import RecordBuffer
from otszmq.store.handoff import LinkSource, WriterFeed

WAIT = 5.0  # seconds a step may take before the test fails


@dataclass
class Link:
    feed: WriterFeed
    source: LinkSource
    buffer: RecordBuffer
    receiver: zmq.Socket[bytes]
    parent_w: int  # the receiver's end of the writer's stdin
    counts: list[dict[str, int]] = field(default_factory=list)

    def hand_over(self, at: float | None = None) -> float | None:
        """Let the receiver take in what the writer said, then serve it."""
        assert self.receiver.poll(int(WAIT * 1000)), "the writer said nothing"
        self.feed.receive()
        return self.feed.serve(time.monotonic() if at is None else at)


@pytest.fixture
def link() -> Iterator[Link]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    receiver, writer = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    for sock in (receiver, writer):
        sock.setsockopt(zmq.LINGER, 0)
    receiver.bind("inproc://writer-link")
    writer.connect("inproc://writer-link")
    parent_r, parent_w = os.pipe()
    buffer = RecordBuffer(1000)
    counts: list[dict[str, int]] = []

    def on_counts(reported: Mapping[str, int]) -> None:
        counts.append(dict(reported))

    feed = WriterFeed(receiver, buffer, batch_size=10, linger=0.0, on_counts=on_counts)
    made = Link(feed, LinkSource(writer, parent_r), buffer, receiver, parent_w, counts)
    try:
        yield made
    finally:
        for fd in (parent_r, parent_w):
            with contextlib.suppress(OSError):  # closed by the test
                os.close(fd)
        receiver.close()
        writer.close()
        context.term()


def test_a_batch_goes_out_when_the_writer_wants_one(link: Link) -> None:
    assert link.source.take(0.0) == []  # asks; nothing yet
    link.buffer.put(b"one", 4)
    link.buffer.put(b"two", 5)
    link.buffer.put(b"three", 3)  # 4 + 5 + 3 > 10: left for the next batch
    assert link.hand_over() is None
    assert link.source.take(WAIT) == [(b"one", 4), (b"two", 5)]
    assert len(link.buffer) == 3
    assert link.source.take(0.0) == []  # asks again, but the receiver has not served yet
    link.hand_over()
    assert link.source.take(WAIT) == [(b"three", 3)]


def test_the_receiver_lingers_for_a_full_batch(link: Link) -> None:
    feed = WriterFeed(link.receiver, link.buffer, batch_size=10, linger=60.0,
                      on_counts=lambda counts: None)
    link.feed = feed
    link.buffer.put(b"few", 4)
    assert link.source.take(0.0) == []
    now = time.monotonic()
    assert link.hand_over(now) == now + 60.0  # the linger's end: when to serve at the latest
    assert link.source.take(0.0) == []  # nothing handed over yet
    assert feed.serve(now + 60.0) is None  # the linger is over: what there is goes
    assert link.source.take(WAIT) == [(b"few", 4)]
    link.buffer.put(b"a", 4)
    assert link.source.take(0.0) == []
    assert link.hand_over(now) is not None
    link.buffer.put(b"b", 6)  # a full batch ends the linger at once
    assert feed.serve(now) is None
    assert link.source.take(WAIT) == [(b"a", 4), (b"b", 6)]


def test_stopping_hands_out_what_waits_then_ends(link: Link) -> None:
    link.buffer.put(b"last", 2)
    link.feed.close()
    assert link.source.wait_closed(WAIT)  # CLOSING reached the writer
    assert link.source.closed
    assert link.source.take(0.0) == []
    link.hand_over()
    assert link.source.take(WAIT) == [(b"last", 2)]
    assert link.source.take(0.0) == []
    link.hand_over()  # closed and empty: END
    assert link.source.take(WAIT) is None
    link.source.finish({"records_written": 2})
    link.hand_over()
    assert link.feed.done
    assert link.counts == [{"records_written": 2}]


def test_reports_reach_the_receiver(link: Link) -> None:
    link.source.report({"records_written": 5, "write_retries": 1})
    link.hand_over()
    assert link.counts == [{"records_written": 5, "write_retries": 1}]
    assert not link.feed.done


def test_the_writer_finishes_when_the_receiver_is_gone(link: Link) -> None:
    os.close(link.parent_w)
    started = time.monotonic()
    assert link.source.take(WAIT) is None
    assert link.source.closed
    assert link.source.wait_closed(WAIT)
    assert time.monotonic() - started < WAIT


def test_wait_closed_times_out_while_the_store_runs(link: Link) -> None:
    started = time.monotonic()
    assert not link.source.wait_closed(0.05)
    assert time.monotonic() - started >= 0.05


def test_a_message_outside_the_protocol_is_a_bug_said_as_such(link: Link) -> None:
    link.source._link.send(b"?")  # what no writer sends
    assert link.receiver.poll(int(WAIT * 1000))
    with pytest.raises(StoreError, match=r"writer link: unexpected message \[b'\?'\] of 1"):
        link.feed.receive()


def test_a_writer_that_connects_after_the_store_began_stopping_is_told_so() -> None:
    # A replacement writer starting while the store stops: no peer on the link yet, where a
    # PAIR's send would block.
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    receiver, writer = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    parent_r, parent_w = os.pipe()
    try:
        for sock in (receiver, writer):
            sock.setsockopt(zmq.LINGER, 0)
        receiver.bind("inproc://late-writer")
        buffer = RecordBuffer(1000)
        buffer.put(b"last", 2)
        feed = WriterFeed(receiver, buffer, batch_size=10, linger=0.0, on_counts=lambda _: None)
        feed.close()  # returns at once
        writer.connect("inproc://late-writer")
        source = LinkSource(writer, parent_r)
        assert source.take(0.0) == []  # its first word: WANT
        assert receiver.poll(int(WAIT * 1000))
        feed.receive()
        assert source.wait_closed(WAIT)  # CLOSING followed it
        feed.serve(time.monotonic())
        assert source.take(WAIT) == [(b"last", 2)]
    finally:
        for fd in (parent_r, parent_w):
            os.close(fd)
        receiver.close()
        writer.close()
        context.term()
