#!/usr/bin/env bash
# Memory and speed of products parsing (issue 8 item 4, issue 13 item 5): peak RSS
# (/usr/bin/time -v) and milliseconds, in a release build, for
#   - verify + parse + select of the real signed 2016 cloud-images products (2.5 MB, 7,008 items);
#   - parse + select of generated 1M-item (~142 MB) and ~200 MB documents, against the target
#     of at most 4x the document's size + 64 MiB;
#   - the whole `streamvault sync --dry-run` of both (a local directory source, --no-verify:
#     read, parse, select, plan, a report line per download), and a real `streamvault sync` of
#     the same sizes where every item names one content (ONE_CONTENT=1: one download, every item
#     recorded), each against the same limit.
# A script, never a timed test.  usage: scripts/mem-products.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cargo build --release --example parse_products --bin streamvault >&2
pp=target/release/examples/parse_products
sv=target/release/streamvault
fx=../shared/fixtures/real
peak() { # command… -> prints "RSS_KB" (stdout of the command goes to $work/out)
    /usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/out" 2>"$work/err" || { cat "$work/err" >&2; return 1; }
    cat "$work/rss"
}
if [ -d "$fx" ]; then
    doc="$fx/cloud-images-released-2016/streams/v1/com.ubuntu.cloud:released:download.sjson"
    for i in 1 2 3; do
        peak "$pp" "$doc" --keyring "$fx"/keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg \
            'arch=amd64' 'release~(trusty|xenial)' >/dev/null
        echo "real 2016 products (signed, 2.5 MB): $(cat "$work/out")"
    done
fi
[ -f "$work/big1m/streams/v1/big.json" ] || python3 scripts/gen_big_products.py "$work/big1m" 1000000 >&2
[ -f "$work/big200/streams/v1/big.json" ] || python3 scripts/gen_big_products.py "$work/big200" 1410000 >&2
[ -f "$work/one1m/streams/v1/big.json" ] || ONE_CONTENT=1 python3 scripts/gen_big_products.py "$work/one1m" 1000000 >&2
[ -f "$work/one200/streams/v1/big.json" ] || ONE_CONTENT=1 python3 scripts/gen_big_products.py "$work/one200" 1410000 >&2
printf '%-10s %10s %12s %12s %10s  %s\n' doc MB limit_MB parse_MB verdict "timings (parse + select all)"
for d in big1m big200; do
    f="$work/$d/streams/v1/big.json"
    size=$(stat -c %s "$f")
    limit=$(( (4 * size + 64 * 1048576) / 1048576 ))
    rss=$(( $(peak "$pp" "$f") / 1024 ))
    verdict=$([ "$rss" -le "$limit" ] && echo ok || echo OVER)
    printf '%-10s %10d %12d %12d %10s  %s\n' "$d" $((size / 1048576)) "$limit" "$rss" "$verdict" "$(cat "$work/out")"
done
printf '%-22s %10s %12s %12s %10s  %s\n' run MB limit_MB peak_MB verdict "seconds, last line"
for run in "big1m --dry-run" "big200 --dry-run" "one1m" "one200"; do
    read -r d flag <<<"$run"
    f="$work/$d/streams/v1/big.json"
    size=$(stat -c %s "$f")
    limit=$(( (4 * size + 64 * 1048576) / 1048576 ))
    root="$work/store-$d"
    rm -rf "$root"
    "$sv" --root "$root" source add big "$work/$d/" --path streams/v1/index.json --no-verify >/dev/null
    start=$(date +%s.%N)
    # shellcheck disable=SC2086 # $flag is empty or one word
    rss=$(( $(peak "$sv" --root "$root" sync big $flag) / 1024 ))
    end=$(date +%s.%N)
    verdict=$([ "$rss" -le "$limit" ] && echo ok || echo OVER)
    printf '%-22s %10d %12d %12d %10s  %s\n' "sync $d $flag" $((size / 1048576)) "$limit" "$rss" "$verdict" \
        "$(echo "$end - $start" | bc) s, $(tail -n 1 "$work/out")"
    rm -rf "$root"
done
