#!/usr/bin/env bash
# gc and verify at several store sizes: wall time and peak RSS, to show that memory stays flat as
# the store grows (the plan lives in SQLite temporary tables, rows are streamed).
#
# Usage: scripts/bench-gc.sh [BLOBS...]      (default: 100000 400000)
# Env:   BENCH_DIR  where the throwaway stores go (default: a new temporary directory)
#        JOBS       verify --jobs (default: the number of CPUs)
#
# Each store: source `bench`, 5 snapshots naming overlapping windows of the blobs, the newest
# one published as a hardlinked tree (scripts/bench_store.rs). Measured, in order:
#   verify            re-hash every blob, check the tree, walk blobs/
#   gc --dry-run      plan only (--keep-last 2 --grace 0: about half the blobs go)
#   gc                the same plan, executed
#   verify            again, on what is left
set -euo pipefail

cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 400000)
jobs=${JOBS:-$(nproc)}

cargo build --release --quiet --bin streamvault --example bench_store
bin=target/release/streamvault
gen=target/release/examples/bench_store

base=${BENCH_DIR:-$(mktemp -d -t streamvault-bench-XXXXXX)}
mkdir -p "$base"
trap 'rm -rf "$base"/store-*' EXIT

# measure LABEL CMD...: prints "LABEL  <seconds> s  <peak RSS> MiB"
measure() {
    local label=$1
    shift
    local out
    out=$(mktemp)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null || {
            local rc=$?
            # verify exits 1 when it finds problems; anything else is a failure of the bench
            [ "$rc" -eq 1 ] || { echo "$label failed ($rc)" >&2; cat "$out" >&2; exit 1; }
        }
        read -r secs kib < <(tail -n 1 "$out")
    else
        # No GNU time: poll VmHWM of the process while it runs.
        local start end hwm=0 pid
        start=$(date +%s.%N)
        "$@" >/dev/null &
        pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            local v
            v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
            [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
            sleep 0.05
        done
        wait "$pid" || [ $? -eq 1 ]
        end=$(date +%s.%N)
        secs=$(echo "$end - $start" | bc)
        kib=$hwm
    fi
    rm -f "$out"
    printf '  %-16s %8.2f s  %7.1f MiB peak RSS\n' "$label" "$secs" "$(echo "$kib / 1024" | bc -l)"
}

for n in "${sizes[@]}"; do
    dir="$base/store-$n"
    rm -rf "$dir"
    mkdir -p "$dir"
    root="$dir/store"
    t0=$(date +%s)
    "$gen" "$root" "$n" 5 >/dev/null
    echo "store of $n blobs ($(du -sh "$root" | cut -f1) on disk, generated in $(( $(date +%s) - t0 )) s):"
    measure "verify" "$bin" --root "$root" verify --jobs "$jobs"
    measure "gc --dry-run" "$bin" --root "$root" gc --dry-run --keep-last 2 --grace 0
    measure "gc" "$bin" --root "$root" gc --keep-last 2 --grace 0
    "$bin" --root "$root" gc --dry-run --keep-last 2 --grace 0 | tail -n 2 | sed 's/^/    after: /'
    measure "verify (after)" "$bin" --root "$root" verify --jobs "$jobs"
    rm -rf "$dir"
done
