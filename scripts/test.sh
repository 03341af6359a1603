#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine or a warm one:
# installs and starts what the tests need (PostgreSQL, MariaDB, Garage S3, sqlite3, age,
# zstd), checks formatting and lints, then runs every test against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-nextest runs the tests; install it once when missing.
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# Start (or reuse) the services on loopback and load their settings.
env_file=$(scripts/services.sh up | tail -n 1)
# shellcheck disable=SC1090
source "$env_file"
# Formatting and lints are part of the suite.
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The Kubernetes packaging, offline: manifests and chart against the Kubernetes schemas and
# the CRDs, values schema, chart = manifests/install; the cluster e2e scripts must parse.
scripts/validate-manifests.sh
for f in e2e/cluster/*.sh; do bash -n "$f"; done
# Every test, against the real services; a failure fails the suite.
cargo nextest run --workspace --locked --no-fail-fast
