#!/usr/bin/env bash
# The whole test suite, as README's second command. Installs what the tests need beyond the Rust
# toolchain (PostgreSQL for verify, promtool for the alert rules; see .ci/install-deps), then runs
# every test. Lab tests need root; without it they print `PRIVILEGED TEST SKIPPED` (and fail when
# IDLERESET_REQUIRE_PRIVILEGED=1, as in CI). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" = 0 ]; then
  bash .ci/install-deps
else
  echo "test.sh: not root: skipping .ci/install-deps; lab tests will be skipped" >&2
fi
exec cargo test --workspace --no-fail-fast "$@"
