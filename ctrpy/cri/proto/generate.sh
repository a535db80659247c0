#!/bin/sh
# Regenerate the Python stubs of the CRI API (api_pb2.py, api_pb2_grpc.py) from api.proto.
# Run from anywhere; needs grpcio-tools (`pip install grpcio-tools`, in the `dev` extra).
# The stubs are committed, so installing ctrpy never needs protoc.
set -eu
cd "$(dirname "$0")/../../.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. ctrpy/cri/proto/api.proto
