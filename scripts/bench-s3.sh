#!/usr/bin/env bash
# S3 publish benchmark against the raw limit of the same server, in one run (release build):
# a moto_server on loopback (target/s3-venv, installed by scripts/test.sh) is the bucket.
#
# Datasets (bulk streams from scripts/gen_stream.rs, synced from a local directory, then the
# upstream copy is deleted; each dataset is made, measured and deleted before the next one):
#   small  SMALL files of 256 KiB (default 2000)
#   big    BIG files of 256 MiB (default 4)
#   many   OBJECTS files of 1 KiB (default 100000): peak RSS only (of the S3 publish, and of
#          the local publish that built the tree)
# (each stream also holds the generator's few small plain MAAS items and its documents).
#
# For small and big, on a fresh moto each time:
#   raw       scripts/bench_s3_raw.py: boto3/s3transfer uploads every file of the published tree,
#             8 threads, multipart above 64 MiB with 64 MiB parts
#   publish   `streamvault publish 1 s3://…` of the same tree (the tree is built beforehand by a
#             local publish, so both upload the same files); wall time and peak RSS
#   republish the same publish again, unchanged: its requests (from moto's log) and PUTs
# and prints the rate of each and the ratio publish/raw (target >= 0.8), the requests of the
# unchanged republish (target <= 3, 0 PUTs) and peak RSS (targets: many <= 64 MiB; big <= 64 MiB
# + uploads x part size = 64 + 8 x 64 MiB).
#
# Env: SMALL, BIG, OBJECTS (0 skips a dataset), BENCH_NO_BUILD, BENCH_SHOW_REQUESTS (print the
# republish's request lines), BENCH_DIR (default target/bench-s3; deleted at
# the end). Disk: at most about 2 x the biggest dataset (1 GiB for big) at any moment.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL=${SMALL:-2000}
BIG=${BIG:-4}
OBJECTS=${OBJECTS:-100000}
venv=target/s3-venv
if [ ! -x "$venv/bin/moto_server" ]; then
    echo "bench-s3: moto_server missing in $venv (scripts/test.sh installs it)" >&2
    exit 1
