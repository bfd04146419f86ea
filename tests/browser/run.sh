#!/usr/bin/env bash
# The registrar console in a real browser (what CI runs): Debian's chromium driven by
# Playwright against a live `empi serve --console` over synthetic data.
#
#   tests/browser/run.sh
#
# Installs what is missing: chromium from Debian's packages (apt-get, as root) when
# /usr/bin/chromium is absent, and a virtualenv with the pinned Playwright
# (tests/browser/requirements.txt). Playwright's own browser download is never used.
#
# Environment:
#   EMPI_BIN         the empi binary (default: target/debug/empi, built if missing or stale)
#   BROWSER_VENV     the virtualenv (default: target/browser-venv)
#   SCREENSHOTS      where the screenshots go (default: target/console-screenshots;
#                    docs/console to refresh the README's)
#   READY_SECS       how long to wait for the server to listen (default: 60)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${BROWSER_VENV:-$root/target/browser-venv}
shots=${SCREENSHOTS:-$root/target/console-screenshots}
ready_secs=${READY_SECS:-60}

if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# shellcheck source=../lib/venv.sh
. "$root/tests/lib/venv.sh"
make_venv
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

# shellcheck source=../lib/server.sh
. "$root/tests/lib/server.sh"
empi_binary
with_workdir empi-browser

# Synthetic data only: the committed small set's first 2,000 records (a dozen review tasks).
head -n 2001 "$root/synthetic-data/small/records.csv" > "$work/records.csv"
RUST_LOG=warn "$bin" load --data "$work/store" --create --input "$work/records.csv" \
    >"$work/load.log" 2>&1 || { cat "$work/load.log" >&2; exit 1; }
token() {
    RUST_LOG=warn "$bin" token create --data "$work/store" --name "$1" --role "$2" "${@:3}" \
        2>/dev/null | tail -n 1
}
ann=$(token ann registrar)
bob=$(token bob registrar)
adt=$(token adt-engine submitter --source st-marys-adt)

# Credentials exist, so authentication is on even on this plaintext loopback listener.
RUST_LOG=warn "$bin" serve --data "$work/store" --listen 127.0.0.1:0 --console 127.0.0.1:0 \
    >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
url=""
for _ in $(seq $((ready_secs * 10))); do
    url=$(sed -n 's/^console on //p' "$work/stdout")
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "the console did not start" >&2; cat "$work/stderr" >&2; exit 1; }

mkdir -p "$shots"
"$venv/bin/python" "$here/console_test.py" --url "$url" --registrar "$ann" \
    --second-registrar "$bob" --submitter "$adt" --screenshots "$shots"

# The store itself: stop the server, then its invariants hold and the trail has exactly one
# resolution that changed something, by ann, and the second registrar's refused one.
stop_server "$server_pid"
server_pid=""
RUST_LOG=warn "$bin" check --data "$work/store" >/dev/null
audit=$(RUST_LOG=warn "$bin" audit --data "$work/store")
ok=$(grep '"operation":"ResolveReviewTask"' <<<"$audit" | grep '"outcome":"ok"' | grep -c '"actor":"ann"' || true)
refused=$(grep '"operation":"ResolveReviewTask"' <<<"$audit" | grep -v '"outcome":"ok"' | grep -c '"actor":"bob"' || true)
if [ "$ok" != 1 ] || [ "$refused" != 1 ]; then
    echo "audit trail: $ok resolution(s) by ann, $refused refused for bob (want 1 and 1)" >&2
    exit 1
fi
echo "store checked: one resolution by ann, bob's refused"
