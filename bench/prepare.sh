# Sourced first by bench/run.sh and bench/compare.sh: installs the Python reference's packages
# (from PyPI, so before the network goes), then runs the calling script again, with its
# arguments, inside scripts/netns.sh unless it is already in a loopback-only namespace.
bench/reference/setup.sh
if [ "$(ip -o link show | cut -d: -f2 | tr -d " ")" != "lo" ]; then
  exec scripts/netns.sh "$0" "$@"
fi
