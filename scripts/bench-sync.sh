#!/usr/bin/env bash
# Sync benchmark: full sync of many small files and of a few large files over loopback, against
# the raw limit of the same server (parallel curl, parallel GET), the unchanged re-sync's request
# count, and verify+parse of the real 2.5 MB signed products file against gpgv + python3.
#   usage: scripts/bench-sync.sh [--small N SIZE] [--large N SIZE] [--jobs J] [--dir DIR]
# Defaults: 2,000 files of 256 KiB and 4 files of 256 MiB, --jobs 4. Needs ~3 GiB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gpgv >/dev/null 2>&1 || echo "note: gpgv missing, the gpgv comparison will be skipped" >&2
exec cargo run --release -q --example bench_sync -- "$@"
