#!/usr/bin/env bash
# Runs tests/standards/live.py (the PyPI hl7 MLLP client, and FHIR answers validated with
# fhir.resources R4) against a live `empi serve --hl7 --fhir` on a temporary store; what CI
# runs after run.sh, in the same virtualenv.
#
# Environment:
#   EMPI_BIN             the empi binary (default: target/debug/empi, built with cargo if
#                        missing or stale; a given EMPI_BIN is used as is)
#   EMPI_STANDARDS_VENV  the virtualenv to create or reuse (default: target/standards-venv)
#   PYTHON               the interpreter that creates it (default: python3; 3.11 is tested)
#   READY_SECS           how long to wait for the listeners (default: 60)
#
# The server gets a fresh temporary data dir and free loopback ports, and is always stopped
# (and the dir removed) on exit, whatever happened.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${EMPI_STANDARDS_VENV:-$root/target/standards-venv}
ready_secs=${READY_SECS:-60}

# shellcheck source=venv.sh
. "$here/venv.sh"

# shellcheck source=../lib/server.sh
. "$root/tests/lib/server.sh"
empi_binary
with_workdir empi-standards
trap 'exit 130' INT TERM

# Port 0 everywhere: the server prints `hl7 listening on ADDR` and `fhir listening on ADDR`.
"$bin" serve --data "$work/store" --listen 127.0.0.1:0 --hl7 127.0.0.1:0 --fhir 127.0.0.1:0 \
    >"$work/server.out" 2>"$work/server.log" &
server_pid=$!

wait_listening "$ready_secs" hl7 fhir
hl7=${listening_at[hl7]}
fhir=${listening_at[fhir]}
echo "empi serve: hl7 on $hl7, fhir on $fhir"

status=0
"$venv/bin/python" "$here/live.py" "$hl7" "$fhir" || status=$?
if [ "$status" -ne 0 ]; then
    show_log
fi
exit "$status"
