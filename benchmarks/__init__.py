"""Command-line benchmark programs for otszmq (see benchmarks/README.md).

`python -m benchmarks.load` drives a TAK server with simulated clients; `python -m benchmarks.relay`
is the machine's ceiling, the least work a Python server can do to relay CoT.
"""
