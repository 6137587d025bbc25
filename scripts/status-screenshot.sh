#!/usr/bin/env bash
# Renders serve's /-/status page with headless Chromium (Debian's `chromium`) to a PNG, to check
# it in a real browser. Without arguments it builds a demo store (streamvault demo: a source, two
# snapshots, publications) in a temporary directory and serves it; with ROOT and DEST it serves
# that store and published directory instead.
#
#   bash scripts/status-screenshot.sh [OUT.png] [ROOT DEST]
#
# Needs: chromium (apt-get install -y chromium). Prints the PNG's path.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-target/status-screenshot.png}")
command -v chromium >/dev/null || { echo "status-screenshot: chromium missing (apt-get install -y chromium)" >&2; exit 1; }
cargo build -q
sv=target/debug/streamvault
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
if [ $# -ge 3 ]; then
    root=$2 dest=$3
else
    "$sv" demo --dir "$work/demo" >/dev/null
    root=$work/demo/store dest=$work/demo/www/stable
fi
"$sv" --root "$root" serve "$dest" --mount "/maas/stable=$dest" --listen 127.0.0.1:0 2> "$work/serve.log" &
pid=$!
for _ in $(seq 100); do grep -q 'serving' "$work/serve.log" 2>/dev/null && break; sleep 0.05; done
base=$(sed -n 's/.* at \(http:[^ ]*\) .*/\1/p' "$work/serve.log")
[ -n "$base" ] || { echo "status-screenshot: serve did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run \
    --user-data-dir="$work/chromium-profile" --hide-scrollbars --window-size=1400,1500 \
    --screenshot="$out" "${base}-/status" >"$work/chromium.log" 2>&1 \
    || { cat "$work/chromium.log" >&2; exit 1; }
[ -s "$out" ] || { echo "status-screenshot: no PNG written" >&2; cat "$work/chromium.log" >&2; exit 1; }
echo "$out"
