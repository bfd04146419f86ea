#!/usr/bin/env bash
# Runs the Python example client against a live `empi serve` on a temporary store; what CI runs.
#
#   examples/python/run_against_server.sh
#
# Environment:
#   EMPI_BIN      the empi binary (default: target/debug/empi, built with cargo if missing or
#                 stale; a given EMPI_BIN is used as is)
#   EMPI_PY_VENV  the virtualenv to create or reuse (default: target/py-venv)
#   PYTHON        the interpreter that creates the venv (default: python3; 3.11 is tested)
#   READY_SECS    how long to wait for the server to listen (default: 60)
#
# The server gets a fresh temporary data dir and a free loopback port (--listen 127.0.0.1:0), and is always stopped
# (and the temporary dir removed) on exit, whatever happened.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${EMPI_PY_VENV:-$root/target/py-venv}
ready_secs=${READY_SECS:-60}

# shellcheck source=../../tests/lib/venv.sh
. "$root/tests/lib/venv.sh"
make_venv
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
PYTHON="$venv/bin/python" bash "$here/gen_stubs.sh"

# shellcheck source=../../tests/lib/server.sh
. "$root/tests/lib/server.sh"
empi_binary
with_workdir empi-pyexample
trap 'exit 130' INT TERM

# Port 0: the server binds a free loopback port and prints `listening on ADDR` on stdout.
"$bin" serve --data "$work/store" --listen 127.0.0.1:0 --metrics 127.0.0.1:0 >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
echo "started empi serve (pid $server_pid)"

# Ready when it has printed its address and that port accepts connections; bounded, and fails
# fast if the server exits.
wait_listening "$ready_secs" -
addr=${listening_at[-]}
echo "empi serve listening on $addr"

status=0
"$venv/bin/python" "$here/empi_client.py" "$addr" --wait 10 || status=$?
if [ "$status" -eq 0 ]; then
    metrics=$(sed -n 's/^metrics on \(.*\)$/\1/p' "$work/server.out" | head -n 1)
    "$venv/bin/python" "$here/check_metrics.py" "$metrics" || status=$?
fi
if [ "$status" -ne 0 ]; then
    show_log
fi
exit "$status"
