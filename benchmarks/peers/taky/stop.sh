#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the taky COT server that start.sh started in RUN_DIR (SIGTERM, SIGKILL after 5 s).
#
#   benchmarks/peers/taky/stop.sh RUN_DIR
#
# Only the process recorded in RUN_DIR/taky.pid (and anything in its process group) is signalled.
# The venv and the logs stay in RUN_DIR.
set -euo pipefail
export PEER_NAME=taky
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

(($# == 1)) || usage "${BASH_SOURCE[0]}"
[[ -d $1 ]] || die "no run dir '$1'"
run_dir=$(cd -- "$1" && pwd -P)
if stop_pidfile "$run_dir/taky.pid" "$run_dir/taky.conf" taky 5; then
    rm -f -- "$run_dir/taky-mgmt.sock"
    peer_log "stopped"
else
    die "some taky process is still alive"
fi
