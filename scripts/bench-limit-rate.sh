#!/usr/bin/env bash
# --limit-rate benchmark, measured from the server's side: a python HTTP server on 127.0.0.1
# serves a generated stream and records every chunk it hands to the kernel (time, bytes); then
# `streamvault sync --limit-rate RATE --jobs J` mirrors it (the server answers `Range` requests
# like a real mirror; BENCH_NO_RANGE=1 turns that off), and the script prints, per rate, the
# overall average and the lowest and highest average over every 5 s window (sliding by 0.1 s,
# from the first byte served to the last) as a percentage of RATE. PASS when every window is
# within 10 % of RATE.
#   usage: scripts/bench-limit-rate.sh [--rate RATE]… [--seconds S] [--files N] [--jobs J]
# Defaults: --rate 100k --rate 1M, 40 s of data per rate in 16 files, --jobs 4.
# Environment: STREAMVAULT (default target/debug/streamvault, built if missing).
# Exit status 0 when every rate passes, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

rates=(); seconds=40; files=16; jobs=4
while [ $# -gt 0 ]; do
    case $1 in
        --rate) rates+=("$2"); shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        *) echo "usage: $0 [--rate RATE]… [--seconds S] [--files N] [--jobs J]" >&2; exit 2 ;;
    esac
done
[ ${#rates[@]} -gt 0 ] || rates=(100k 1M)

sv=${STREAMVAULT:-$top/target/debug/streamvault}
[ -x "$sv" ] || cargo build -q
gen=$top/target/debug/examples/gen_stream
[ -x "$gen" ] || cargo build -q --example gen_stream

W=$(mktemp -d /tmp/sv-bench-rate.XXXXXX)
trap 'rm -rf "$W"' EXIT

# RATE as bytes per second, as streamvault parses it (binary multiples)
bytes_per_second() {
    python3 -c '
import sys
s = sys.argv[1].strip().removesuffix("/s").rstrip("Bb")
m = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(s[-1].lower(), 1)
print(round(float(s[:-1] if m > 1 else s) * m))' "$1"
}

status=0
for rate in "${rates[@]}"; do
    bps=$(bytes_per_second "$rate")
    size=$(( bps * seconds / files ))
    www=$W/www-$rate
    "$gen" "$www" 1 --key "$W/key.asc" --keyring "$W/keyring.gpg" --bulk 1 1 "$files" "$size" 2>/dev/null
    python3 - "$www" "$bps" "$rate" "$jobs" "$sv" "$W/root-$rate" "$W/keyring.gpg" <<'PY' || status=1
import http.server, os, socket, subprocess, sys, threading, time

www, bps, rate, jobs, sv, root, keyring = sys.argv[1:8]
bps = int(bps)
sndbuf = int(os.environ.get("BENCH_SNDBUF", "65536"))
log = []          # (monotonic time, bytes) per chunk written to the socket
lock = threading.Lock()

class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=www, **kw)
    def log_message(self, *a):
        pass
    def setup(self):
        super().setup()
        if sndbuf > 0:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    def send_head(self):
        # `Range: bytes=A-B` / `bytes=A-` as real mirrors answer it (http.server has no ranges)
        self.range = None
        r = "" if os.environ.get("BENCH_NO_RANGE") else self.headers.get("Range", "")
        path = self.translate_path(self.path)
        if r.startswith("bytes=") and os.path.isfile(path):
            a, _, b = r[6:].partition("-")
            size = os.path.getsize(path)
            try:
                start, end = int(a), min(int(b) if b else size - 1, size - 1)
            except ValueError:
                return super().send_head()
            if start > end:
                self.send_error(416)
                return None
            f = open(path, "rb")
            f.seek(start)
            self.range = end - start + 1
            self.send_response(206)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(self.range))
            self.end_headers()
            return f
        return super().send_head()
    def copyfile(self, source, out):
        left = self.range
        while left is None or left > 0:
            buf = source.read(16384 if left is None else min(16384, left))
            if not buf:
                return
            if left is not None:
                left -= len(buf)
            out.write(buf)
            with lock:
                log.append((time.monotonic(), len(buf)))

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d/" % srv.server_address[1]
env = {"STREAMVAULT_ROOT": root, "PATH": "/usr/bin:/bin"}
subprocess.run([sv, "source", "add", "bench", url, "--keyring", keyring], env=env, check=True,
               stdout=subprocess.DEVNULL)
t0 = time.monotonic()
r = subprocess.run([sv, "sync", "bench", "--limit-rate", rate, "--jobs", jobs], env=env,
                   stdout=subprocess.DEVNULL)
wall = time.monotonic() - t0
srv.shutdown()
if r.returncode != 0:
    print(f"rate {rate}: sync failed with status {r.returncode}")
    sys.exit(1)

with lock:
    chunks = sorted(log)
first, last = chunks[0][0], chunks[-1][0]
total = sum(n for _, n in chunks)
span = last - first
# bytes per 0.1 s slot, then every 5 s window (50 slots) that lies inside [first, last]
slot = 0.1
slots = [0] * (int(span / slot) + 1)
for t, n in chunks:
    slots[int((t - first) / slot)] += n
win = 50
avgs = [sum(slots[i:i + win]) / (win * slot) for i in range(0, len(slots) - win + 1)]
if not avgs:
    print(f"rate {rate}: the transfer took {span:.1f} s, less than one 5 s window")
    sys.exit(1)
lo, hi = min(avgs), max(avgs)
import os
if os.environ.get("BENCH_SECONDS"):
    print(" ".join("%.0f" % (sum(slots[i:i+10]) / 1024) for i in range(0, len(slots), 10)), "KiB per second")
ok = 0.9 * bps <= lo and hi <= 1.1 * bps
print(f"rate {rate} ({bps} B/s), jobs {jobs}: {total} bytes in {span:.1f} s (sync {wall:.1f} s); "
      f"average {total / span / 1024:.1f} KiB/s = {100 * total / span / bps:.1f} %; "
      f"5 s windows ({len(avgs)}): min {100 * lo / bps:.1f} %, max {100 * hi / bps:.1f} % "
      f"-> {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
done
exit $status
