#!/usr/bin/env bash
# gc and verify at several store sizes: wall time and peak RSS, to show that time grows linearly
# and memory stays flat as the store grows (the plan lives in SQLite temporary tables, rows are
# streamed), against issue 13's target: gc (plan + sweep) of 10^6 blobs in <= 60 s and
# <= 64 MiB peak RSS.
#
# Usage: scripts/bench-gc.sh [BLOBS...]      (default: 100000 400000 1000000)
# Env:   BENCH_DIR     where the throwaway stores go (default: target/bench-gc; removed after)
#        JOBS          verify --jobs (default: the number of CPUs)
#        BENCH_VERIFY  `after`: skip the first verify (the verify columns then show the run
#                      after gc alone); default `both`
#        BENCH_LOOPFS  e.g. `6G`: put the stores on a fresh ext4 image of that (sparse) size with
#                      `inline_data`, loop-mounted under BENCH_DIR (needs root). Each blob is
#                      then held in its inode: 10^6 blobs take about 1 GB instead of 5 GB (4 KiB
#                      blocks), and unlinks free no data blocks (no `discard` I/O).
#
# Each store: source `bench`, 5 snapshots naming overlapping windows of the blobs, the newest
# one published as a hardlinked tree (scripts/bench_store.rs). Measured, in order:
#   verify            re-hash every blob, check the tree, walk blobs/
#   gc --dry-run      the plan only (--keep-last 2 --grace 0: about half the blobs go)
#   gc                the same plan, executed: its time minus the dry run's is the removal
#                     ("sweep": row deletion + unlinks)
#   verify            again, on what is left
# Release build. Then one line per size: plan, sweep, total, peak RSS and the ratios to the
# targets (<= 1.00 meets them).
set -euo pipefail

cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 400000 1000000)
jobs=${JOBS:-$(nproc)}

cargo build --release --quiet --bin streamvault --example bench_store
bin=$(realpath target/release/streamvault)
gen=$(realpath target/release/examples/bench_store)

base=${BENCH_DIR:-target/bench-gc}
mkdir -p "$base"
base=$(realpath "$base")
stores=$base
cleanup() {
    rm -rf "$stores"/store-*
    if [ -n "${BENCH_LOOPFS:-}" ]; then
        umount "$base/fs" 2>/dev/null || true
        rm -f "$base/fs.img"
        rmdir "$base/fs" 2>/dev/null || true
    fi
}
trap cleanup EXIT
if [ -n "${BENCH_LOOPFS:-}" ]; then
    rm -f "$base/fs.img"
    truncate -s "$BENCH_LOOPFS" "$base/fs.img"
    mkfs.ext4 -q -O inline_data -I 256 -i 2048 "$base/fs.img"
    mkdir -p "$base/fs"
    mount -o loop "$base/fs.img" "$base/fs"
    stores=$base/fs
fi

# measure LABEL CMD...: prints "LABEL  <seconds> s  <CPU seconds> s CPU  <peak RSS> MiB" and sets
# SECS, CPU and KIB. CPU time (user + system) is the steadier figure on a shared machine.
measure() {
    local label=$1
    shift
    local out
    out=$(mktemp)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%e %M %U %S' -o "$out" "$@" >/dev/null || {
            local rc=$?
            # verify exits 1 when it finds problems; anything else is a failure of the bench
            [ "$rc" -eq 1 ] || { echo "$label failed ($rc)" >&2; cat "$out" >&2; exit 1; }
        }
        local user sys
        read -r SECS KIB user sys < <(tail -n 1 "$out")
        CPU=$(echo "$user + $sys" | bc)
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
        SECS=$(echo "$end - $start" | bc)
        KIB=$hwm
        CPU=0
    fi
    rm -f "$out"
    printf '  %-16s %8.2f s  %8.2f s CPU  %7.1f MiB peak RSS\n' "$label" "$SECS" "$CPU" \
        "$(echo "$KIB / 1024" | bc -l)"
}

summary=()
for n in "${sizes[@]}"; do
    dir="$stores/store-$n"
    rm -rf "$dir"
    mkdir -p "$dir"
    root="$dir/store"
    t0=$(date +%s)
    "$gen" "$root" "$n" 5 >/dev/null
    echo "store of $n blobs ($(du -sh "$root" | cut -f1) on disk, generated in $(( $(date +%s) - t0 )) s):"
    v_s=0 v_k=0 v_c=0
    if [ "${BENCH_VERIFY:-both}" != after ]; then
        measure "verify" "$bin" --root "$root" verify --jobs "$jobs"
        v_s=$SECS v_k=$KIB v_c=$CPU
    fi
    measure "gc --dry-run" "$bin" --root "$root" gc --dry-run --keep-last 2 --grace 0
    p_s=$SECS p_k=$KIB
    measure "gc" "$bin" --root "$root" gc --keep-last 2 --grace 0
    g_s=$SECS g_k=$KIB g_c=$CPU
    "$bin" --root "$root" gc --dry-run --keep-last 2 --grace 0 | tail -n 2 | sed 's/^/    after: /'
    measure "verify (after)" "$bin" --root "$root" verify --jobs "$jobs"
    [ "$KIB" -gt "$v_k" ] && v_k=$KIB
    if [ "${BENCH_VERIFY:-both}" = after ]; then v_s=$SECS v_c=$CPU; fi
    rm -rf "$dir"
    summary+=("$(awk -v n="$n" -v p="$p_s" -v g="$g_s" -v pk="$p_k" -v gk="$g_k" -v vs="$v_s" -v vk="$v_k" \
        -v gc="$g_c" -v vc="$v_c" 'BEGIN {
        rss = (pk > gk ? pk : gk) / 1024; s = g - p; if (s < 0) s = 0
        printf "%9d %8.2f %8.2f %8.2f %8.2f %9.1f %9.2f %9.2f %9.2f %8.2f %9.1f", n, p, s, g, gc, rss, g / 60, rss / 64, vs, vc, vk / 1024 }')")
done

echo
# gc CPU: user + system of the real gc (plan + sweep); vRSS: the larger of the two verify runs.
printf '%9s %8s %8s %8s %8s %9s %9s %9s %9s %8s %9s\n' blobs "plan s" "sweep s" "total s" "gc CPU" \
    "RSS MiB" "time/60s" "RSS/64M" "verify s" "vCPU s" "vRSS MiB"
printf '%s\n' "${summary[@]}"
