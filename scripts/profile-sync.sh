#!/usr/bin/env bash
# Where a release `streamvault sync` spends its time (issue 13 item 4): one nginx on loopback
# serves a generated signed stream, `perf record` samples the sync (every thread, kernel stacks
# included, 2 kHz of CPU time) and traces its flush syscalls; every sample is put in one family by
# the first frame from the leaf up that names one (so a copy inside tcp_recvmsg is network, the
# same copy inside a file write is write), and the table shows each family's share of the CPU
# samples, its CPU seconds, and those seconds as a share of the wall time. syncfs/fsync/fdatasync
# are also timed from their enter/exit tracepoints (time blocked, which sampling does not see).
#   usage: [STREAMVAULT=BINARY] scripts/profile-sync.sh [--small N SIZE] [--large N SIZE] [--jobs J]
#          [--only small|large] [--keep]
# SV_LOOPFS=SIZE (e.g. 5G; needs root): profile on a fresh journalled ext4 image of that size under
# target/, as scripts/bench-sync.sh does (unmounted, detached and removed at the end).
# Defaults: 2,000 files of 256 KiB and 4 files of 256 MiB (the bench-sync streams), --jobs 4.
# Needs perf (apt-get install -y linux-perf), nginx, python3; ~2.5 GiB under target/ at peak.
set -euo pipefail
cd "$(dirname "$0")/.."
small_n=2000 small_size=262144 large_n=4 large_size=268435456 jobs=4 keep= only=
while [ $# -gt 0 ]; do
    case $1 in
        --small) small_n=$2 small_size=$3; shift 3 ;;
        --large) large_n=$2 large_size=$3; shift 3 ;;
        --jobs) jobs=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --only) only=$2; shift 2 ;;
        *) echo "usage: $0 [--small N SIZE] [--large N SIZE] [--jobs J] [--only small|large] [--keep]" >&2; exit 2 ;;
    esac
done
export PATH="$PATH:/usr/sbin"
command -v perf >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq linux-perf; }
command -v nginx >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx-light; }
# STREAMVAULT=path profiles another build (e.g. a copy of the binary before a change)
if [ -z "${STREAMVAULT:-}" ]; then
    cargo build --release -q --bin streamvault --example gen_stream
elif [ ! -x target/release/examples/gen_stream ]; then
    cargo build --release -q --example gen_stream
fi
sv=${STREAMVAULT:-$PWD/target/release/streamvault}
gen=$PWD/target/release/examples/gen_stream
mkdir -p target
fs= img= dev=
if [ -n "${SV_LOOPFS:-}" ]; then
    fs=$PWD/target/profile-sync-fs img=$PWD/target/profile-sync-fs.img
    umount "$fs" 2>/dev/null || true
    rm -f "$img"
    truncate -s "$SV_LOOPFS" "$img"
    mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$img"
    dev=$(losetup -f --show --direct-io=on "$img")
    mkdir -p "$fs"
    mount "$dev" "$fs"
    work=$(mktemp -d "$fs/profile-sync.XXXXXX")
