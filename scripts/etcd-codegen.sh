#!/usr/bin/env bash
# Regenerates orchestrator/drctl-etcd/src/pb/ (etcd's gRPC client code) from
# orchestrator/drctl-etcd/proto/. Needs protoc (apt-get install
# protobuf-compiler); building drctl does not: the output is committed.
# Run it after changing a .proto or moving tonic/prost to a new version
# (keep codegen/Cargo.toml's tonic-prost-build on the tonic the workspace uses).
set -euo pipefail
cd "$(dirname "$0")/../orchestrator/drctl-etcd"
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
rm -rf src/pb/*.rs
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../../target/etcd-codegen}" cargo run -q --manifest-path codegen/Cargo.toml
git status --short src/pb
