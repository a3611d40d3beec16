"""CoT events other than SA for the scenarios: GeoChat DMs, markers, big drawings, pings.

Each measured event carries the same fixed-width `<__bench .../>` element as an SA
(benchmarks.cotgen), so receivers find every kind with one regex; what the event *is* and who
must get it follow from (sender, seq) alone (benchmarks.scenarios), so it needs no extra field.
"""

from __future__ import annotations

from benchmarks import cotgen

# ~30 KiB: a long freehand route or a big polygon, the largest events ATAK users commonly send.
BIG_EVENT_BYTES = 30 * 1024


class ChatFactory:
    """One client's GeoChat (`b-t-f`) direct messages, addressed by callsign as ATAK does it.

    ATAK sends a DM with `<marti><dest callsign="..."/></marti>`; a server must deliver it to that
    callsign's connection only. The uid is unique per message, as in ATAK
    (`GeoChat.<sender uid>.<chatroom>.<message id>`).
    """

    def __init__(self, run_id: str, index: int) -> None:
        self.index = index
        self._run_id = run_id
        self._uid = cotgen.uid_prefix(run_id) + b"%0*d" % (cotgen.SRC_DIGITS, index)
        self._callsign = cotgen.callsign(run_id, index)
        self._bench_head = b'<__bench run="%s" ' % run_id.encode("ascii")
        self._point = (
            b'<point lat="38.889500" lon="-77.035300" hae="12.5" ce="9.9" le="9999999.0"/>'
        )

    def event(self, time_: bytes, stale: bytes, seq: int, t_us: int, dst: int) -> bytes:
        to_uid = cotgen.uid_prefix(self._run_id) + b"%0*d" % (cotgen.SRC_DIGITS, dst)
        to_callsign = cotgen.callsign(self._run_id, dst)
        message_id = b"%s-%09d" % (self._uid, seq)
        return (
            b'<event version="2.0" uid="GeoChat.%s.%s.%s" type="b-t-f" time="%s" start="%s" '
            b'stale="%s" how="h-g-i-g-o">'
            % (self._uid, to_callsign, message_id, time_, time_, stale)
            + self._point
            + b"<detail>"
            + b'<__chat parent="RootContactGroup" groupOwner="false" messageId="%s" '
            b'chatroom="%s" id="%s" senderCallsign="%s">'
            % (message_id, to_callsign, to_uid, self._callsign)
            + b'<chatgrp uid0="%s" uid1="%s" id="%s"/></__chat>' % (self._uid, to_uid, to_uid)
            + b'<link uid="%s" type="a-f-G-U-C" relation="p-p"/>' % self._uid
            + b'<remarks source="BAO.F.ATAK.%s" to="%s" time="%s">bench message %d</remarks>'
            % (self._uid, to_uid, time_, seq)
            + b'<marti><dest callsign="%s"/></marti>' % to_callsign
            + self._bench_head
            + cotgen.bench_record(self.index, seq, t_us)
            + b"/></detail></event>"
        )


class MarkerFactory:
    """One client's spot-map markers (`b-m-p-s-m`) and big freehand drawings (`u-d-f`), broadcast.

    A client keeps re-placing a handful of markers (uids cycle), as a user editing a map does.
    """

    MARKERS_PER_CLIENT = 8

    def __init__(self, run_id: str, index: int) -> None:
        self.index = index
        self._uid = cotgen.uid_prefix(run_id) + b"%0*d" % (cotgen.SRC_DIGITS, index)
        self._bench_head = b'<__bench run="%s" ' % run_id.encode("ascii")
        self._link = b'<link uid="%s" type="a-f-G-U-C" relation="p-p"/>' % self._uid
        self._route = _route_links(BIG_EVENT_BYTES)

    def marker(self, time_: bytes, stale: bytes, seq: int, t_us: int) -> bytes:
        slot = seq % self.MARKERS_PER_CLIENT
        return (
            b'<event version="2.0" uid="%s-m%d" type="b-m-p-s-m" time="%s" start="%s" '
            b'stale="%s" how="h-g-i-g-o">' % (self._uid, slot, time_, time_, stale)
            + b'<point lat="%.6f" lon="-77.030000" hae="0.0" ce="9999999.0" le="9999999.0"/>'
            % (38.88 + 0.001 * slot)
            + b'<detail><status readiness="true"/><archive/>'
            + b'<contact callsign="BENCH-%04d.m%d"/>' % (self.index, slot)
            + b'<usericon iconsetpath="COT_MAPPING_SPOTMAP/b-m-p-s-m/-65536"/>'
            + b'<color argb="-65536"/><precisionlocation altsrc="DTED0"/>'
            + self._link
            + self._bench_head
            + cotgen.bench_record(self.index, seq, t_us)
            + b"/></detail></event>"
        )

    def drawing(self, time_: bytes, stale: bytes, seq: int, t_us: int) -> bytes:
        return (
            b'<event version="2.0" uid="%s-route" type="u-d-f" time="%s" start="%s" '
            b'stale="%s" how="h-e">' % (self._uid, time_, time_, stale)
            + b'<point lat="38.889500" lon="-77.035300" hae="0.0" ce="9999999.0" le="9999999.0"/>'
            + b"<detail>"
            + self._route
            + b'<strokeColor value="-256"/><strokeWeight value="3.0"/>'
            + b'<contact callsign="BENCH-%04d route"/><archive/>' % self.index
            + self._link
            + self._bench_head
            + cotgen.bench_record(self.index, seq, t_us)
            + b"/></detail></event>"
        )


def _route_links(size: int) -> bytes:
    """Freehand vertices (`<link point="lat,lon"/>`) adding up to about `size` bytes."""
    links: list[bytes] = []
    total = 0
    step = 0
    while total < size:
        link = b'<link point="%.7f,%.7f"/>' % (38.88 + 1e-5 * step, -77.03 - 1e-5 * step)
        links.append(link)
        total += len(link)
        step += 1
    return b"".join(links)


def ping(uid: bytes, time_: bytes, stale: bytes) -> bytes:
    """ATAK's keep-alive (`t-x-c-t`, uid `<device uid>-ping`); a TAK server answers `t-x-c-t-r`."""
    return (
        b'<event version="2.0" uid="%s-ping" type="t-x-c-t" time="%s" start="%s" stale="%s" '
        b'how="h-g-i-g-o"><point lat="0.0" lon="0.0" hae="0.0" ce="9999999.0" le="9999999.0"/>'
        b"<detail/></event>" % (uid, time_, time_, stale)
    )


PONG_MARK = b'type="t-x-c-t-r"'
