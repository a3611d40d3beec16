#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the OpenTAKServer processes that start.sh started in RUN_DIR.
#
#   benchmarks/peers/ots/stop.sh RUN_DIR [--all]
#
# Ends eud_handler (with its per-client forks), cot_parser (with its workers) and the API, each
# by the process group recorded in its pid file (SIGTERM, SIGKILL after 10 s), then deletes the
# RabbitMQ queues that OTS made for load.py's clients (names BENCH-...) and the cot_parser queue.
# The machine's PostgreSQL and RabbitMQ keep running, as does the `ots` database.
# --all also stops RabbitMQ (rabbitmqctl stop) and the PostgreSQL cluster (pg_ctlcluster): they are
# shared with everything else on the machine, so use it only where nothing else needs them.
set -euo pipefail
export PEER_NAME=ots
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

all=0
case $# in
1) ;;
2) [[ $2 == --all ]] || usage "${BASH_SOURCE[0]}"; all=1 ;;
*) usage "${BASH_SOURCE[0]}" ;;
esac
[[ -d $1 ]] || die "no run dir '$1'"
run_dir=$(cd -- "$1" && pwd -P)
venv=$run_dir/venv

rc=0
for name in eud_handler cot_parser api; do
    stop_pidfile "$run_dir/$name.pid" "$venv/bin/" "$name" 10 || rc=1
done
rm -f -- "$run_dir/pids"

if ((!all)) && rabbitmq-diagnostics -q ping >/dev/null 2>&1 && [[ -x $venv/bin/python ]]; then
    # Per-EUD queues (<uid> and <callsign>) are durable-less but never auto-deleted; left behind
    # they would keep receiving copies of later runs' traffic.
    rabbitmqctl -q list_queues name 2>/dev/null |
        "$venv/bin/python" "$here/rabbit.py" delete "$BENCH_QUEUE_RE|cot_parser" ||
        peer_log "warning: could not delete OTS's queues"
fi

if ((all)); then
    peer_log "--all: stopping the machine's RabbitMQ and PostgreSQL"
    rabbitmqctl stop >/dev/null 2>&1 || peer_log "rabbitmqctl stop failed (not running?)"
    for cluster in /etc/postgresql/*/main; do
        [[ -d $cluster ]] || continue
        version=$(basename "$(dirname "$cluster")")
        pg_ctlcluster --skip-systemctl-redirect "$version" main stop ||
            peer_log "pg_ctlcluster $version main stop failed (not running?)"
    done
fi
rm -f -- "$run_dir/started-postgresql" "$run_dir/started-rabbitmq"

((rc == 0)) || die "some OTS process is still alive"
peer_log "stopped"
