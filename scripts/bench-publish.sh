#!/usr/bin/env bash
# Times `publish` and `rollback` on snapshots of about 1k, 10k and 100k items.
#
# For each size: a signed bulk stream is generated (generations 1 and 2; the second drops the
# oldest version of every product and adds a new one, so a quarter of the items differ), synced
# twice from a local directory (snapshots 1 and 2), then the real binary is timed for:
#   publish 1 (builds tree 1) | publish 2 (builds tree 2, adds grace links both ways)
#   | publish 2 again (reuses the tree, re-checks it) | rollback | rollback again.
# Rollback must be constant time: one rename, whatever the size.
#
# Environment: SIZES (default "1000 10000 100000"), PROFILE (release, or dev to reuse a debug
# build), BENCH_DIR (default: target/bench-publish, kept for the next run; the store, streams and
# published links go there). Issue 13's target: publish of 100k items in a release build <= 2 s
# (the last line prints each size's first publish against it, with its CPU time: user + system).
# BEFORE=path/to/an/older/streamvault: the first publish of the largest size is then also timed
# RUNS times (default 3) alternating that binary and this build, on the same store; the medians
# and their ratio are printed last (before/after figures from one run on a loaded machine).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1000 10000 100000"}
PROFILE=${PROFILE:-release}
# The stream generator is a test of the debug test binary whatever the profile (a release build
# of the whole test suite would cost more than the bench; the generator's speed is not measured).
cargo test --quiet --test it --no-run 2>/dev/null
TESTFLAGS=()
if [ "$PROFILE" = release ]; then
    cargo build --release --quiet --bin streamvault
    BIN=target/release/streamvault
else
    cargo build --quiet --bin streamvault
    BIN=target/debug/streamvault
fi
BIN=$(realpath "$BIN")
BENCH_DIR=${BENCH_DIR:-target/bench-publish}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(realpath "$BENCH_DIR")
echo "bench dir: $BENCH_DIR ($PROFILE build)" >&2

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

rows=()
for n in $SIZES; do
    up="$BENCH_DIR/up-$n"
    root="$BENCH_DIR/store-$n"
    dest="$BENCH_DIR/www-$n/maas"
    mkdir -p "$BENCH_DIR/www-$n"
    if [ ! -e "$up/current" ]; then
        BENCH_OUT="$up" BENCH_ITEMS="$n" cargo test "${TESTFLAGS[@]}" --quiet --test it \
            bench_generate_stream -- --ignored --exact publish::bench_generate_stream >/dev/null 2>&1
    fi
    sv() { "$BIN" --root "$root" "$@"; }
    if ! sv snapshots bulk --json 2>/dev/null | grep -q '"id": 2'; then
        ln -sfn gen1 "$up/current"
        sv source add bulk "$up/current/" --keyring "$up/keyring.gpg" >/dev/null 2>&1 || true
        t=$(date +%s%N); sv sync bulk --jobs 8 >/dev/null; sync1=$(ms "$t")
        ln -sfn gen2 "$up/current"
        sv sync bulk --jobs 8 >/dev/null
        echo "  $n: synced in ${sync1} ms (first)" >&2
    fi
    items=$(sv snapshots bulk --json | grep -m1 '"items"' | tr -dc 0-9)
    rm -f "$dest"
    # The first publish also under /usr/bin/time when there is one: its CPU time (user +
    # system) is the steadier figure on a shared machine.
    cpu=-
    t=$(date +%s%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%U %S' -o "$BENCH_DIR/time-$n" "$BIN" --root "$root" publish 1 "$dest" \
            --rebuild >/dev/null
        p1=$(ms "$t")
        cpu=$(awk '{ printf "%d", ($1 + $2) * 1000 }' "$BENCH_DIR/time-$n")
    else
        sv publish 1 "$dest" --rebuild >/dev/null
        p1=$(ms "$t")
    fi
    t=$(date +%s%N); sv publish 2 "$dest" --rebuild >/dev/null; p2=$(ms "$t")
    t=$(date +%s%N); sv publish 2 "$dest" >/dev/null; p3=$(ms "$t")
    t=$(date +%s%N); sv rollback "$dest" >/dev/null; r1=$(ms "$t")
    t=$(date +%s%N); sv rollback "$dest" >/dev/null; r2=$(ms "$t")
    rows+=("$(printf '%8s %14s %14s %18s %16s %12s %12s' "$items" "$p1" "$cpu" "$p2" "$p3" "$r1" "$r2")")
done

printf '%8s %14s %14s %18s %16s %12s %12s\n' items "publish ms" "its CPU ms" "2nd publish ms" \
    "re-publish ms" "rollback ms" "rollback ms"
printf '%s\n' "${rows[@]}"
for r in "${rows[@]}"; do
    read -r items p1 cpu _ <<<"$r"
    printf 'publish of %s items: %s ms = %.2f x the 2 s target, CPU %s ms (%s build)\n' "$items" \
        "$p1" "$(echo "$p1 / 2000" | bc -l)" "$cpu" "$PROFILE"
done

# Alternating first publishes of the largest size: BEFORE, then this build, RUNS times.
if [ -n "${BEFORE:-}" ]; then
    BEFORE=$(realpath "$BEFORE")
    RUNS=${RUNS:-3}
    n=${SIZES##* }
    root="$BENCH_DIR/store-$n"
    dest="$BENCH_DIR/www-$n/maas"
    once() { # BIN -> "wall_ms cpu_ms"
        rm -f "$dest"
        local t
        t=$(date +%s%N)
        /usr/bin/time -f '%U %S' -o "$BENCH_DIR/time-ab" "$1" --root "$root" publish 1 "$dest" \
            --rebuild >/dev/null
        echo "$(ms "$t") $(awk '{ printf "%d", ($1 + $2) * 1000 }' "$BENCH_DIR/time-ab")"
    }
    median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
    bw=() bc=() aw=() ac=()
    for _ in $(seq "$RUNS"); do
        read -r w c <<<"$(once "$BEFORE")"; bw+=("$w"); bc+=("$c")
        read -r w c <<<"$(once "$BIN")"; aw+=("$w"); ac+=("$c")
        echo "  before ${bw[-1]} ms (CPU ${bc[-1]}), after ${aw[-1]} ms (CPU ${ac[-1]})" >&2
    done
    mbw=$(printf '%s\n' "${bw[@]}" | median) mbc=$(printf '%s\n' "${bc[@]}" | median)
    maw=$(printf '%s\n' "${aw[@]}" | median) mac=$(printf '%s\n' "${ac[@]}" | median)
    printf 'first publish of %s items, median of %s alternating runs: before %s ms (CPU %s ms), after %s ms (CPU %s ms): wall x %.2f, CPU x %.2f (load %s)\n' \
        "$items" "$RUNS" "$mbw" "$mbc" "$maw" "$mac" "$(echo "$maw / $mbw" | bc -l)" \
        "$(echo "$mac / $mbc" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
fi
