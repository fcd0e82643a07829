#!/usr/bin/env bash
# The test command: sets everything up (scripts/setup.sh), then runs the whole test suite
# inside a private loopback-only network namespace (DDS tests start real peers).
# Extra arguments go to the test binaries, e.g. scripts/test.sh graph
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --locked --no-run
scripts/netns.sh cargo test --release --locked --offline -- "$@"
