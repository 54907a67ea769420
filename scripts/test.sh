#!/usr/bin/env bash
# Runs every test: installs what is missing, starts a throwaway PostgreSQL 15
# and an S3 server on loopback, runs cargo's tests against them, stops them.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test roundtrip).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed.sh
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
testbed_log "building"
cargo build --all-targets --quiet
ensure_kubernetes_validate
ensure_aiosmtpd
ensure_chromium
ensure_tini
LIFEBOAT_HELM=$(ensure_helm)
export LIFEBOAT_HELM
ensure_python_decoder
# Servers of other majors for tests/pg_majors.rs: 17 always, so that the
# choice of programs by major runs in every test run; the whole matrix with
# LIFEBOAT_PG_MAJORS="13 15 17" (README, "Run the tests").
export LIFEBOAT_PG_MAJORS=${LIFEBOAT_PG_MAJORS:-15 17}
# Tests that need an external tool fail instead of skipping when it is missing.
export LIFEBOAT_REQUIRE_TOOLS=1
testbed_up
if [ $# -eq 0 ]; then
  cargo test --all-targets
  # The same scenario on a real cluster; says SKIPPED when none is reachable.
  e2e/run.sh
else
  cargo test "$@"
fi
