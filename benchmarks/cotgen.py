"""CoT events for the load generator: ATAK-style SA reports and the cheap markers found in them.

Every measured event carries one fixed-width detail element,

    <__bench run="1f2e3d4c" seq="000000012" src="0003" t="000000123456"/>

(run id, per-sender sequence number, sender index, send time in microseconds since the run's epoch
on the monotonic clock). The run id keeps another run's events on the same server out of the count.
Fixed widths let a receiver pull the fields out of a whole read with a single `re.findall` in C and
decode them later, after the measured window, without parsing XML. The attributes are in
alphabetical order because that is how a server that re-serializes the XML writes them
(OpenTAKServer's BeautifulSoup does); a server that forwards the bytes keeps any order.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

EVENT_END = b"</event>"
EVENT_END_LEN = len(EVENT_END)

SRC_DIGITS = 4
SEQ_DIGITS = 9
T_DIGITS = 12
MAX_CLIENTS = 10**SRC_DIGITS

RECORD = rb'seq="\d{%d}" src="\d{%d}" t="\d{%d}"' % (SEQ_DIGITS, SRC_DIGITS, T_DIGITS)
# Splitting a blob of records on b'"' gives 6 fields per record: seq=, SEQ, src=, SRC, t=, T.
RECORD_FIELDS = 6
SEQ_FIELD, SRC_FIELD, T_FIELD = 1, 3, 5
RECORD_LEN = len(b'seq="" src="" t=""') + SEQ_DIGITS + SRC_DIGITS + T_DIGITS

STALE_AFTER = timedelta(minutes=2)
# A 4.10 ATAK CIV on a Samsung, as seen in real SA traffic.
TAKV = (
    b'<takv os="34" version="4.10.0.6 (a7b2a4ac).1704387406-CIV" '
    b'device="SAMSUNG SM-G781U" platform="ATAK-CIV"/>'
)


def uid_prefix(run_id: str) -> bytes:
    """The uid prefix of this run's clients; a fresh run id keeps a server's SA cache from an
    earlier run from counting as this run's announcements."""
    return b"BENCH-" + run_id.encode("ascii") + b"-"


def bench_re(run_id: str) -> re.Pattern[bytes]:
    """Finds this run's bench records.

    One group around the three numeric attributes: findall then yields one bytes object per event
    (not a tuple), so a receiver can b"".join() a read's records into one compact blob.
    """
    return re.compile(rb'<__bench run="' + run_id.encode("ascii") + rb'" (' + RECORD + rb")")


def announce_re(run_id: str) -> re.Pattern[bytes]:
    """Finds the client index in this run's announcements (and any later SA of this run)."""
    return re.compile(rb'uid="' + re.escape(uid_prefix(run_id)) + rb"(\d{%d})\"" % SRC_DIGITS)


def cot_times(now: datetime) -> tuple[bytes, bytes]:
    """The `time`/`start` and `stale` attribute values for an event sent at `now`."""
    return _iso(now), _iso(now + STALE_AFTER)


def _iso(moment: datetime) -> bytes:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3].encode("ascii") + b"Z"


def callsign(run_id: str, index: int) -> bytes:
    """Client `index`'s callsign, unique per run: a server that keeps a table of callsigns from
    earlier connections (OpenTAKServer refuses a new uid whose callsign it already has, and then
    drops all its CoT) sees a new one every run. Not the uid, which a server may key queues by."""
    return b"BENCH-%0*d-%s" % (SRC_DIGITS, index, run_id.encode("ascii"))


def bench_record(src: int, seq: int, t_us: int) -> bytes:
    return b'seq="%09d" src="%04d" t="%012d"' % (seq, src, t_us)


class SaFactory:
    """Builds one client's SA events, padded so a measured event is about `event_size` bytes.

    PERF: everything but the times and the bench element is rendered once; the times are rendered
    once per pacer tick (see `header`) and shared by every event of that tick.
    """

    def __init__(self, run_id: str, index: int, event_size: int, cot_type: str = "a-f-G-U-C"):
        self.index = index
        self._bench_head = b'<__bench run="%s" ' % run_id.encode("ascii")
        self.uid = uid_prefix(run_id) + b"%0*d" % (SRC_DIGITS, index)
        self.callsign = callsign(run_id, index)
        self._type = cot_type.encode("ascii")
        # Spread the clients over a few km so they are not all one dot on a map.
        lat = 38.8895 + 0.001 * (index % 100)
        lon = -77.0353 - 0.001 * (index // 100)
        point = b'<point lat="%.6f" lon="%.6f" hae="12.5" ce="9.9" le="9999999.0"/>'
        self._point = point % (lat, lon)
        self._detail_head = (
            b"<detail>"
            + TAKV
            + b'<contact callsign="%s" endpoint="*:-1:stcp"/>' % self.callsign
            + b'<uid Droid="%s"/>' % self.callsign
            + b'<__group name="Cyan" role="Team Member"/>'
            + b'<track course="90.0" speed="0.0"/>'
        )
        self._tail = b""  # measured bare by _padded_tail
        self._tail = self._padded_tail(event_size)

    def header(self, time_: bytes, stale: bytes) -> bytes:
        """Everything up to the bench element, for events sent at `time_`."""
        return (
            b'<event version="2.0" uid="%s" type="%s" time="%s" start="%s" stale="%s" how="m-g">'
            % (self.uid, self._type, time_, time_, stale)
            + self._point
            + self._detail_head
        )

    def announcement(self, time_: bytes, stale: bytes) -> bytes:
        """The client's first SA: what ATAK sends right after it connects (no bench element)."""
        return self.header(time_, stale) + b"</detail></event>"

    def event(self, header: bytes, seq: int, t_us: int) -> bytes:
        return header + self._bench_head + bench_record(self.index, seq, t_us) + b"/>" + self._tail

    def sample_size(self) -> int:
        """Bytes in one measured event; all are this size, every varying field being fixed-width."""
        return len(self.event(self.header(*cot_times(datetime.now(UTC))), 0, 0))

    def _padded_tail(self, event_size: int) -> bytes:
        end = b"</detail></event>"
        bare = len(self.event(self.header(*cot_times(datetime.now(UTC))), 0, 0)) + len(end)
        pad = event_size - bare - len(b"<remarks></remarks>")
        if pad <= 0:  # already as big as asked: no remarks at all
            return end
        return b"<remarks>" + _filler(pad) + b"</remarks>" + end


def _filler(size: int) -> bytes:
    # Readable text rather than one repeated byte, in case a server compresses or indexes remarks.
    words = b"otszmq load generator filler text "
    return (words * (size // len(words) + 1))[:size]
