# Sourced by run.sh and live.sh: makes (or reuses) the virtualenv "$venv" with the pinned
# validators.
# shellcheck source=../lib/venv.sh
. "$here/../lib/venv.sh"
make_venv
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
