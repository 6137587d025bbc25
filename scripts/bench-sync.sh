#!/usr/bin/env bash
# Sync benchmark (issue 13's table, in one run): one nginx on loopback serving a generated signed
# stream; medians of 3 of raw `curl -Z --parallel-max J` (files to disk; also to /dev/null, and
# to disk + sha256sum: the floor of a mirror that must hash), python sstream-mirror,
# `streamvault sync` and `streamvault mirror`, wall time with ratios against curl and CPU time
# (user + sys) per GiB; then the unchanged re-sync's requests and bytes, and verify+parse of
# the real 2.5 MB signed products file against gpgv + python3.
#   usage: [SV_BEFORE=BINARY] [SV_SETTLE=SECONDS] [SV_FSTRIM=1] scripts/bench-sync.sh
#          [--small N SIZE] [--large N SIZE] [--only small|large] [--jobs J] [--runs R] [--dir DIR]
# Tools run in rounds, each run after the previous run's files are deleted and synced (see
# scripts/bench_sync.rs); SV_BEFORE times another build's sync and mirror in the same rounds.
# Defaults: 2,000 files of 256 KiB and 4 files of 256 MiB, --jobs 4, 3 runs. Work files go under
# target/ (peak ~2.5 GiB for the large stream) and are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# nginx is the upstream (python's http.server would be the bottleneck); /usr/bin/time the CPU meter
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
export PATH="$PATH:/usr/sbin"
command -v gpgv >/dev/null 2>&1 || echo "note: gpgv missing, the python tool and the gpgv comparison need it" >&2
venv=target/compat-venv
if [ -z "${SSTREAM_MIRROR:-}" ] && [ ! -x "$venv/bin/sstream-mirror" ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q python-simplestreams==0.1.0.post59
fi
cargo build --release -q
exec cargo run --release -q --example bench_sync -- "$@"
