from __future__ import annotations

from otszmq.ingest.outbound import HARD_LIMIT_FACTOR, Backlog, Outbound


class FakeTransport:
    """Records writes; pauses its protocol's outbound after `capacity` bytes."""

    def __init__(self, capacity: int = 10**9) -> None:
        self.writes: list[bytes] = []
        self.capacity = capacity
        self.out: Outbound | None = None
        self.buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        if sum(map(len, self.writes)) >= self.capacity and self.out is not None:
            self.out.pause()

    def writelines(self, chunks: list[bytes | memoryview]) -> None:
        self.write(b"".join(chunks))  # what asyncio's default writelines does


def outbound(capacity: int = 10**9) -> tuple[Outbound, FakeTransport]:
    transport = FakeTransport(capacity)
    out = Outbound(transport)  # type: ignore[arg-type]
    transport.out = out
    return out, transport


def test_batch_is_written_in_one_call():
    out, transport = outbound()
    out.batch += [b"a", b"b", b"c"]
    out.flush()
    assert transport.writes == [b"abc"]
    out.flush()
    assert transport.writes == [b"abc"]


def test_backlog_coalesces_positions_per_uid_and_keeps_everything_else():
    backlog = Backlog()
    assert not backlog.add(b"sa-x-1", "x")
    assert not backlog.add(b"chat-1", None)
    assert backlog.add(b"sa-x-2!", "x")
    assert not backlog.add(b"sa-y-1", "y")
    assert not backlog.add(b"chat-2", None)
    assert backlog.size == sum(map(len, [b"sa-x-2!", b"chat-1", b"sa-y-1", b"chat-2"]))
    assert backlog.take(10**6) == [b"sa-x-2!", b"chat-1", b"sa-y-1", b"chat-2"]
    assert backlog.size == 0 and len(backlog) == 0


def test_take_returns_at_least_one_item():
    backlog = Backlog()
    backlog.add(b"x" * 100, None)
    backlog.add(b"y", None)
    assert backlog.take(1) == [b"x" * 100]


def test_paused_client_queues_then_drains_in_order_on_resume():
    out, transport = outbound()
    out.pause()
    out.add_slow(b"1", None)
    out.add_slow(b"p-old", "u")
    out.add_slow(b"2", None)
    out.add_slow(b"p-new", "u")
    assert out.coalesced == 1
    out.batch.append(b"3")
    out.flush()  # while paused, the batch joins the backlog behind what waits
    assert transport.writes == []
    out.resume()
    assert b"".join(transport.writes) == b"1p-new23"
    assert out.backlog is None


def test_resume_stops_when_transport_pauses_again():
    out, _transport = outbound(capacity=300 * 1024)
    out.pause()
    for _ in range(10):
        out.add_slow(b"z" * 100 * 1024, None)
    out.resume()
    assert out.paused
    assert out.backlog is not None and out.backlog_bytes() > 0


def test_slow_client_policy():
    out, _ = outbound()
    bound = 1000
    assert out.check_bound(bound, now=0.0, timeout=5.0) is None
    out.pause()
    out.add_slow(b"x" * 1500, None)
    assert out.check_bound(bound, now=1.0, timeout=5.0) is None  # over since 1.0
    assert out.check_bound(bound, now=5.9, timeout=5.0) is None
    assert "for more than 5 s" in (out.check_bound(bound, now=6.1, timeout=5.0) or "")
    out.add_slow(b"x" * bound * HARD_LIMIT_FACTOR, None)
    assert "over 4x" in (out.check_bound(bound, now=6.2, timeout=500.0) or "")


def test_bytes_held_by_the_transport_count_toward_the_bound():
    out, transport = outbound()
    transport.buffered = 1500
    assert out.check_bound(1000, now=1.0, timeout=5.0) is None
    assert out.check_bound(1000, now=7.0, timeout=5.0) is not None
    transport.buffered = 10_000
    assert "over 4x" in (out.check_bound(1000, now=7.1, timeout=500.0) or "")


def test_draining_below_the_bound_resets_the_timer():
    out, _ = outbound()
    out.pause()
    out.add_slow(b"x" * 1500, None)
    assert out.check_bound(1000, now=1.0, timeout=5.0) is None
    out.resume()
    assert out.check_bound(1000, now=100.0, timeout=5.0) is None
    assert out.over_since is None


def test_switching_to_protobuf_keeps_the_response_ahead_of_what_follows():
    out, transport = outbound()
    out.pause()
    out.add_slow(b"<xml-position-u1/>", "u1")
    out.batch.append(b"<xml-delivery/>")
    out.switch_to_proto(b"<takp-r/>")
    assert out.proto
    # A later report of the same uid must not take the place of the XML one, before the
    # response: coalescing stops at the switch.
    out.add_slow(b"\xbfproto-position-u1", "u1")
    out.resume()
    assert transport.writes == [
        b"<xml-position-u1/><xml-delivery/><takp-r/>\xbfproto-position-u1"
    ]
