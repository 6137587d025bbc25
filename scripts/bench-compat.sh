#!/usr/bin/env bash
# sstream-mirror vs streamvault mirror on the same loopback tree: wall time, requests and bytes
# read for a full mirror and an unchanged re-run; speed-up as a ratio.
#   usage: scripts/bench-compat.sh [--small N SIZE] [--large N SIZE] [--jobs J]
# Defaults: 2,000 files of 256 KiB and 4 files of 256 MiB. Installs the reference tool into a
# venv under target/ on first use; needs gpgv (the python tool verifies with it) and ~4 GiB disk.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/compat-venv
if [ -z "${SSTREAM_MIRROR:-}" ] && [ ! -x "$venv/bin/sstream-mirror" ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q python-simplestreams==0.1.0.post59
fi
cargo build --release -q
exec cargo run --release -q --example bench_compat -- "$@"
