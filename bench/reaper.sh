#!/bin/bash
# The idle reaper's cost per tracked connection per scan (issue 5): bench/reaper.c times
# lg_net_scan() (what the guardian runs every net period) in one process holding N accepted
# loopback connections, N = 100, 1000, 4000, under net.idle_timeout_ms 600000 (nothing reaped).
# Baselines measured in the same run: the scan with no connection ("base"), the scan over the same
# slots once the connections are closed ("empty": the scan walks up to the highest fd ever seen),
# and a bare getsockopt(TCP_INFO) loop over the same N sockets (what the "old" path must do).
# "fd bound" is the highest fd the table has seen before -> with the connections: the scan walks
# every slot up to it. (An fd the process inherited, e.g. a runner's pipe at 251, sets it too.)
# 5 repetitions (one process per N per repetition, interleaved), median.
# Usage: bench/reaper.sh [REPEATS]
cd "$(dirname "$0")/.." || exit 2
make -s build/libguard.so >/dev/null || exit 2   # brings the core objects up to date
mkdir -p build/bench
W=$(mktemp -d /tmp/lg-bench-reaper-XXXXXX); trap 'rm -rf "$W"' EXIT
cc -std=gnu11 -D_GNU_SOURCE -O2 -g -I. $(pkg-config --cflags libunwind jemalloc libcjson 2>/dev/null) \
	-Wall -Wextra bench/reaper.c build/obj/libguard/*.o build/obj/libguard/report/*.o \
	build/obj/policy/*.o -o build/bench/reaper \
	-Wl,--no-as-needed -ljemalloc -Wl,--as-needed -lunwind -lcjson -lz -ldl -lpthread -lm || exit 2
REPEATS=${1:-5}
NS="100 1000 4000"
for rep in $(seq "$REPEATS"); do
  for n in $NS; do
    build/bench/reaper "$n" >> "$W/all" || { echo "reaper $n failed" >&2; exit 2; }
  done
done
python3 - "$W/all" $NS <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
ns = [int(x) for x in sys.argv[2:]]
def med(kind, n):
    return statistics.median(float(r[2]) for r in rows if r[0] == kind and int(r[1]) == n)
print("lg_net_scan(), ns per scan (median of %d; each the fastest of 3 batches of >= 20 ms)"
      % (len([r for r in rows if r[0] == "base" and int(r[1]) == ns[0]])))
print("%6s %9s %11s %11s %12s %14s %11s" % ("N", "base", "young", "empty", "old", "TCP_INFO loop", "fd bound"))
for n in ns:
    print("%6d %9.0f %11.0f %11.0f %12.0f %14.0f %5d->%d" % (n, med("base", n), med("young", n),
          med("empty", n), med("old", n), med("tcp_info", n), med("base_high", n), med("high", n)))
print()
print("per tracked connection per scan (scan minus base, divided by N):")
print("%6s %18s %16s %18s %20s" % ("N", "young ns/conn", "empty ns/slot", "old ns/conn", "old / TCP_INFO loop"))
for n in ns:
    slots = med("high", n) - med("base_high", n)
    young = (med("young", n) - med("base", n)) / n
    empty = "%.1f" % ((med("empty", n) - med("base", n)) / slots) if slots > 0 else "-"
    old = (med("old", n) - med("base", n)) / n
    bare = med("tcp_info", n) / n
    print("%6d %18.1f %16s %18.0f %19.2fx" % (n, young, empty, old, old / bare))
print()
n = ns[-1]
print("steady state, settled (a recently active connection is looked at again only when it could be idle):")
for n in ns:
    print("  N %5d: %.1f ns per connection per scan" % (n, (med("settled", n) - med("base", n)) / n))
old = med("old", n)
young = med("young", n)
print("scan period: clamp(min(idle_timeout_ms, connect_timeout_ms) / 4, 20, 1000) ms "
      "(1000 ms for idle_timeout_ms 600000)")
print("guardian CPU for %d connections, as a share of one core:" % n)
for idle_ms in (600000, 4000, 500, 80):
    period = min(max(idle_ms // 4, 20), 1000)
    print("  idle_timeout_ms %6d (scan every %4d ms): young %.4f%%, every connection due for a look each scan (old, worst case) %.2f%%"
          % (idle_ms, period, 100 * young / (period * 1e6), 100 * old / (period * 1e6)))
PY
