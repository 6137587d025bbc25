#!/usr/bin/env bash
# Runs every check of streamvault (what .ci/run runs): `cargo fmt --check`, `cargo clippy
# --all-targets -D warnings`, then every cargo test target (unit tests, integration tests against
# real HTTP on 127.0.0.1, real SQLite, real files; the gpgv and python sstream-mirror cross-checks).
# Installs what the tests need when missing. The last line is always `N passed, M failed`, summed
# over every test target; the exit status is non-zero if anything failed.
#   usage: scripts/test.sh [ARGS FOR cargo test…]      e.g. scripts/test.sh mirror::
set -uo pipefail
cd "$(dirname "$0")/.."

# --- packages the tests need ------------------------------------------------------------------
# One line per package: `need COMMAND DEBIAN-PACKAGE` (installed when COMMAND is missing).
# Add yours in your own block; one `apt-get update` and one `apt-get install` run for them all.
missing_apt=()
need() { command -v "$1" >/dev/null 2>&1 || missing_apt+=("$2"); }

# signature cross-checks (tests/it/real.rs, src/openpgp)
need gpgv gpgv
need gpg gnupg
# operator's kit (tests/it/kit.rs): unit files, completion scripts, man page
need systemd-analyze systemd
need zsh zsh
need fish fish
need man man-db
# serve (tests/it/serve*.rs): certificates, real TLS clients (curl, the LXD client), prlimit
need openssl openssl
need curl curl
need lxc lxd-client
need prlimit util-linux
# web servers (tests/it/webserver.rs): published trees readable by www-data through Apache and
# nginx; the test runs its own instances on random ports and skips when not root
need /usr/sbin/apache2 apache2
need /usr/sbin/nginx nginx-light
# peak RSS of a whole sync of a large document (tests/it/amplification.rs)
need /usr/bin/time time

# STREAMVAULT_TEST_NO_INSTALL=1: install nothing (tests/it/kit.rs runs this script with a fake cargo)
no_install=${STREAMVAULT_TEST_NO_INSTALL:-}
if [ ${#missing_apt[@]} -gt 0 ] && [ -z "$no_install" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing_apt[*]} for the tests" >&2
        export DEBIAN_FRONTEND=noninteractive
        if ! { apt-get update -qq && apt-get install -y -qq "${missing_apt[@]}" >/dev/null; }; then
            echo "warning: could not install ${missing_apt[*]}; the tests that need them will fail or skip" >&2
        fi
    else
        echo "warning: ${missing_apt[*]} missing (not root or no apt-get); the tests that need them will fail or skip" >&2
    fi
fi

# The reference python sstream-mirror for the side-by-side test (tests/it/mirror.rs).
venv=target/compat-venv
if [ ! -x "$venv/bin/sstream-mirror" ] && [ -z "$no_install" ]; then
    mkdir -p target
    if python3 -m venv "$venv" >/dev/null 2>&1 \
        && "$venv/bin/pip" install -q python-simplestreams==0.1.0.post59 >/dev/null 2>&1; then
        echo "installed python-simplestreams 0.1.0.post59 into $venv" >&2
    else
        echo "warning: could not install python-simplestreams: the side-by-side test will be skipped" >&2
        rm -rf "$venv"
    fi
fi

# s3 publish tests (tests/it/s3.rs): a real moto_server (PyPI moto[server]) as the bucket.
s3venv=target/s3-venv
if [ ! -x "$s3venv/bin/moto_server" ]; then
    mkdir -p target
    if python3 -m venv "$s3venv" >/dev/null 2>&1 \
        && "$s3venv/bin/pip" install -q 'moto[server]' >/dev/null 2>&1; then
        echo "installed moto[server] into $s3venv" >&2
    else
        echo "warning: could not install moto[server]: the S3 publish tests will be skipped" >&2
        rm -rf "$s3venv"
    fi
fi

# --- checks -----------------------------------------------------------------------------------
status=0
if ! cargo fmt --check; then
    echo "cargo fmt --check: the code is not formatted (run cargo fmt)" >&2
    status=1
fi
if ! cargo clippy --all-targets -q -- -D warnings; then
    echo "cargo clippy: warnings or errors" >&2
    status=1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-fail-fast: every target runs and is counted, even after one fails
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
cargo_status=${PIPESTATUS[0]}

# `test result: ok. 12 passed; 0 failed; 0 ignored; …` once per test target.
read -r passed failed < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed;?$/) p += $i
            if ($(i + 1) ~ /^failed;?$/) f += $i
        }
    } END { print p + 0, f + 0 }' "$log")
if [ "$cargo_status" -ne 0 ]; then
    status=1
    [ "$failed" -gt 0 ] || echo "cargo test exited with status $cargo_status (build failure or a crashed test binary)" >&2
fi
[ "$failed" -eq 0 ] || status=1
echo "$passed passed, $failed failed"
exit "$status"
