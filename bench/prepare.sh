# Sourced first by bench/run.sh and bench/compare.sh, from the repository root they cd to:
# installs the Python reference's packages (from PyPI, so before the network goes), then runs
# the calling script again, with its arguments, inside scripts/netns.sh unless it is already
# in a loopback-only namespace. The script is named by its place in bench/, because "$0" may
# be relative to a folder the caller has left.
self="$PWD/bench/$(basename "$0")"
if [ ! -f "$self" ] || [ "$self" = "$PWD/bench/prepare.sh" ]; then
  echo "bench/prepare.sh is sourced by a script in bench/, from the repository root" >&2
  exit 2
fi
bench/reference/setup.sh
if [ "$(ip -o link show | cut -d: -f2 | tr -d " ")" != "lo" ]; then
  exec scripts/netns.sh "$self" "$@"
fi
