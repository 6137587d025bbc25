#!/usr/bin/env bash
# Side-by-side harness: the reference python `sstream-mirror` (python-simplestreams
# 0.1.0.post59) and `streamvault mirror` run the same command lines against the same loopback
# trees, and each scenario prints one line: same / differs (how) / intended difference (which).
# Compared: exit status, the dry-run pass output (`-v` to_add/to_remove lines, `+`/`-` lines,
# `N Mb change`), and the output tree (file list + bytes; the python tool's `.data/` excluded).
#
#   usage: scripts/compat.sh [--keep-work]
# Environment: SSTREAM_MIRROR (the reference tool; default: a venv under target/ created and
# filled with pip on first use), STREAMVAULT (our binary; default: target/debug/streamvault,
# built if missing). Needs gpg/gpgv (the python tool calls gpgv). Exit status: 0 when every
# scenario is "same" or an intended difference, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
keep_work=0; [ "${1:-}" = "--keep-work" ] && keep_work=1

venv=$top/target/compat-venv
ref=${SSTREAM_MIRROR:-$venv/bin/sstream-mirror}
if [ ! -x "$ref" ]; then
    python3 -m venv "$venv" >/dev/null && "$venv/bin/pip" install -q python-simplestreams==0.1.0.post59 >/dev/null \
        || { echo "compat: cannot install python-simplestreams" >&2; exit 1; }
fi
sv=${STREAMVAULT:-$top/target/debug/streamvault}
[ -x "$sv" ] || cargo build -q || exit 1
gen=$top/target/debug/examples/gen_stream
[ -x "$gen" ] || cargo build -q --example gen_stream || exit 1
command -v gpgv >/dev/null || { echo "compat: gpgv is required by the reference tool" >&2; exit 1; }

