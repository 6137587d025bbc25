#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), seeded from the real fixtures.
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z sanitizer
# flags cargo-fuzz passes (nightly is not installable on these machines).
#   usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(parse_document cleartext filter path)
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
fx=../shared/fixtures/real
seed() { mkdir -p "fuzz/corpus/$1"; }
seed parse_document; seed cleartext; seed filter; seed path
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
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${secs}s" >&2
    (cargo fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=4096 2>&1 | tail -n 5)
done
