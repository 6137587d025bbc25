#!/usr/bin/env bash
# Segmented downloads against a server that caps each connection (issue 13 item 3): one 48 MiB
# item from a Range-capable server limited to CAP bytes/s per connection, synced once as a single
# stream (--segment-min 0) and once segmented (default: 4 segments), each into a fresh store.
# Prints both times and the ratio (target ≤ 0.4). A ratio, measured in one run; never a test.
#
#   usage: scripts/bench-segmented.sh [CAP_BYTES_PER_S (default 4194304)]
set -euo pipefail
cd "$(dirname "$0")/.."
cap=${1:-4194304}
sv=${STREAMVAULT:-target/debug/streamvault}
[ -x "$sv" ] || cargo build -q
gen=target/debug/examples/gen_stream
[ -x "$gen" ] || cargo build -q --example gen_stream
W=$(mktemp -d /tmp/sv-bench-seg.XXXXXX)
srv_pid=
trap '[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; rm -rf "$W"' EXIT

"$gen" "$W/www" 1 --key "$W/key.asc" --keyring "$W/keyring.gpg" --bulk 1 1 1 50331648 >/dev/null 2>&1

# A threaded HTTP/1.1 server with Range support that sends at most $cap bytes/s per connection.
cat > "$W/capped.py" <<'PY'
import http.server, os, sys, time, re
root, cap = sys.argv[1], int(sys.argv[2])
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def __init__(self, *a, **k): super().__init__(*a, directory=root, **k)
    def log_message(self, *a): pass
    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404); return
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1)); end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206: self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start); left = end - start + 1; t0 = time.monotonic(); sent = 0
            while left > 0:
                chunk = f.read(min(65536, left)); self.wfile.write(chunk)
                left -= len(chunk); sent += len(chunk)
                ahead = sent / cap - (time.monotonic() - t0)
                if ahead > 0: time.sleep(ahead)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$W/capped.py" "$W/www" "$cap" > "$W/port" &
srv_pid=$!
for _ in $(seq 100); do [ -s "$W/port" ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$W/port")/"

run() { # name extra-args…
    local root=$W/$1; shift
    "$sv" --root "$root" source add b "$url" --keyring "$W/keyring.gpg" 'product_name~bulk' >/dev/null
    local t0 t1
    t0=$(date +%s.%N)
    "$sv" --root "$root" sync b "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
single=$(run single --segment-min 0)
segmented=$(run segmented)
printf 'cap %s B/s per connection, 48 MiB item\n' "$cap"
printf 'single stream: %.2f s\nsegmented:     %.2f s\nratio:         %.2f (target <= 0.40)\n' \
    "$single" "$segmented" "$(echo "$segmented / $single" | bc -l)"