fi
[ -x /usr/bin/time ] || { echo "bench-s3: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }

# BENCH_NO_BUILD=1: use the release binaries as they are (e.g. while another build runs).
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --quiet --bin streamvault --example gen_stream
bin=$(realpath target/release/streamvault)
gen=$(realpath target/release/examples/gen_stream)
W=$(realpath -m "${BENCH_DIR:-target/bench-s3}")
rm -rf "$W"
mkdir -p "$W"
echo "bench dir: $W (release build); $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

moto_pid=
stop_moto() {
    if [ -n "$moto_pid" ]; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
        moto_pid=
    fi
    rm -rf "$W/moto-tmp"
}
trap 'stop_moto; rm -rf "$W"' EXIT

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_moto BUCKET: a fresh moto (objects above 5 MiB spool to $W/moto-tmp), one bucket.
start_moto() {
    local port
    port=$(free_port)
    mkdir -p "$W/moto-tmp"
    TMPDIR="$W/moto-tmp" "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>"$W/moto.log" &
    moto_pid=$!
    ep="http://127.0.0.1:$port"
    for _ in $(seq 200); do
        curl -s -o /dev/null "$ep" && break
        sleep 0.1
    done
    curl -s -f -o /dev/null -X PUT "$ep/$1"
}

# Request lines in moto's log from byte $1 on (werkzeug colours them: match `PUT /`); moto logs
# a request after answering it, so give the last line a moment.
log_size() { sleep 0.5; stat -c %s "$W/moto.log"; }
requests_since() { sleep 0.5; tail -c +$(($1 + 1)) "$W/moto.log" | grep -cE '(GET|PUT|POST|HEAD|DELETE) /' || true; }
puts_since() { tail -c +$(($1 + 1)) "$W/moto.log" | grep -cE '(PUT|POST) /' || true; }

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

# prepare NAME P V F SIZE: a store `$W/store-NAME` with snapshot 1 of a bulk stream, its tree
# built (local publish); prints the tree's path.
prepare() {
    local name=$1 up="$W/up-$1" root="$W/store-$1"
    shift
    "$gen" "$up" 1 --key "$W/key.asc" --keyring "$W/keyring.gpg" --bulk "$@" 2>/dev/null
    "$bin" --root "$root" source add "$name" "$up/" --keyring "$W/keyring.gpg" >/dev/null
    "$bin" --root "$root" sync "$name" --jobs 8 >/dev/null
    rm -rf "$up"
    mkdir -p "$W/www-$name"
    /usr/bin/time -f '%e %M' -o "$W/local-$name" \
        "$bin" --root "$root" publish 1 "$W/www-$name/maas" >/dev/null
    readlink -f "$W/www-$name/maas"
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# measure NAME: raw upload, publish, unchanged republish; one line of figures.
measure() {
    local name=$1 tree=$2 root="$W/store-$1"
    local files bytes raw_s
    start_moto rawbench
    read -r files bytes raw_s < <("$venv/bin/python" scripts/bench_s3_raw.py "$ep" rawbench maas "$tree")
    stop_moto

    start_moto svbench
    local mark t secs kib reqs puts rep_reqs rep_puts
    mark=$(log_size)
    t="$W/time-$name"
    AWS_ENDPOINT_URL=$ep /usr/bin/time -f '%e %M' -o "$t" \
        "$bin" --root "$root" publish 1 "s3://svbench/maas" --json >"$W/publish-$name.json"
    read -r secs kib < <(tail -n 1 "$t")
    reqs=$(requests_since "$mark")
    mark=$(log_size)
    AWS_ENDPOINT_URL=$ep "$bin" --root "$root" publish 1 "s3://svbench/maas" --json >/dev/null
    rep_reqs=$(requests_since "$mark")
    rep_puts=$(puts_since "$mark")
    if [ -n "${BENCH_SHOW_REQUESTS:-}" ]; then
        tail -c +$((mark + 1)) "$W/moto.log" | grep -E '(GET|PUT|POST|HEAD|DELETE) /' | sed 's/^/  republish: /' >&2 || true
    fi
    stop_moto

    local raw_rate sv_rate
    raw_rate=$(awk -v b="$bytes" -v s="$raw_s" 'BEGIN { printf "%.1f", b / 1048576 / s }')
    sv_rate=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / 1048576 / s }')
    printf '%-6s %7s %9s MiB | raw %7.2f s %7s MiB/s | publish %7.2f s %7s MiB/s %6s requests | ratio %5s | republish %3s requests %3s PUTs | peak RSS %6s MiB\n' \
        "$name" "$files" "$(mib "$bytes")" "$raw_s" "$raw_rate" "$secs" "$sv_rate" "$reqs" \
        "$(awk -v a="$raw_s" -v b="$secs" 'BEGIN { printf "%.2f", a / b }')" \
        "$rep_reqs" "$rep_puts" "$(mib $((kib * 1024)))"
}

# many: peak RSS of a publish of OBJECTS tiny objects (no raw run).
measure_rss() {
    local name=$1 root="$W/store-$1"
    start_moto svbench
    local t="$W/time-$name" secs kib mark rep_reqs rep_puts
    AWS_ENDPOINT_URL=$ep /usr/bin/time -f '%e %M' -o "$t" \
        "$bin" --root "$root" publish 1 "s3://svbench/maas" --json >/dev/null
    read -r secs kib < <(tail -n 1 "$t")
    mark=$(log_size)
    AWS_ENDPOINT_URL=$ep "$bin" --root "$root" publish 1 "s3://svbench/maas" --json >/dev/null
    rep_reqs=$(requests_since "$mark")
    rep_puts=$(puts_since "$mark")
    stop_moto
    local lkib
    read -r _ lkib < <(tail -n 1 "$W/local-$name")
    printf '%-6s %7s objects | publish %7.2f s | republish %3s requests %3s PUTs | peak RSS %6s MiB (target 64) | local publish of the tree: peak RSS %6s MiB\n' \
        "$name" "$(find "$2" -type f | wc -l)" "$secs" "$rep_reqs" "$rep_puts" "$(mib $((kib * 1024)))" "$(mib $((lkib * 1024)))"
}

if [ "$SMALL" -gt 0 ]; then
    tree=$(prepare small 20 1 $((SMALL / 20)) 262144)
    measure small "$tree"
    rm -rf "$W/store-small" "$W/www-small"
fi
if [ "$BIG" -gt 0 ]; then
    tree=$(prepare big 1 1 "$BIG" 268435456)
    measure big "$tree"
    rm -rf "$W/store-big" "$W/www-big"
fi
if [ "$OBJECTS" -gt 0 ]; then
    tree=$(prepare many 100 1 $((OBJECTS / 100)) 1024)
    measure_rss many "$tree"
    rm -rf "$W/store-many" "$W/www-many"
fi
