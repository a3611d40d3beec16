# shellcheck shell=bash
# Helpers shared by the peers' start.sh/stop.sh. Sourced, not run.
#
# Every server is started with setsid, so its pid is also its process-group id: stop_group then
# ends the server and everything it forked (OTS forks a process per client) by that one id, and
# nothing is ever looked up or killed by name.

# Names of the per-client queues a peer makes for load.py's clients (OpenTAKServer: one per uid,
# BENCH-<run>-NNNN, and one per callsign, BENCH-NNNN-<run>; benchmarks/cotgen.py).
# shellcheck disable=SC2034  # used by the scripts that source this file
BENCH_QUEUE_RE='BENCH-([0-9a-f]{8}-[0-9]{4}|[0-9]{4}-[0-9a-f]{8})'

peer_log() { printf '%s: %s\n' "${PEER_NAME:-peer}" "$*" >&2; }
die() {
    peer_log "error: $*"
    exit 1
}

# check_port PORT: prints PORT if it is 1..65535, dies otherwise.
check_port() {
    if ! [[ $1 =~ ^[0-9]{1,5}$ ]] || ((10#$1 < 1 || 10#$1 > 65535)); then
        die "not a TCP port: '$1'"
    fi
    printf '%d\n' "$((10#$1))"
}

# make_run_dir DIR: creates DIR and prints its absolute path.
make_run_dir() {
    mkdir -p -- "$1" || die "cannot create run dir '$1'"
    (cd -- "$1" && pwd -P)
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# pid_is PID TEXT: the process exists and TEXT occurs in its command line (guards against
# signalling a recycled pid that no longer belongs to the server this run dir started).
pid_is() {
    local cmdline
    pid_alive "$1" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$2"* ]]
}

# port_in_use PORT: something listens on TCP PORT, on any address.
port_in_use() {
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}

# listener_pids PORT: pids of the processes that listen on TCP 127.0.0.1:PORT.
listener_pids() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

# tcp_accepts PORT: one connection to 127.0.0.1:PORT succeeds (closed at once), within 2 s.
tcp_accepts() {
    # shellcheck disable=SC2016  # $1 is expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# wait_port PORT SECONDS LOG PID...: waits until 127.0.0.1:PORT accepts a connection. Fails
# (showing the end of LOG) when SECONDS pass or when one of the PIDs exits first.
wait_port() {
    local port=$1 seconds=$2 log=$3 pid
    shift 3
    local deadline=$((SECONDS + seconds))
    while ((SECONDS < deadline)); do
        for pid in "$@"; do
            if ! pid_alive "$pid"; then
                peer_log "process $pid exited before 127.0.0.1:$port was ready; end of $log:"
                tail -n 30 -- "$log" >&2 || true
                return 1
            fi
        done
        if port_in_use "$port" && tcp_accepts "$port"; then
            return 0
        fi
        sleep 0.2
    done
    peer_log "127.0.0.1:$port not ready after ${seconds}s; end of $log:"
    tail -n 30 -- "$log" >&2 || true
    return 1
}

# descendants PID: every live descendant of PID, one per line (children first-level first).
descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

# stop_group PID NAME GRACE: SIGTERM to the process group PID (a setsid leader) and its
# descendants, SIGKILL to whatever is left after GRACE seconds. Returns 0 when all are gone.
stop_group() {
    local pid=$1 name=$2 grace=$3 left p
    local -a procs
    mapfile -t procs < <(echo "$pid"; descendants "$pid")
    peer_log "stopping $name (pid $pid, ${#procs[@]} process(es))"
    kill -TERM -- "-$pid" 2>/dev/null || true
    kill -TERM "${procs[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while ((SECONDS < deadline)); do
        left=0
        for p in "${procs[@]}"; do pid_alive "$p" && left=1; done
        ((left)) || return 0
        sleep 0.2
    done
    peer_log "$name did not exit after ${grace}s; SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
    kill -KILL "${procs[@]}" 2>/dev/null || true
    sleep 0.5
    for p in "${procs[@]}"; do
        if pid_alive "$p" && [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) != Z ]]; then
            peer_log "process $p of $name is still alive"
            return 1
        fi
    done
    return 0
}

# stop_pidfile FILE TEXT NAME GRACE: stops the group whose leader's pid is in FILE, if that
# process is still the one started (TEXT in its command line); removes FILE.
stop_pidfile() {
    local file=$1 text=$2 name=$3 grace=$4 pid rc=0
    if [[ ! -f $file ]]; then
        peer_log "$name: no pid file ($file); not started here or already stopped"
        return 0
    fi
    pid=$(<"$file")
    if pid_is "$pid" "$text"; then
        stop_group "$pid" "$name" "$grace" || rc=1
    else
        peer_log "$name (pid ${pid:-?}) is not running"
    fi
    rm -f -- "$file"
    return "$rc"
}

# group_members PGID: pids whose process group is PGID (the server and what it forked).
group_members() {
    ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g {print $1}'
}

# usage SCRIPT: prints the comment block at the top of SCRIPT and exits 2.
usage() {
    awk 'NR == 1 || /^# shellcheck/ {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$1" >&2
    exit 2
}
