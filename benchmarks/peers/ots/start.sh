#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start OpenTAKServer (API, cot_parser, plain-TCP eud_handler) on 127.0.0.1, state under RUN_DIR.
#
#   benchmarks/peers/ots/start.sh RUN_DIR PORT
#
# Uses the machine's PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672, guest/guest),
# starting either only if it is down. Installs Debian's postgresql-<ver>-postgis-3 if PostGIS is
# missing, creates role and database `ots` (the database is dropped and made anew at each start
# unless OTS_KEEP_DB=1) with the postgis extension, builds RUN_DIR/venv with Python 3.12 from
# pyenv (pip install opentakserver==$OTS_VERSION), writes RUN_DIR/data/config.yml, then starts
#   opentakserver (API on 127.0.0.1:$OTS_API_PORT: migrations, RabbitMQ exchanges)
#   cot_parser    (waits until it consumes the cot_parser queue)
#   eud_handler   (plain TCP CoT on 127.0.0.1:PORT)
# each in its own process group (pid files api.pid, cot_parser.pid, eud_handler.pid; logs *.log
# and data/logs/), and prints
#   ots ready on 127.0.0.1:PORT pids=API,COT_PARSER,COT_PARSER_CHILD...,EUD_HANDLER
# eud_handler forks one more process per client after that; see README.md.
# Environment: OTS_VERSION (1.7.14), OTS_PYTHON (pyenv's newest 3.12), OTS_API_PORT (8081),
# OTS_COT_PARSER_PROCESSES (1), OTS_KEEP_DB (0), OTS_READY_TIMEOUT (240).
set -euo pipefail
set +m
export PEER_NAME=ots
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

(($# == 2)) || usage "${BASH_SOURCE[0]}"
run_dir=$(make_run_dir "$1")
port=$(check_port "$2")
version=${OTS_VERSION:-1.7.14}
api_port=$(check_port "${OTS_API_PORT:-8081}")
parsers=${OTS_COT_PARSER_PROCESSES:-1}
[[ $parsers =~ ^[1-9][0-9]?$ ]] || die "OTS_COT_PARSER_PROCESSES must be 1..99"
keep_db=${OTS_KEEP_DB:-0}
ready_timeout=${OTS_READY_TIMEOUT:-240}
venv=$run_dir/venv
data=$run_dir/data
db_name=ots db_user=ots db_password=ots
((port != api_port)) || die "PORT and OTS_API_PORT must differ"

for name in api cot_parser eud_handler; do
    if [[ -f $run_dir/$name.pid ]] && pid_is "$(<"$run_dir/$name.pid")" "$venv/bin/"; then
        die "$name already running in $run_dir (pid $(<"$run_dir/$name.pid")); run stop.sh first"
    fi
done
for p in "$port" "$api_port"; do
    port_in_use "$p" && die "port $p is already in use"
done

# --- PostgreSQL (shared; started only if down) ---------------------------------------------------
pg_admin() { # psql as a superuser: trust on 127.0.0.1 here, else peer auth on the socket
    local quiet='-c client_min_messages=warning'
    if psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
        PGOPTIONS=$quiet psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -Atq "$@"
    else
        runuser -u postgres -- env PGOPTIONS="$quiet" psql -v ON_ERROR_STOP=1 -Atq "$@"
    fi
}
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    cluster=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n 1)
    peer_log "PostgreSQL is down; starting cluster $cluster/main"
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
    touch "$run_dir/started-postgresql"
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
    pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL did not come up on 127.0.0.1:5432"
fi
pg_major=$(pg_admin -d postgres -c 'show server_version_num')
pg_major=$((pg_major / 10000))
if [[ ! -f /usr/share/postgresql/$pg_major/extension/postgis.control ]]; then
    peer_log "installing postgresql-$pg_major-postgis-3 (apt)"
    apt-get install -y -q "postgresql-$pg_major-postgis-3" >"$run_dir/apt.log" 2>&1 || {
        apt-get update -q >>"$run_dir/apt.log" 2>&1
        apt-get install -y -q "postgresql-$pg_major-postgis-3" >>"$run_dir/apt.log" 2>&1
    } || die "apt-get install postgresql-$pg_major-postgis-3 failed (log: $run_dir/apt.log)"
fi
if [[ -z $(pg_admin -d postgres -c "select 1 from pg_roles where rolname = '$db_user'") ]]; then
    pg_admin -d postgres -c "create role $db_user login password '$db_password'"
fi
db_exists=$(pg_admin -d postgres -c "select 1 from pg_database where datname = '$db_name'")
if [[ -n $db_exists && $keep_db != 1 ]]; then
    # Plain DROP (no FORCE): it fails, rather than cutting off, if another OTS still uses it.
    pg_admin -d postgres -c "drop database $db_name" || die "cannot drop database $db_name (in use?)"
    db_exists=
fi
[[ -n $db_exists ]] || pg_admin -d postgres -c "create database $db_name owner $db_user"
pg_admin -d "$db_name" -c "create extension if not exists postgis"

# --- RabbitMQ (shared; started only if down) -----------------------------------------------------
if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    peer_log "RabbitMQ is down; starting it (rabbitmq-server -detached)"
    rabbitmq-server -detached
    touch "$run_dir/started-rabbitmq"
    for _ in $(seq 60); do rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break; sleep 1; done
    rabbitmq-diagnostics -q ping >/dev/null 2>&1 || die "RabbitMQ did not come up"
fi

# --- venv (Python 3.12: 1.7.x uses PEP 701 f-strings, a SyntaxError on 3.11) -------------------
python=${OTS_PYTHON:-}
if [[ -z $python ]]; then
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    python=$(find "$root/versions" -maxdepth 3 -path '*/3.12.*/bin/python3.12' 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n $python ]] || python=$(command -v python3.12 || true)
fi
[[ -n $python && -x $python ]] || die "no Python 3.12 found (pyenv versions, or set OTS_PYTHON)"
installed=$("$venv/bin/python" -c \
    'import importlib.metadata as m; print(m.version("opentakserver"))' 2>/dev/null || true)
