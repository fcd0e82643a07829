#!/usr/bin/env bash
# The main job: sets everything up (scripts/setup.sh), trains the coin classifier on the shared
# coins-mobile photos if models/ has none yet, then runs the live ROS 2 demo (player, sorter
# node, actuator) on the shared bag inside a private loopback-only network namespace.
# Extra arguments go to `coin_sorter demo` (see --help), e.g. scripts/demo.sh --rate 2
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec scripts/netns.sh target/release/coin_sorter demo "$@"
