#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (installed with `cargo install --locked cargo-deb` if
# missing) and checks it: extracts it into a temporary directory, runs `streamvault --version`
# from there, follows the sstream-mirror link, renders the man page, parses the completions and
# lints the systemd units with `systemd-analyze verify`. Not part of .ci/run (a release build).
#   usage: scripts/package-deb.sh          -> target/debian/streamvault_<version>-1_<arch>.deb
# What goes where: [package.metadata.deb] in Cargo.toml; this script generates the man pages,
# completions, the sstream-mirror link and the maintainer scripts into target/deb-assets/.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v dpkg-deb >/dev/null || { echo "package-deb: dpkg-deb is required" >&2; exit 1; }
if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb (cargo install --locked cargo-deb)" >&2
    cargo install --locked cargo-deb
fi

echo "== release build" >&2
cargo build --release --locked
bin=target/release/streamvault

echo "== assets" >&2
a=target/deb-assets
rm -rf "$a"
mkdir -p "$a/man" "$a/completions" "$a/debian"
"$bin" man --out-dir "$a/man" >/dev/null
gzip -9n "$a"/man/*.1
"$bin" completions bash > "$a/completions/streamvault"
"$bin" completions zsh > "$a/completions/_streamvault"
"$bin" completions fish > "$a/completions/streamvault.fish"
# relative, as Debian policy wants for a link within /usr: /usr/lib/streamvault/bin -> /usr/bin
ln -sfn ../../../bin/streamvault "$a/sstream-mirror"

cat > "$a/debian/postinst" <<'SH'
#!/bin/sh
# streamvault: the system user the units run as, and its store (0711: the web server reaches
# published trees through DEST, but cannot list the store).
set -e
if [ "$1" = configure ]; then
    if ! getent passwd streamvault >/dev/null; then
        adduser --system --group --home /var/lib/streamvault --no-create-home \
            --shell /usr/sbin/nologin --gecos "streamvault SimpleStreams mirror" streamvault
    fi
    if [ ! -d /var/lib/streamvault ]; then
        install -d -o streamvault -g streamvault -m 0711 /var/lib/streamvault
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
fi
exit 0
SH
cat > "$a/debian/prerm" <<'SH'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl disable --now streamvault-sync.timer streamvault-sync.service \
        streamvault-serve.service >/dev/null 2>&1 || true
fi
exit 0
SH
cat > "$a/debian/postrm" <<'SH'
#!/bin/sh
# The store (/var/lib/streamvault: mirrors, catalogue, keys) and the user stay, even on purge:
# delete them by hand if you mean it.
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
SH
chmod 755 "$a"/debian/*

echo "== cargo deb" >&2
# stripped: the release profile keeps line tables (96 MB binary); Debian ships stripped binaries
cargo deb --no-build --strip
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=$(ls -t target/debian/streamvault_"$version"-*.deb | head -1)

echo "== checks of $deb" >&2
fail=0
check() { if "$@"; then echo "ok: $*"; else echo "FAILED: $*"; fail=1; fi; }
x=$(mktemp -d)
trap 'rm -rf "$x"' EXIT
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\|Installed-Size\):/  \1:/p'
dpkg-deb --contents "$deb" | awk '{print "  " $1, $6, $7, $8}'
dpkg-deb -x "$deb" "$x"
dpkg-deb -e "$deb" "$x/DEBIAN"
echo "  $("$x/usr/bin/streamvault" --version)"
check test "$("$x/usr/bin/streamvault" --version)" = "streamvault $version"
check test "$(readlink -f "$x/usr/lib/streamvault/bin/sstream-mirror")" = "$(readlink -f "$x/usr/bin/streamvault")"
# the drop-in answers to its name: no arguments is a usage error, as with python's tool
"$x/usr/lib/streamvault/bin/sstream-mirror" >/dev/null 2>"$x/sstream-mirror.err" || true
check grep -qi "usage" "$x/sstream-mirror.err"
check test ! -e "$x/usr/bin/sstream-mirror"
for s in postinst prerm postrm; do check sh -n "$x/DEBIAN/$s"; done
check bash -n "$x/usr/share/bash-completion/completions/streamvault"
if command -v zsh >/dev/null; then check zsh -n "$x/usr/share/zsh/vendor-completions/_streamvault"; fi
if command -v fish >/dev/null; then check fish --no-execute "$x/usr/share/fish/vendor_completions.d/streamvault.fish"; fi
if command -v man >/dev/null; then
    check sh -c "MANWIDTH=80 man -l '$x/usr/share/man/man1/streamvault.1.gz' 2>&1 >/dev/null | (! grep .)"
fi
units=("$x"/lib/systemd/system/*)
check test -e "$x/lib/systemd/system/streamvault-sync.service" -a -e "$x/lib/systemd/system/streamvault-sync.timer"
if command -v systemd-analyze >/dev/null; then
    # verify checks that ExecStart is executable and Documentation=man: pages exist: point both
    # at the extracted package
    mkdir -p "$x/units"
    for u in "${units[@]}"; do
        sed "s#/usr/bin/streamvault#$x/usr/bin/streamvault#g" "$u" > "$x/units/$(basename "$u")"
    done
    check sh -c "MANPATH='$x/usr/share/man' systemd-analyze verify '$x'/units/* 2>&1 | (! grep .)"
else
    echo "skipped: systemd-analyze is not installed; units not linted"
fi
if command -v lintian >/dev/null; then
    lintian --no-tag-display-limit "$deb" || true
fi
[ $fail = 0 ] && echo "package-deb: $deb OK" || echo "package-deb: $deb has problems" >&2
exit $fail
