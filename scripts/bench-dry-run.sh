#!/usr/bin/env bash
# Issue 13 item 5: a `--dry-run` of the real 2016 cloud-images stream (2.5 MB signed products,
# 7,008 items) with `'arch=amd64' 'release~(trusty|xenial)' --max=1`, python sstream-mirror
# against `streamvault mirror` (release build) on the same file:// tree, a fresh root each time;
# prints both medians and the ratio in one run. Also checks that the dry run created no store
# and called no fsync (strace, when installed).
# Needs the python tool (scripts/compat.sh builds target/compat-venv). A script, never a test.
#   usage: scripts/bench-dry-run.sh [RUNS]
#   SV_BEFORE=/path/to/older/streamvault adds a column for another build (before/after);
#   SV=/path/to/streamvault measures that binary instead of building target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-11}
fx=$(cd ../shared/fixtures/real && pwd)
py=target/compat-venv/bin/sstream-mirror
[ -x "$py" ] || { echo "python sstream-mirror missing: run scripts/compat.sh once" >&2; exit 1; }
if [ -z "${SV:-}" ]; then
    cargo build --release --bin streamvault >&2
fi
sv=${SV:-$(pwd)/target/release/streamvault}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
url="file://$fx/cloud-images-released-2016/streams/v1/com.ubuntu.cloud:released:download.sjson"
key="$fx/keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg"
args=(--keyring="$key" "$url" "$work/out" 'arch=amd64' 'release~(trusty|xenial)' --max=1 --dry-run)
median() { # command… -> median wall microseconds of $runs runs (the store root removed each time)
    local t=()
    for _ in $(seq "$runs"); do
        rm -rf "$work/store"
        local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
        t+=($(( (e - s) / 1000 )))
    done
    printf '%s\n' "${t[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
ms() { echo "scale=1; $1 / 1000" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }

"$sv" --root "$work/store" mirror "${args[@]}" 2>"$work/sv.txt" || { cat "$work/sv.txt"; exit 1; }
[ -e "$work/store" ] && echo "warning: the dry run created $work/store: $(ls "$work/store")" >&2
"$py" "${args[@]}" 2>"$work/py.txt" || { cat "$work/py.txt"; exit 1; }
lines=$(grep -c '^+ ' "$work/sv.txt")
[ "$lines" = "$(grep -c '^+ ' "$work/py.txt")" ] ||
    echo "warning: the plans differ ($lines vs $(grep -c '^+ ' "$work/py.txt") lines)" >&2
if command -v strace >/dev/null; then
    rm -rf "$work/store"
    strace -f -o "$work/trace" -e trace=fsync,fdatasync,syncfs,clone,clone3 \
        "$sv" --root "$work/store" mirror "${args[@]}" >/dev/null 2>&1
    echo "streamvault dry run: $(grep -cE '^[0-9]+ +(fsync|fdatasync|syncfs)\(' "$work/trace") fsyncs, $(grep -cE '^[0-9]+ +clone3?\(' "$work/trace") threads started" >&2
fi

p=$(median "$py" "${args[@]}")
s=$(median "$sv" --root "$work/store" mirror "${args[@]}")
echo "dry-run of the real 2016 stream ($lines plan lines), medians of $runs, load $(cut -d' ' -f1 /proc/loadavg):"
if [ -n "${SV_BEFORE:-}" ]; then
    b=$(median "$SV_BEFORE" --root "$work/store" mirror "${args[@]}")
    echo "| python sstream-mirror | streamvault before | streamvault now | python / before | python / now |"
    echo "|---|---|---|---|---|"
    echo "| $(ms "$p") ms | $(ms "$b") ms | $(ms "$s") ms | $(ratio "$p" "$b")x | $(ratio "$p" "$s")x |"
else
    echo "| python sstream-mirror | streamvault mirror | ratio |"
    echo "|---|---|---|"
    echo "| $(ms "$p") ms | $(ms "$s") ms | $(ratio "$p" "$s")x |"
fi
