#!/usr/bin/env bash
# Runs a command inside a private network namespace whose only interface is loopback, with
# multicast routed to it, so DDS discovery works between local processes and no DDS packet
# can leave the machine. Usage: scripts/netns.sh COMMAND [ARGS...]
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
# Root can make a network namespace directly; other users get one inside a user namespace.
if [ "$(id -u)" -eq 0 ]; then UNSHARE=(unshare --net); else UNSHARE=(unshare --user --map-root-user --net); fi
exec "${UNSHARE[@]}" -- bash -c '
  set -e
  ip link set lo up
  ip link set lo multicast on
  ip route add 224.0.0.0/4 dev lo
  exec "$@"' netns "$@"
