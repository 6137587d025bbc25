#!/usr/bin/env bash
# Sync benchmark (issue 13's table, in one run): one nginx on loopback serving a generated signed
# stream; medians of 3 of raw `curl -Z --parallel-max J` (files to disk; also to /dev/null, and
# to disk + sha256sum: the floor of a mirror that must hash), python sstream-mirror,
# `streamvault sync` and `streamvault mirror`, wall time with ratios against curl and CPU time
# (user + sys) per GiB; then the unchanged re-sync's requests and bytes, and verify+parse of
# the real 2.5 MB signed products file against gpgv + python3.
#   usage: [SV_BEFORE=BINARY] [SV_SETTLE=SECONDS] [SV_FSTRIM=1] [SV_LOOPFS=SIZE] scripts/bench-sync.sh
#          [--small N SIZE] [--large N SIZE] [--only small|large] [--jobs J] [--runs R] [--dir DIR]
# Tools run in rounds, each run after the previous run's files are deleted and synced (see
# scripts/bench_sync.rs); SV_BEFORE times another build's sync and mirror in the same rounds.
# Defaults: 2,000 files of 256 KiB and 4 files of 256 MiB, --jobs 4, 3 runs. Work files go under
# target/ (peak ~2.5 GiB for the large stream, ~3.5 GiB for the small one with SV_BEFORE) and are
# removed at the end. Besides the medians it prints each round's ratios to curl and their median.
# SV_LOOPFS=SIZE (e.g. 5G; needs root): everything (upstream, outputs, stores) goes on a fresh ext4
# image of that sparse size under target/, made by `mkfs.ext4` (with a journal, as production
# hosts have; no recently-deleted inode scan, which only ext4 without a journal does) with its
# inode tables and journal zeroed at once (no ext4lazyinit thread writing behind the timed runs),
# attached with `losetup --direct-io=on` (no second page cache over the image file) and mounted;
# unmounted, detached and removed at the end. Without it the work directory is under target/ on
# whatever filesystem that is (here: the root, ext4 without a journal).
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
cargo build --release -q --bin streamvault --example bench_sync
if [ -z "${SV_LOOPFS:-}" ]; then
    exec target/release/examples/bench_sync "$@"
fi
# SV_LOOPFS: a fresh journalled ext4 on a loop device, removed however this ends
fs=$PWD/target/bench-sync-fs
img=$fs.img
dev=
cleanup() {
    umount "$fs" 2>/dev/null || true
    [ -z "$dev" ] || losetup -d "$dev" 2>/dev/null || true
    rm -f "$img"
    rmdir "$fs" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
truncate -s "$SV_LOOPFS" "$img"
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$img"
dev=$(losetup -f --show --direct-io=on "$img")
mkdir -p "$fs"
mount "$dev" "$fs"
target/release/examples/bench_sync --dir "$fs/work" "$@"
