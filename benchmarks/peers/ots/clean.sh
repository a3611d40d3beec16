#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Between two load runs against a running OTS: wait until cot_parser has worked off the backlog
# of the last run, then delete the RabbitMQ queues that run's clients left.
#
#   benchmarks/peers/ots/clean.sh RUN_DIR [TIMEOUT]
#
# The backlog: a run that offered more than cot_parser routes (about 20-30 CoT/s here) leaves
# messages in the `cot_parser` queue that are still being parsed, stored and routed long after
# load.py has gone; the next run would queue behind them. Waits at most TIMEOUT s (default 300)
# and fails if the queue is still not empty.
#
# The queues: OTS declares two queues per client (<uid>, <callsign>) and never deletes them; the <uid> queue
# stays bound to `groups`/__ANON__.OUT after the client leaves, so every later CoT is also copied
# into it (kept for OTS_RABBITMQ_TTL, 1 day). Left alone they make each run slower than the last.
# Deletes only queues named like load.py's clients (uid BENCH-<run>-NNNN, callsign
# BENCH-NNNN-<run>) that have no consumer. The `euds` rows stay (every run has new callsigns).
set -euo pipefail
export PEER_NAME=ots
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

(($# == 1 || $# == 2)) || usage "${BASH_SOURCE[0]}"
[[ -x $1/venv/bin/python ]] || die "no OTS venv in '$1'"
"$1/venv/bin/python" "$here/rabbit.py" empty cot_parser "${2:-300}" ||
    die "cot_parser still has a backlog"
rabbitmqctl -q list_queues name consumers |
    "$1/venv/bin/python" "$here/rabbit.py" delete-idle "$BENCH_QUEUE_RE"
