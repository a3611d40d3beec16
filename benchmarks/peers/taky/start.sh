#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start taky's COT server (plain TCP, no SSL) on 127.0.0.1:PORT, everything under RUN_DIR.
#
#   benchmarks/peers/taky/start.sh RUN_DIR PORT
#
# Creates RUN_DIR/venv (pip install taky==$TAKY_VERSION) if it is not there yet, writes
# RUN_DIR/taky.conf, starts `taky -c RUN_DIR/taky.conf` in the background (pid in RUN_DIR/taky.pid,
# output in RUN_DIR/taky.log), waits until the port accepts connections and prints
#   taky ready on 127.0.0.1:PORT pids=PID
# Environment: TAKY_VERSION (default 0.10), TAKY_PYTHON (default python3.11),
# TAKY_READY_TIMEOUT (s, default 30), TAKY_LOG_LEVEL (default warning).
set -euo pipefail
set +m
export PEER_NAME=taky
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

(($# == 2)) || usage "${BASH_SOURCE[0]}"
run_dir=$(make_run_dir "$1")
port=$(check_port "$2")
version=${TAKY_VERSION:-0.10}
python=${TAKY_PYTHON:-python3.11}
ready_timeout=${TAKY_READY_TIMEOUT:-30}
log_level=${TAKY_LOG_LEVEL:-warning}
venv=$run_dir/venv
conf=$run_dir/taky.conf
pid_file=$run_dir/taky.pid
log=$run_dir/taky.log

# NOTE: taky binds a UNIX socket RUN_DIR/taky-mgmt.sock; sun_path holds at most 107 bytes.
((${#run_dir} <= 90)) || die "RUN_DIR path too long for taky's management socket: $run_dir"

if [[ -f $pid_file ]] && pid_is "$(<"$pid_file")" taky; then
    die "already running in $run_dir (pid $(<"$pid_file")); run stop.sh first"
fi
port_in_use "$port" && die "127.0.0.1:$port (or another address on port $port) is already in use"

installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("taky"))' \
    2>/dev/null || true)
if [[ $installed != "$version" ]]; then
    peer_log "creating $venv with taky==$version"
    command -v "$python" >/dev/null || die "no $python (set TAKY_PYTHON)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "taky==$version" \
        >"$run_dir/pip.log" 2>&1 || {
        tail -n 20 "$run_dir/pip.log" >&2
        die "pip install taky==$version failed (log: $run_dir/pip.log)"
    }
fi

mkdir -p "$run_dir/dp-user"
# Keys and defaults: taky/config.py DEFAULT_CFG. bind_ip None would mean all interfaces.
cat >"$conf" <<CONF
[taky]
hostname = localhost
node_id = TAKY
bind_ip = 127.0.0.1
public_ip = 127.0.0.1
redis = false
root_dir = $run_dir

[cot_server]
port = $port
log_cot =
max_persist_ttl = -1

[dp_server]
upload_path = $run_dir/dp-user

[ssl]
enabled = false
CONF

# setsid: the server leads its own process group, so stop.sh can end it by that one id.
setsid "$venv/bin/taky" -c "$conf" -l "$log_level" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

if ! wait_port "$port" "$ready_timeout" "$log" "$pid"; then
    stop_pidfile "$pid_file" taky taky 5 || true
    die "taky did not become ready"
fi
owners=$(listener_pids "$port" | paste -sd, -)
# A forking server's children share the listening socket, so they may be listed too.
[[ ,$owners, == *,$pid,* ]] || peer_log "warning: port $port is listened on by '$owners', not $pid"
echo "taky ready on 127.0.0.1:$port pids=$pid"
