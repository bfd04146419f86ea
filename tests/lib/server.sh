# Shell helpers for scripts that run `empi serve` in the background (sourced, not run).

# empi_binary: sets $bin to $EMPI_BIN as given, or else to $root/target/debug/empi, built
# with cargo (incremental: a no-op when it is up to date); exits 2 when it is not executable.
empi_binary() {
    if [ -n "${EMPI_BIN:-}" ]; then
        bin=$EMPI_BIN
    else
        bin="$root/target/debug/empi"
        (cd "$root" && cargo build --quiet --bin empi)
    fi
    if [ ! -x "$bin" ]; then
        echo "error: empi binary $bin not found or not executable" >&2
        exit 2
    fi
}

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

# show_log: the last 40 lines of the server's log, $work/server.log, on stderr.
show_log() {
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$work/server.log" >&2 || true
}

# wait_listening SECS NAME...: waits until the server ($server_pid, its stdout in
# $work/server.out) has printed `NAME listening on ADDR` for every NAME (`-` names the gRPC
# listener's plain `listening on ADDR`) and every such port accepts connections, and sets
# listening_at[NAME]=ADDR. Bounded: exits 1 with the log's tail when the server exits first
# or SECS pass.
declare -A listening_at
wait_listening() {
    local secs=$1 name prefix addr ready
    shift
    local deadline=$((SECONDS + secs))
    while :; do
        ready=1
        for name in "$@"; do
            if [ "$name" = - ]; then prefix=""; else prefix="$name "; fi
            # The server may not have opened its stdout file yet.
            addr=$(sed -n "s/^${prefix}listening on \(.*\)$/\1/p" "$work/server.out" 2>/dev/null |
                head -n 1 || true)
            if [ -n "$addr" ] && (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
                listening_at[$name]=$addr
            else
                ready=0
            fi
        done
        if [ "$ready" = 1 ]; then
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "error: empi serve exited before listening" >&2
            show_log
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: empi serve not listening after ${secs}s" >&2
            show_log
            exit 1
        fi
        sleep 0.2
    done
}
