"""RecordBuffer: the store's bounded hand-off of packed record frames, counted in records."""

from __future__ import annotations

import pytest

from otszmq.store.buffer import KEPT_ROOM, RecordBuffer


def test_a_frame_is_taken_whole_while_the_queue_is_under_its_limit() -> None:
    buffer = RecordBuffer(10)
    assert buffer.put(b"a", 8)
    assert buffer.put(b"b", 7)  # 8 < 10 waiting: taken, the queue passes its limit by 5
    assert len(buffer) == 15
    assert not buffer.put(b"c", 1)  # 15 >= 10: dropped whole, nothing else changes
    assert len(buffer) == 15
    assert buffer.take(100) == [(b"a", 8), (b"b", 7)]
    assert len(buffer) == 0
    assert buffer.put(b"d", 1)  # room again


def test_a_kept_frame_is_taken_past_the_limit_until_kept_room_times_it() -> None:
    buffer = RecordBuffer(10)
    assert buffer.put(b"full", 10)
    assert not buffer.put(b"sa", 1)  # an ordinary frame: dropped (10 >= 10 wait)
    assert buffer.put(b"chat", 3, kept=True)  # 10 < 2 x 10: taken
    assert buffer.put(b"alert", 8, kept=True)  # 13 < 20: taken, passing it by its own records
    assert len(buffer) == 21
    assert not buffer.put(b"more", 1, kept=True)  # 21 >= KEPT_ROOM x 10: dropped, memory bound
    assert KEPT_ROOM * buffer.limit == 20
    assert buffer.take(100) == [(b"full", 10), (b"chat", 3), (b"alert", 8)]


def test_take_stops_before_a_frame_that_would_pass_its_limit() -> None:
    buffer = RecordBuffer(1000)
    for name, count in ((b"a", 3), (b"b", 4), (b"c", 2)):
        assert buffer.put(name, count)
    assert buffer.take(8) == [(b"a", 3), (b"b", 4)]  # 3 + 4 + 2 > 8
    assert len(buffer) == 2
    assert buffer.take(8) == [(b"c", 2)]


def test_a_first_frame_larger_than_the_take_comes_alone() -> None:
    buffer = RecordBuffer(1000)
    buffer.put(b"big", 50)
    buffer.put(b"small", 1)
    assert buffer.take(10) == [(b"big", 50)]
    assert buffer.take(10) == [(b"small", 1)]


def test_take_hands_out_what_waits_even_once_closed() -> None:
    buffer = RecordBuffer(10)
    assert buffer.take(5) == []
    assert not buffer.has_frames
    buffer.put(b"a", 2)
    buffer.put(b"skips only", 0)
    buffer.close()
    assert buffer.closed and buffer.has_frames
    assert buffer.take(5) == [(b"a", 2), (b"skips only", 0)]  # what was queued still goes
    assert buffer.take(5) == [] and not buffer.has_frames


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        RecordBuffer(0)
