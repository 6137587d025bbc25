#!/usr/bin/env bash
# serve throughput against nginx (Debian nginx-light) on the same tree, same machine, loopback:
# N parallel GETs of N files of SIZE MiB (bodies to /dev/null with curl), median of RUNS runs
# each, then the ratio streamvault / nginx. Issue 14 asks for >= 0.7.
#   usage: scripts/bench-serve.sh [--files N] [--size MIB] [--runs R] [--dir DIR]
# Defaults: 4 files of 256 MiB, 3 runs. Needs N x SIZE MiB of disk (kept in the page cache).
set -euo pipefail
cd "$(dirname "$0")/.."
files=4 size=256 runs=3 dir=
while [ $# -gt 0 ]; do
    case $1 in
        --files) files=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        *) echo "usage: $0 [--files N] [--size MIB] [--runs R] [--dir DIR]" >&2; exit 2 ;;
    esac
done
nginx=$(command -v nginx || true)
[ -n "$nginx" ] || { echo "bench-serve: nginx missing (apt-get install -y nginx-light)" >&2; exit 1; }
cargo build --release -q
sv=$PWD/target/release/streamvault
work=$(mktemp -d "${dir:-${TMPDIR:-/tmp}}/bench-serve.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/tree"
for i in $(seq "$files"); do
    head -c "$((size * 1024 * 1024))" /dev/urandom > "$work/tree/f$i.img"
done
cat "$work"/tree/*.img > /dev/null   # warm the page cache for both servers
chmod -R a+rX "$work"                # nginx workers run as www-data/nobody

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# nginx: defaults of Debian's nginx.conf that matter for static files (sendfile, tcp_nopush)
np=$(port)
mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server { listen 127.0.0.1:$np; root $work/tree; }
}
NGINX
"$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)

"$sv" --root "$work/no-store" serve "$work/tree" --listen 127.0.0.1:0 2> "$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q 'serving' "$work/serve.log" 2>/dev/null && break; sleep 0.05; done
svurl=$(sed -n 's/.* at \(http:[^ ]*\) .*/\1/p' "$work/serve.log")
[ -n "$svurl" ] || { echo "bench-serve: serve did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$np/f1.img" -r 0-0 && break; sleep 0.05; done

# one run: N parallel GETs; prints seconds
run() {
    local base=$1 args=()
    for i in $(seq "$files"); do args+=(-o /dev/null "${base}f$i.img"); done
    local t0 t1
    t0=$(date +%s.%N)
    curl -fsS --no-progress-meter -Z --parallel-max "$files" "${args[@]}" >&2
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

total=$((files * size))
declare -A med
for name in nginx streamvault; do
    if [ $name = nginx ]; then base="http://127.0.0.1:$np/"; else base=$svurl; fi
    run "$base" >/dev/null || { echo "bench-serve: $name failed" >&2; exit 1; }   # warm-up
    times=()
    for _ in $(seq "$runs"); do times+=("$(run "$base")"); done
    med[$name]=$(printf '%s\n' "${times[@]}" | median)
    printf '%-12s %d x %d MiB in parallel: runs %s s; median %.3f s = %.0f MiB/s\n' \
        "$name" "$files" "$size" "${times[*]}" "${med[$name]}" "$(echo "$total / ${med[$name]}" | bc -l)"
done
printf 'ratio streamvault/nginx (throughput): %.2f\n' "$(echo "${med[nginx]} / ${med[streamvault]}" | bc -l)"
