#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), seeded from the real fixtures.
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z sanitizer
# flags cargo-fuzz passes (nightly is not installable on these machines).
#   usage: scripts/fuzz.sh [--smoke] [SECONDS] [TARGET...]
#   --smoke: every target for 60 s, then one line per target with its runs (what CI runs;
#            exit 1 if any target found a crash). Memory: every target runs with
#            -rss_limit_mb=2048; `expand` (products expansion) also with -malloc_limit_mb=512,
#            so one allocation beyond 512 MiB counts as a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; fi
secs=${1:-60}; shift || true
all=(parse_document expand cleartext filter path)
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
fx=../shared/fixtures/real
seed() { mkdir -p "fuzz/corpus/$1"; }
for t in "${all[@]}"; do seed "$t"; done
if [ -d "$fx" ]; then
    for f in "$fx"/maas-stable-2025-trimmed/streams/v1/*.json "$fx"/incus-chr-2025/streams/v1/*.json; do
        cp "$f" "fuzz/corpus/parse_document/$(basename "$f" | tr ':' '_')"
    done
    for f in "$fx"/cloud-images-released-2016/streams/v1/index.sjson "$fx"/negative/*.sjson; do
        cp "$f" "fuzz/corpus/cleartext/$(basename "$f" | tr ':' '_')"
    done
    # the small signed index doubles as a parser seed once unwrapped by the fuzzer's mutations
    cp "$fx"/cloud-images-released-2016/streams/v1/index.sjson fuzz/corpus/parse_document/index.sjson
fi
i=0
for e in 'arch=amd64' 'release~(jammy|noble)' 'os~(grub*|pxelinux)' 'release!~.' 'subarch !~ (?<=x)y' 'size=2500'; do
    printf '%s' "$e" > "fuzz/corpus/filter/seed$i"; i=$((i+1))
done
for p in 'noble/amd64/20250805/squashfs' 'a/../b' '/etc/passwd' 'a//b' 'bootloaders/uefi/amd64/20210819.0/grub2-signed.tar.xz'; do
    printf '%s' "$p" > "fuzz/corpus/path/seed$i"; i=$((i+1))
done
# alias tables (the `expand` target splices its input in as `_aliases`)
for a in '{"a":{"x":{"k":"v"}}}' '{"a":{"x":{"b":"y"}},"b":{"y":{"c":"z"}},"c":{"z":{"size":5}}}' \
         '{"a":{"x":{"l":[{"a":"x"},{"a":"x"}]}}}' '{"a":{"x":{"path":"../x"}}}' \
         '{"a":{"x":{"big":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}}'; do
    printf '%s' "$a" > "fuzz/corpus/expand/seed$i"; i=$((i+1))
done
status=0
summary=()
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${secs}s" >&2
    extra=(-rss_limit_mb=2048)
    [ "$t" = expand ] && extra+=(-malloc_limit_mb=512)
    log=$(mktemp)
    if cargo fuzz run "$t" -- -max_total_time="$secs" "${extra[@]}" >"$log" 2>&1; then
        result=ok
    else
        result=FAILED; status=1
    fi
    tail -n 5 "$log" >&2
    runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -n 1 | grep -o '[0-9]*' || true)
    summary+=("$t: ${runs:-?} runs in ${secs} s: $result")
    rm -f "$log"
done
if [ $smoke = 1 ] || [ ${#targets[@]} -gt 1 ]; then
    printf '%s\n' "${summary[@]}"
fi
exit $status
