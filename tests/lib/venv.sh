# Shell helper for scripts that need a Python virtualenv (sourced, not run).

# make_venv: makes the virtualenv "$venv" unless it exists. A fresh Debian or Ubuntu has
# python3 without its venv module (the python3-venv package); as root with apt-get, that
# is installed once, else the error says what to install. $PYTHON picks the interpreter.
make_venv() {
    if [ -x "$venv/bin/python" ]; then
        return
    fi
    echo "creating virtualenv $venv"
    if ! "${PYTHON:-python3}" -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "python3 has no venv module: installing python3-venv"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        fi
        "${PYTHON:-python3}" -m venv "$venv" || {
            echo "error: cannot create a virtualenv; install python3-venv" >&2
            return 1
        }
    fi
}

