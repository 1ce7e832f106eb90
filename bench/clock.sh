#!/bin/bash
# clock_gettime(CLOCK_MONOTONIC), clock_gettime(CLOCK_REALTIME) and gettimeofday per call:
# plain vs libguard (default policy) vs libfaketime (FAKETIME="+0"), measured in one run,
# interleaved, 5 repetitions, median. Budget (DESIGN.md): libguard <= +8 ns a call over plain.
cd "$(dirname "$0")/.." || exit 2
LG_SO=$PWD/build/libguard.so
FT_SO=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[ -f "$LG_SO" ] || { echo "build/libguard.so is missing: run make" >&2; exit 2; }
W=$(mktemp -d /tmp/lg-bench-clock-XXXXXX); trap 'rm -rf "$W"' EXIT
cc -std=gnu11 -O2 -o "$W/clock" bench/clock.c || exit 2
N=${N:-2000000}
configs="plain libguard"
[ -f "$FT_SO" ] && configs="$configs libfaketime" || echo "(libfaketime not installed: apt-get install faketime)"

run() {
  case $1 in
    plain) "$W/clock" "$N" ;;
    libguard) out=$(LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$W "$W/clock" "$N")
              # A rebuild in progress can leave the .so missing for a moment: never count a
              # run that did not load it as a libguard figure.
              grep -q "libguard_loaded 1" <<<"$out" || { echo "libguard was not loaded" >&2; exit 2; }
              echo "$out" ;;
    libfaketime) LD_PRELOAD=$FT_SO FAKETIME="+0" "$W/clock" "$N" ;;
  esac
}
for rep in 1 2 3 4 5; do
  for c in $configs; do out=$(run "$c") || exit 2; sed "s/^/$c /" <<<"$out" >> "$W/all"; done
done
python3 - "$W/all" $configs <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
configs = sys.argv[2:]
rows = [r for r in rows if r[1] != "libguard_loaded"]
calls = ["clock_gettime_monotonic", "clock_gettime_realtime", "gettimeofday"]
med = {(c, k): statistics.median(float(r[2]) for r in rows if r[0] == c and r[1] == k)
       for c in configs for k in calls}
print("%-26s" % "ns/call (median of 5)" + "".join("%14s" % c for c in configs))
for k in calls:
    print("%-26s" % k + "".join("%14.2f" % med[(c, k)] for c in configs))
print()
for k in calls:
    base = med[("plain", k)]
    print("%-26s" % k + "  ".join("%s %.2fx (%+.1f ns)" % (c, med[(c, k)] / base, med[(c, k)] - base)
                                  for c in configs if c != "plain"))
d = med[("libguard", "clock_gettime_monotonic")] - med[("plain", "clock_gettime_monotonic")]
print("\nbudget: libguard clock_gettime(CLOCK_MONOTONIC) <= +8 ns over plain: %s (%+.1f ns)"
      % ("met" if d <= 8 else "NOT met", d))
PY