else
    work=$(mktemp -d "$PWD/target/profile-sync.XXXXXX")
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "$keep" ] || rm -rf "$work"
    if [ -n "$fs" ]; then
        umount "$fs" 2>/dev/null || true
        [ -z "$dev" ] || losetup -d "$dev" 2>/dev/null || true
        rm -f "$img"
        rmdir "$fs" 2>/dev/null || true
    fi
}
trap cleanup EXIT
# The classifier: perf script's samples on stdin, the wall seconds as argv[1].
classify=$(cat <<'PY'
import collections, re, sys
wall = float(sys.argv[1])
FAMILIES = [
    ("flush (syncfs, fsync)", r"syncfs|sync_filesystem|sync_inodes|writeback|jbd2|blkdev_issue_flush|__x64_sys_fsync|__x64_sys_fdatasync|file_write_and_wait"),
    ("SQLite", r"sqlite3"),
    ("sha256", r"sha2::|sha256"),
    ("BLAKE3", r"blake3"),
    ("md5, sha512", r"md5|sha512"),
    ("network (kernel TCP, hyper, reqwest)", r"^(tcp_|__tcp_|inet_|__inet_|sock_|__sock_|__sys_recv|__sys_send|ip_|__ip_|skb_|__skb|net_rx|__netif|netif_|loopback|__dev_queue|sk_|release_sock|lock_sock)|hyper::|reqwest::|h2::|httparse|rustls|mio::|tokio::net|tokio::io::poll_evented"),
    ("write (file, page cache)", r"vfs_write|ksys_write|ksys_pwrite|__x64_sys_pwrite|ext4_file_write|generic_perform_write|ext4_da_write|iomap_|ext4_buffered_write"),
    ("read (file, page cache)", r"filemap_read|ext4_file_read|vfs_read|ksys_read|__x64_sys_pread"),
    ("inode allocation skipping recently freed inodes (ext4 without journal)", r"recently_deleted|find_inode_bit"),
    ("file ops (open, rename, chmod, mkdir, lock, unlink)", r"rename|chmod|openat|unlink|mkdir|statx|newfstat|flock|ftruncate|fallocate|do_sys_open|__x64_sys_close"),
    ("memcpy (user space)", r"__memmove|__memcpy|memcpy"),
    ("allocation, page faults", r"malloc|_int_free|cfree|__rust_alloc|__rust_dealloc|realloc|mmap|munmap|madvise|exc_page_fault|clear_page"),
    ("parse, verify (serde, sequoia)", r"sequoia|serde|streamvault::streams|streamvault::openpgp|nettle|num_bigint|rsa::"),
    ("runtime (tokio, futex, scheduler)", r"tokio::|futex|epoll|schedule|__switch_to|finish_task_switch|try_to_wake_up|std::thread|parking_lot|crossbeam"),
]
pats = [(n, re.compile(r)) for n, r in FAMILIES]
head = re.compile(r"^(.*?)\s+(\d+)\s+([\d.]+):\s+(\S+):")
counts = collections.Counter()
other = collections.Counter()
blocked = collections.defaultdict(float)
calls = collections.Counter()
entered = {}
spans = collections.defaultdict(list)
cpu_times = []
times = []
def finish(ev, tid, t, frames):
    if ev is None:
        return
    times.append(t)
    if ev.startswith("syscalls:sys_enter_"):
        entered[(tid, ev[19:])] = t
    elif ev.startswith("syscalls:sys_exit_"):
        name = ev[18:]
        t0 = entered.pop((tid, name), None)
        if t0 is not None:
            blocked[name] += t - t0
            calls[name] += 1
            spans[name].append((t0, t - t0))
    else:
        cpu_times.append((t, 1))
        for f in frames:
            for n, p in pats:
                if p.search(f):
                    counts[n] += 1
                    return
        counts["other"] += 1
        other[frames[0] if frames else "?"] += 1
ev = tid = t = None
frames = []
for line in sys.stdin:
    m = head.match(line)
    if m:
        finish(ev, tid, t, frames)
        tid, t, ev, frames = m.group(2), float(m.group(3)), m.group(4), []
    elif line.strip():
        parts = line.split(None, 1)
        if len(parts) == 2:
            frames.append(parts[1].strip())
finish(ev, tid, t, frames)
total = sum(counts.values()) or 1
period = 0.0005
print("| family | share of CPU samples | CPU s | CPU s / wall |")
print("|---|---|---|---|")
order = [n for n, _ in FAMILIES] + ["other"]
for n in sorted(order, key=lambda n: -counts[n]):
    if counts[n]:
        print(f"| {n} | {100*counts[n]/total:.1f} % | {counts[n]*period:.2f} | {100*counts[n]*period/wall:.0f} % |")
print(f"| total | 100 % | {total*period:.2f} | {100*total*period/wall:.0f} % (2 cores: up to 200 %) |")
print()
for name in ("syncfs", "fsync", "fdatasync"):
    print(f"blocked in {name}: {calls[name]} calls, {blocked[name]:.3f} s ({100*blocked[name]/wall:.0f} % of wall)")
# When the flushes ran and what the CPU did over time (perf's clock, from the first event): a
# wall that CPU does not explain shows as idle tenths, e.g. a tail spent waiting in the last flush.
if times:
    t0, t1 = min(times), max(times)
    f = lambda v: f"{v - t0:.2f}"
    print(f"events span {t1 - t0:.2f} s; syncfs at (start+blocked s): " + ", ".join(f"{f(a)}+{d:.3f}" for a, d in spans["syncfs"]))
    if spans["syncfs"]:
        a, d = spans["syncfs"][-1]
        print(f"last syncfs: starts {a - t0:.2f} s, blocks {d:.3f} s, returns {t1 - (a + d):.3f} s before the last event")
    busy = collections.Counter(int((t - t0) * 10) for t, c in cpu_times)
    print("CPU per 100 ms (% of one core): " + " ".join(str(round(100 * busy[i] * period / 0.1)) for i in range(int((t1 - t0) * 10) + 1)))
if other:
    print("other, top leaf symbols: " + ", ".join(f"{s} {c}" for s, c in other.most_common(6)))
PY
)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

