#!/bin/sh
# Installs what libguard needs on a Debian machine, only when something is missing.
#   install-deps.sh build   compilers' libraries: libunwind, jemalloc, cJSON, cmocka, pkg-config
#   install-deps.sh test    plus the real programs the integration tests run under the library
set -eu
build_pkgs="gcc make pkg-config libunwind-dev libjemalloc-dev libcjson-dev libcmocka-dev libjemalloc2 zlib1g-dev"
test_pkgs="python3 perl sqlite3 git redis-server redis-tools nginx-light wrk nodejs procps iproute2 g++ golang-go faketime heaptrack librsvg2-bin binutils"
case "${1:-build}" in
  build) want="$build_pkgs" ;;
  test) want="$build_pkgs $test_pkgs" ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  # A program may already be there from another source (nodejs from nodesource, python3 from pyenv).
  case "$p" in
    python3|nodejs|perl|git) command -v "${p%js}" >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root; install these packages:$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
