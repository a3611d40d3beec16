# Shared by scripts/test and scripts/serve: create or reuse .venv and install
# otszmq into it (editable, with the test extras, so both commands share one venv).
# Expects REPO_ROOT and SCRIPT_NAME to be set by the sourcing script.
# shellcheck shell=bash

VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.otszmq-setup.sha256"
PYTHON=${OTSZMQ_PYTHON:-python3}
LOG_DIR="$VENV/logs"

say() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
    printf '%s: ERROR: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

# Print the last lines of a log file, indented, if it exists.
show_log() {
    local file=$1 lines=${2:-30}
    if [[ -r $file ]]; then
        printf '  --- last %s lines of %s ---\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" | sed 's/^/  /' >&2
    fi
}

python_ok() { # python_ok INTERPRETER: true if it runs and is >= 3.11
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

ensure_venv() {
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        die "$PYTHON not found; install Python 3.11 or newer (or set OTSZMQ_PYTHON=/path/to/python3.11)"
    fi
    if ! python_ok "$PYTHON"; then
        die "$PYTHON is $("$PYTHON" -V 2>&1); otszmq needs Python 3.11 or newer (set OTSZMQ_PYTHON=...)"
    fi
    if [[ -e $VENV ]] && ! python_ok "$VENV/bin/python"; then
        say "existing .venv is broken or older than Python 3.11; recreating it"
        rm -rf "$VENV"
    fi
    if [[ ! -x $VENV/bin/python ]]; then
        say "creating .venv with $("$PYTHON" -V 2>&1)"
        "$PYTHON" -m venv "$VENV" || die "could not create $VENV (is the venv module installed? Debian: apt-get install python3-venv)"
    fi
    mkdir -p "$LOG_DIR"

    local want have=""
    want=$(sha256sum setup.py | cut -d' ' -f1)
    [[ -r $STAMP ]] && have=$(<"$STAMP")
    if [[ $want != "$have" ]]; then
        say "installing otszmq[test] into .venv (log: .venv/logs/pip-install.log)"
        rm -f "$STAMP"
        if ! "$VENV/bin/python" -m pip install -e '.[test]' >"$LOG_DIR/pip-install.log" 2>&1; then
            show_log "$LOG_DIR/pip-install.log" 40
            die "pip install -e '.[test]' failed"
        fi
        printf '%s\n' "$want" >"$STAMP"
    fi

    export VIRTUAL_ENV="$VENV"
    export PATH="$VENV/bin:$PATH"
}