profile() {
    local name=$1 n=$2 size=$3 dir=$work/$1
    mkdir -p "$dir/nginx/logs"
    "$gen" "$dir/upstream" 1 --key "$work/key.asc" --keyring "$work/keyring.gpg" \
        --bulk 1 1 "$n" "$size" 2>/dev/null
    chmod -R a+rX "$work"
    local np; np=$(port)
    cat > "$dir/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/logs/error.log;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    server { listen 127.0.0.1:$np; root $dir/upstream; }
}
NGINX
    nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" 2>/dev/null &
    local ngx=$!
    pids+=("$ngx")
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$np/streams/v1/index.sjson" && break; sleep 0.05; done
    find "$dir/upstream" -type f -exec cat {} + > /dev/null   # warm the page cache
    "$sv" --root "$dir/store" source add bench "http://127.0.0.1:$np/" --keyring "$work/keyring.gpg" > /dev/null
    local t0 t1
    # Start like every other run: nothing left to write back from before (see the note above).
    sync
    t0=$(date +%s.%N)
    perf record -q -o "$dir/perf.data" -g \
        -e cpu-clock/period=500000/ \
        -e syscalls:sys_enter_syncfs -e syscalls:sys_exit_syncfs \
        -e syscalls:sys_enter_fsync -e syscalls:sys_exit_fsync \
        -e syscalls:sys_enter_fdatasync -e syscalls:sys_exit_fdatasync \
        -- "$sv" --root "$dir/store" sync bench -q --jobs "$jobs" 2> "$dir/perf.err" \
        || { cat "$dir/perf.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    local bytes; bytes=$(du -sb "$dir/upstream" | cut -f1)
    echo
    echo "## $name: $n files of $size bytes ($(echo "$bytes / 1048576" | bc) MiB), --jobs $jobs, wall $(printf %.2f "$(echo "$t1 - $t0" | bc -l)") s (under perf)"
    echo
    perf script -i "$dir/perf.data" -F comm,tid,time,event,ip,sym 2>/dev/null \
        | python3 -c "$classify" "$(echo "$t1 - $t0" | bc -l)"
    kill "$ngx" 2>/dev/null || true
    [ -n "$keep" ] || rm -rf "$dir/store" "$dir/upstream"
}

echo "# streamvault sync profile ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
# On ext4 without a journal every inode freed less than 60 s ago (360 s while its inode table
# block is dirty) is skipped, one buffer lookup each, by every inode allocation in its block group
# (fs/ext4/ialloc.c recently_deleted()): a run right after another run's files were deleted pays
# for that deletion. The family "inode allocation skipping recently freed inodes" shows it.
if dmesg 2>/dev/null | grep -q "EXT4-fs ($(findmnt -n -o SOURCE -T "$work" | sed 's|/dev/||')).*without journal"; then
    echo "(the filesystem under $work is ext4 without a journal: recently freed inodes slow file creation)"
fi
[ "$only" = large ] || profile small "$small_n" "$small_size"
[ "$only" = small ] || profile large "$large_n" "$large_size"
