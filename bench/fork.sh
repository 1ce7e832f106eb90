#!/bin/bash
# fork + exit of a child (bench/fork.c), single-threaded and threaded parent: plain, jemalloc
# alone, libguard disabled, libguard with the default policy (the child writes its own exit
# report). Interleaved rounds; medians of the per-round medians, as ratios to jemalloc alone.
set -u
cd "$(dirname "$0")/.." || exit 2
B=build/bench; mkdir -p "$B"
SO=${LG_SO:-$PWD/build/libguard.so}
JE=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
[ -f "$SO" ] || { echo "build/libguard.so is missing: run make" >&2; exit 2; }
cc -std=gnu11 -O2 -o "$B/fork" bench/fork.c -lpthread || exit 2
R=$(mktemp -d /tmp/lg-bench-fork-XXXXXX); trap 'rm -rf "$R"' EXIT
N=${1:-200}

run() {
  case $1 in
    plain)    shift; "$B/fork" "$N" "$@" ;;
    jemalloc) shift; LD_PRELOAD=$JE "$B/fork" "$N" "$@" ;;
    disabled) shift; LD_PRELOAD=$SO GUARD_DISABLE=1 "$B/fork" "$N" "$@" ;;
    default)  shift; LD_PRELOAD=$SO GUARD_REPORT_DIR=$R "$B/fork" "$N" "$@"; rm -f "$R"/* ;;
  esac
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for mode in "" "--threaded"; do
  declare -A res=()
  for i in 1 2 3 4 5; do
    for v in plain jemalloc disabled default; do res[$v]+="$(run $v $mode) "; done
  done
  je=$(echo ${res[jemalloc]} | tr ' ' '\n' | median)
  printf 'fork+exit, %s parent:' "$([ -n "$mode" ] && echo threaded || echo single-threaded)"
  for v in plain jemalloc disabled default; do
    m=$(echo ${res[$v]} | tr ' ' '\n' | median)
    printf '  %s %s us (%.2fx jemalloc)' "$v" "$m" "$(echo "$m / $je" | bc -l)"
  done
  echo
done
