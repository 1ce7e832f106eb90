#!/bin/bash
# The limiter decision against a mutex-protected token bucket, 1 and 2 threads, in one run.
# Usage: bench/limiter.sh [REPEATS] [OPS_PER_THREAD]   (bench/run.sh limiter runs it)
set -eu
cd "$(dirname "$0")/.."
make -s build/libguard.so >/dev/null
mkdir -p build/bench
cc -std=gnu11 -O2 -g -Wall -Wextra -I. bench/limiter.c -o build/bench/limiter \
	-Lbuild -l:libguard.so -Wl,-rpath,"$PWD/build" -ldl -lpthread
# Not preloaded: libguard's runtime stays off; guard_limiter_* is a plain library object.
build/bench/limiter "${1:-7}" "${2:-2000000}"
