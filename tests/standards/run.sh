#!/usr/bin/env bash
# Validates the HL7 v2 and FHIR answers under tests/fixtures/*/expected with independent
# parsers (see validate.py), in a virtualenv made on first use; what CI runs.
#
# Environment:
#   EMPI_STANDARDS_VENV  the virtualenv to create or reuse (default: target/standards-venv)
#   PYTHON               the interpreter that creates it (default: python3; 3.11 is tested)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${EMPI_STANDARDS_VENV:-$root/target/standards-venv}

# shellcheck source=venv.sh
. "$here/venv.sh"
exec "$venv/bin/python" "$here/validate.py" "$root/tests/fixtures"