W=$(mktemp -d /tmp/sv-compat.XXXXXX)
pids=()
cleanup() {
    [ -n "${COMPAT_DEBUG:-}" ] && keep_work=1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    [ $keep_work = 1 ] && echo "work dir kept: $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
export HOME=$W/home GNUPGHOME=$W/gnupg
mkdir -p "$HOME" "$GNUPGHOME" && chmod 700 "$GNUPGHOME"

# --- upstream trees --------------------------------------------------------------------------
www=$W/www
mkdir -p "$www"
"$gen" "$www/gen1" 1 --key "$W/key.asc" --keyring "$W/keyring.gpg" 2>/dev/null
"$gen" "$www/gen2" 2 --key "$W/key.asc" 2>/dev/null
ln -sfn gen1 "$www/stable"
# a primary that has only the metadata (items must come from --mirror)
mkdir -p "$www/metaonly/streams" && cp -r "$www/gen1/streams/v1" "$www/metaonly/streams/"
# a tampered copy: one digit of a version name changed inside the signed v3 products file
cp -r "$www/gen1" "$www/tampered"
sed -i '0,/20240301/s//20240302/' "$www/tampered/streams/v1/com.example.maas:stable:v3:download.sjson"
fx=$top/../shared/fixtures/real
ln -sfn "$fx/cloud-images-released-2016" "$www/cloud2016"
ln -sfn "$fx/maas-stable-2025-trimmed" "$www/maas2025"
other_key=$W/other.gpg
"$gen" "$W/otherstream" 1 --key "$W/other.asc" --keyring "$other_key" 2>/dev/null
ubuntu_key=$fx/keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg

"$sv" serve "$www" --listen 127.0.0.1:0 2> "$W/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q 'serving' "$W/serve.log" 2>/dev/null && break; sleep 0.05; done
base=$(sed -n 's/.* at \(http:[^ ]*\) .*/\1/p' "$W/serve.log")
[ -n "$base" ] || { echo "compat: server did not start" >&2; cat "$W/serve.log" >&2; exit 1; }
URL=${base}stable/
K="--keyring=$W/keyring.gpg"

# --- running both tools ----------------------------------------------------------------------
# run TOOL NAME ARGS… : runs into $W/<tool>/<NAME> (output dir) with the store for streamvault at
# $W/sv-root/<NAME>; stderr to $W/<tool>/<NAME>.err (appended), rc to $W/<tool>/<NAME>.rc
run() {
    local tool=$1 name=$2; shift 2
    local out=$W/$tool/$name
    mkdir -p "$W/$tool"
    local args=()
    for a in "$@"; do args+=("${a//@OUT@/$out}"); done
    if [ "$tool" = py ]; then
        "$ref" "${args[@]}" 2>> "$out.err"
    else
        STREAMVAULT_ROOT=$W/sv-root/$name "$sv" mirror "${args[@]}" 2>> "$out.err"
        local rc=$?
        # By default the files of versions a run removed stay reachable for the gc grace period
        # (24 h: a MAAS sync in flight never gets a 404); collect them now to compare trees.
        [ "${SV_NO_GC:-}" = 1 ] || [ ! -e "$W/sv-root/$name/catalog.db" ] \
            || "$sv" --root "$W/sv-root/$name" gc --grace 0 >/dev/null 2>&1
        echo $rc > "$out.rc"
        return
    fi
    echo $? > "$out.rc"
}
both() { local name=$1; shift; run py "$name" "$@"; run sv "$name" "$@"; }

# the dry-run pass output: -v to_add lines (first pass only), +/- lines, "Mb change"
plan_of() {
    grep -E '(: to_add=\[|^[+-] |Mb change$)' "$1" | awk '!seen[$0]++'
}
tree_of() {
    local d=$1
    [ -e "$d" ] || { echo "(no output directory)"; return; }
    (cd -P "$d" && find -L . -type f ! -path './.data/*' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

fails=0
report() { # name verdict
    printf '%-34s %s\n' "$1" "$2"
    case $2 in same*|"intended difference"*) ;; *) fails=$((fails + 1));; esac
}

# compare NAME [tree] [intended-difference-text]
compare() {
    local name=$1 what=${2:-plan} intended=${3:-}
    local py=$W/py/$name sv=$W/sv/$name how=()
    [ "$(cat "$py.rc")" = "$(cat "$sv.rc")" ] || how+=("exit $(cat "$py.rc") vs $(cat "$sv.rc")")
    if ! diff <(plan_of "$py.err") <(plan_of "$sv.err") > "$W/$name.plan.diff"; then
        how+=("plan output ($(grep -c '^[<>]' "$W/$name.plan.diff") lines, see $name.plan.diff)")
    fi
    if [ "$what" = tree ] && ! diff <(tree_of "$py") <(tree_of "$sv") > "$W/$name.tree.diff"; then
        how+=("tree ($(grep -c '^[<>]' "$W/$name.tree.diff") lines, see $name.tree.diff)")
    fi
    if [ ${#how[@]} -eq 0 ]; then
        report "$name" "same"
    elif [ -n "$intended" ]; then
        report "$name" "intended difference: $intended (${how[*]})"
    else
        report "$name" "differs: ${how[*]}"
        [ $keep_work = 1 ] || { cat "$W/$name.plan.diff" "$W/$name.tree.diff" 2>/dev/null | head -20 | sed 's/^/    /'; }
    fi
}

# --- scenarios -------------------------------------------------------------------------------
echo "reference: $("$ref" --help >/dev/null 2>&1 && echo "$ref")"
echo "streamvault: $sv"

both dry-run-full "$K" --dry-run -v "$URL" @OUT@
compare dry-run-full plan

both full "$K" -v "$URL" @OUT@
compare full tree

both docs-images "$K" "$URL" @OUT@ 'arch=amd64' 'release~(jammy|noble)' --max=1 --progress
compare docs-images tree
# the MAAS docs' second line into the same directory: images + bootloaders
both docs-images "$K" "$URL" @OUT@ 'os~(grub*|pxelinux)' --max=1 --progress
compare docs-images tree

both rerun "$K" "$URL" @OUT@
both rerun "$K" -v "$URL" @OUT@
compare rerun tree

for f in 'arch!=arm64' 'release~jam' 'release=jam' 'os!~^(grub|pxe)' 'item_name=squashfs' 'release!~.'; do
    n="filter-$(echo "$f" | tr -c 'a-zA-Z0-9' '_')"
    both "$n" "$K" -v --dry-run "$URL" @OUT@ "$f"
    compare "$n" plan
done

# a new generation upstream: +20240401, -20240101 (jammy/amd64)
both newgen "$K" "$URL" @OUT@
ln -sfn gen2 "$www/stable"
both newgen "$K" -v "$URL" @OUT@
compare newgen tree
ln -sfn gen1 "$www/stable"

# the same without gc: the removed version's files are still served during the grace period
both newgen-grace "$K" "$URL" @OUT@
ln -sfn gen2 "$www/stable"
SV_NO_GC=1 both newgen-grace "$K" -v "$URL" @OUT@
compare newgen-grace tree "removed versions stay reachable until gc after the grace period (default 24 h)"
ln -sfn gen1 "$www/stable"

# --max/--keep variants against a full gen1 target, source at gen2 (spec §2.4 table)
for v in '--max=4 --keep' '--max=3 --keep' '--max=4' '--max=2 --keep'; do
    n="maxkeep-$(echo "$v" | tr -c 'a-z0-9' '_')"
    both "$n" "$K" "$URL" @OUT@ 'arch=amd64' 'release=jammy'
    ln -sfn gen2 "$www/stable"
    # shellcheck disable=SC2086
    both "$n" "$K" -v $v "$URL" @OUT@ 'arch=amd64' 'release=jammy'
    ln -sfn gen1 "$www/stable"
    compare "$n" tree
done

# a directory the python tool filled (gen1, full), taken over by streamvault for the next run
# (gen2, --max=4 --keep): its files are imported by content and its .data/ state is the target
run py adopt-python "$K" "$URL" @OUT@ 'arch=amd64' 'release=jammy'
mkdir -p "$W/sv" && cp -a "$W/py/adopt-python" "$W/sv/adopt-python" && : > "$W/sv/adopt-python.err"
: > "$W/py/adopt-python.err"
ln -sfn gen2 "$www/stable"
both adopt-python "$K" -v --max=4 --keep "$URL" @OUT@ 'arch=amd64' 'release=jammy'
ln -sfn gen1 "$www/stable"
compare adopt-python tree

# an older generation (validly signed) replayed after a newer one: python goes back to it;
# streamvault refuses with one line naming both `updated` dates unless --allow-downgrade
ln -sfn gen2 "$www/stable"
both downgrade "$K" "$URL" @OUT@ 'release=noble'
ln -sfn gen1 "$www/stable"
both downgrade "$K" "$URL" @OUT@ 'release=noble'
compare downgrade tree "older metadata than the last run is refused unless --allow-downgrade (python goes back)"
run sv downgrade-allowed "$K" "$URL" @OUT@ 'release=noble'
ln -sfn gen2 "$www/stable"
run sv downgrade-allowed "$K" "$URL" @OUT@ 'release=noble'
ln -sfn gen1 "$www/stable"
run sv downgrade-allowed "$K" --allow-downgrade "$URL" @OUT@ 'release=noble'
if [ "$(cat "$W/sv/downgrade-allowed.rc")" = 0 ] \
    && diff -q <(tree_of "$W/sv/downgrade-allowed") <(tree_of "$W/py/downgrade") >/dev/null; then
    report downgrade-allowed "same (streamvault --allow-downgrade goes back like python)"
else
    report downgrade-allowed "differs: --allow-downgrade did not go back to the older generation"
fi

both mirror-fallback "$K" --mirror "${base}gen1/" "${base}metaonly/" @OUT@ 'release=noble'
compare mirror-fallback tree

# argparse reads the positionals in one go: a filter after an option is "unrecognized"
both filter-after-option "$K" --dry-run "$URL" @OUT@ --max=1 'release=noble'
compare filter-after-option plan "options and filters may come in any order (python: usage error, exit 2)"

both path-products "$K" --path 'streams/v1/com.example.maas:stable:v3:download.sjson' "$URL" @OUT@ 'release=noble'
compare path-products tree

both url-split "${base}stable/streams/v1/index.json" @OUT@ 'os=ubuntu' --max=1
compare url-split tree

both no-verify -U "$URL" @OUT@ 'release=noble'
compare no-verify tree

both wrong-keyring "--keyring=$other_key" "$URL" @OUT@
compare wrong-keyring tree

both tampered "$K" "${base}tampered/" @OUT@
compare tampered tree

both keep-without-max "$K" --keep "$URL" @OUT@
compare keep-without-max tree "fails before any network access (python: TypeError after fetching)"

both bad-filter "$K" "$URL" @OUT@ 'arch'
compare bad-filter tree

both no-item-download "$K" --no-item-download "$URL" @OUT@ 'release=noble'
both no-item-download "$K" "$URL" @OUT@ 'release=noble'
compare no-item-download tree "a later run fetches what --no-item-download skipped (python never does)"

both real-2016 "--keyring=$ubuntu_key" --dry-run -v --path 'streams/v1/com.ubuntu.cloud:released:download.sjson' \
    "${base}cloud2016/" @OUT@ 'release~(trusty|xenial)' 'arch=amd64' --max=2
compare real-2016 plan

both maas-2025 --dry-run -v "${base}maas2025/streams/v1/index.json" @OUT@ 'arch=amd64' --max=1
compare maas-2025 plan

echo
if [ $fails -eq 0 ]; then
    echo "compat: every scenario is the same or an intended difference"
else
    echo "compat: $fails scenario(s) differ"
fi
[ $fails -eq 0 ]
