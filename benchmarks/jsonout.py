"""A benchmark program's JSON result on stdout, whole.

NOTE: uvloop (libuv) can leave the standard streams in non-blocking mode (MagicStack/uvloop
issues 460 and 712), and then a result larger than the pipe's 64 KiB is cut: CPython's text
layer drops what the full pipe refused without raising (tests/unit/test_bench_jsonout.py shows
it). Suite run 12 lost a ramp's result with that signature: its first 65,536 characters, then
the newline. So the fd is made blocking before writing.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def print_json(result: dict[str, Any], text: str | None = None) -> None:
    """Write ``result`` (or its already-encoded ``text``) and a newline to stdout, all of it."""
    sys.stdout.flush()
    os.set_blocking(sys.stdout.fileno(), True)
    sys.stdout.write((json.dumps(result, indent=2) if text is None else text) + "\n")
    sys.stdout.flush()
