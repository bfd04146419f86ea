# Shell helpers for scripts that run `empi serve` in the background (sourced, not run).

# stop_server PID: asks the server to stop (SIGTERM: in-flight requests finish), waits up to
# 10 s, then kills it.
stop_server() {
    local pid=$1
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

# with_workdir NAME: makes a temporary directory, $work, and on exit stops the server whose
# process id is in $server_pid (when set) and removes the directory, whatever happened.
with_workdir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    server_pid=""
    trap 'stop_server "$server_pid"; rm -rf "$work"' EXIT
}
