# Sourced by run.sh and live.sh: makes (or reuses) the virtualenv "$venv" with the pinned
# validators. A fresh Debian or Ubuntu has python3 without its venv module (the
# python3-venv package); as root with apt-get, that is installed once, else the error says
# what to install.
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

make_venv
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
