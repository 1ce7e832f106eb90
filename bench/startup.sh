#!/bin/bash
# Process start-up cost of the library against plain, jemalloc alone and the library disabled.
set -e
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -o "$out/startup" bench/startup.c
je=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2)
"$out/startup" "$PWD/build/libguard.so" "$je" "$out" 9 40 -- /bin/true
echo "  (the default policy writes one JSON report per process at exit)"
