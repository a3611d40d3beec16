"""A benchmark's JSON result reaches its reader whole, whatever mode stdout was left in."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.servers import REPO_ROOT

# stdout left non-blocking, as uvloop can leave it, and a result far over a pipe's 64 KiB.
CHILD = """
import os
from benchmarks.jsonout import print_json
os.set_blocking(1, False)
print_json({"steps": ["x" * 1000] * 1000})
"""


def test_a_large_result_is_written_whole_to_a_non_blocking_pipe() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == {"steps": ["x" * 1000] * 1000}
    assert done.stdout.endswith("}\n")