if [[ $installed != "$version" ]]; then
    peer_log "creating $venv with opentakserver==$version ($python; takes a few minutes)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "opentakserver==$version" >"$run_dir/pip.log" 2>&1 || {
        tail -n 20 "$run_dir/pip.log" >&2
        die "pip install opentakserver==$version failed (log: $run_dir/pip.log)"
    }
fi

# --- config ----------------------------------------------------------------------------------------
# Keys: opentakserver/defaultconfig.py. config.yml overrides both the defaults and the environment.
# Every process reads it, so the random per-process defaults (SECRET_KEY, OTS_NODE_ID, ...) are
# fixed here: cot_parser treats messages whose uid is OTS_NODE_ID as already routed.
mkdir -p "$data/logs" "$data/uploads"
cat >"$data/config.yml" <<CONF
DEBUG: false
SECRET_KEY: $(openssl rand -hex 32)
SECURITY_PASSWORD_SALT: '$(openssl rand -hex 16)'
OTS_NODE_ID: $(openssl rand -hex 16)
OTS_LISTENER_ADDRESS: 127.0.0.1
OTS_LISTENER_PORT: $api_port
OTS_STREAMING_INTERFACE: 127.0.0.1
OTS_TCP_STREAMING_PORT: $port
OTS_RABBITMQ_SERVER_ADDRESS: 127.0.0.1
OTS_RABBITMQ_USERNAME: guest
OTS_RABBITMQ_PASSWORD: guest
OTS_COT_PARSER_PROCESSES: $parsers
SQLALCHEMY_DATABASE_URI: postgresql+psycopg://$db_user:$db_password@127.0.0.1:5432/$db_name
OTS_CA_FOLDER: $data/ca
UPLOAD_FOLDER: $data/uploads
OTS_MEDIAMTX_ENABLE: false
OTS_ENABLE_PLUGINS: false
OTS_ENABLE_MESHTASTIC: false
OTS_ENABLE_EMAIL: false
OTS_ENABLE_LDAP: false
OTS_ENABLE_MUMBLE_AUTHENTICATION: false
CONF

export OTS_DATA_FOLDER=$data PYTHONUNBUFFERED=1
# At first start the API downloads an icon set from GitHub; a dead local proxy makes that fail at
# once (logged, harmless) instead of trying the outside network.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY NO_PROXY=127.0.0.1,localhost
export no_proxy=$NO_PROXY

failed() {
    peer_log "start failed; stopping what was started"
    "$here/stop.sh" "$run_dir" >&2 || true
    die "$*"
}

launch() { # launch NAME PROGRAM: in its own session/process group; prints the pid
    setsid "$venv/bin/$2" >"$run_dir/$1.log" 2>&1 </dev/null &
    echo "$!" >"$run_dir/$1.pid"
    echo "$!"
}

api=$(launch api opentakserver)
wait_port "$api_port" "$ready_timeout" "$run_dir/api.log" "$api" ||
    failed "the API did not listen on 127.0.0.1:$api_port"

parser=$(launch cot_parser cot_parser)
"$venv/bin/python" "$here/rabbit.py" consumers cot_parser "$parsers" 60 >/dev/null ||
    failed "cot_parser is not consuming (log: $run_dir/cot_parser.log)"
pid_alive "$parser" || failed "cot_parser exited (log: $run_dir/cot_parser.log)"

eud=$(launch eud_handler eud_handler)
wait_port "$port" "$ready_timeout" "$run_dir/eud_handler.log" "$eud" "$parser" "$api" ||
    failed "eud_handler did not listen on 127.0.0.1:$port"
owners=$(listener_pids "$port" | paste -sd, -)
# A forking server's children share the listening socket, so they may be listed too.
[[ ,$owners, == *,$eud,* ]] || peer_log "warning: port $port is listened on by '$owners', not $eud"

pids=$(printf '%s\n' "$api" "$parser" $(pgrep -P "$parser") "$eud" | paste -sd, -)
echo "$pids" >"$run_dir/pids"
echo "ots ready on 127.0.0.1:$port pids=$pids"
