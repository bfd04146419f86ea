#!/usr/bin/env bash
# Generates the Python gRPC stubs for proto/empi/v1/empi.proto into examples/python/_generated
# (gitignored). Needs grpcio-tools (see requirements.txt) in the Python that runs it:
#   PYTHON=path/to/venv/bin/python examples/python/gen_stubs.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
out="$here/_generated"
rm -rf "$out"
mkdir -p "$out"
# `python -m grpc_tools.protoc` adds the bundled google/protobuf/*.proto include path itself.
"$python" -m grpc_tools.protoc \
    -I "$root/proto" \
    --python_out="$out" \
    --pyi_out="$out" \
    --grpc_python_out="$out" \
    "$root/proto/empi/v1/empi.proto"
echo "stubs written to ${out#"$root"/}"
