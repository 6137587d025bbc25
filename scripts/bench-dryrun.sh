#!/usr/bin/env bash
# Issue 13 item 5: a `--dry-run` of the real 2016 cloud-images stream (2.5 MB signed products,
# 7,008 items) with `'arch=amd64' 'release~(trusty|xenial)' --max=1`, python sstream-mirror
# against `streamvault mirror` on the same file:// tree; medians of N runs and the ratio.
# Needs the python tool (scripts/compat.sh builds target/compat-venv). A script, never a test.
#   usage: scripts/bench-dryrun.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
fx=$(cd ../shared/fixtures/real && pwd)
py=target/compat-venv/bin/sstream-mirror
[ -x "$py" ] || { echo "python sstream-mirror missing: run scripts/compat.sh once" >&2; exit 1; }
cargo build --release --bin streamvault >&2
sv=$(pwd)/target/release/streamvault
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
url="file://$fx/cloud-images-released-2016/streams/v1/com.ubuntu.cloud:released:download.sjson"
key="$fx/keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg"
args=(--keyring="$key" "$url" "$work/out" 'arch=amd64' 'release~(trusty|xenial)' --max=1 --dry-run)
median() { # command… -> median wall seconds of $runs runs
    local t=()
    for _ in $(seq "$runs"); do
        local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
        t+=($(( (e - s) / 1000 )))
    done
    printf '%s\n' "${t[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
"$sv" --root "$work/store" mirror "${args[@]}" 2>"$work/sv.txt" || { cat "$work/sv.txt"; exit 1; }
"$py" "${args[@]}" 2>"$work/py.txt" || { cat "$work/py.txt"; exit 1; }
[ "$(grep -c '^+ ' "$work/sv.txt")" = "$(grep -c '^+ ' "$work/py.txt")" ] ||
    echo "warning: the plans differ ($(grep -c '^+ ' "$work/sv.txt") vs $(grep -c '^+ ' "$work/py.txt") lines)" >&2
p=$(median "$py" "${args[@]}")
s=$(median "$sv" --root "$work/store" mirror "${args[@]}")
echo "| dry-run of the real 2016 stream | python sstream-mirror | streamvault mirror | ratio |"
echo "|---|---|---|---|"
printf '| %s plan lines | %d ms | %d ms | %sx |\n' "$(grep -c '^+ ' "$work/sv.txt")" $((p / 1000)) $((s / 1000)) \
    "$(echo "scale=1; $p / $s" | bc)"
ls "$work/store" 2>/dev/null | sed 's/^/store file created by the dry run: /' >&2 || true
