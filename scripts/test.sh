#!/usr/bin/env bash
# Runs every test of streamvault: unit tests, integration tests (real HTTP on 127.0.0.1, real
# SQLite, real files), and the gpgv cross-checks. Installs what the tests need when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v gpgv >/dev/null 2>&1 || need_apt+=(gpgv)
command -v gpg >/dev/null 2>&1 || need_apt+=(gnupg)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${need_apt[*]} for the signature cross-checks" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "warning: ${need_apt[*]} missing; the gpgv cross-check tests will fail" >&2
    fi
fi

# The reference python sstream-mirror for the side-by-side test (tests/it/mirror.rs).
venv=target/compat-venv
if [ ! -x "$venv/bin/sstream-mirror" ]; then
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

cargo test --all-targets "$@"
