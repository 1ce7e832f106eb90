#!/bin/bash
# socket()+close() and open()+close() pairs: plain vs libguard with fd.stacks on vs off (enforce,
# fd guard on), measured in one run, interleaved, 5 repetitions, median.
# Budgets (issue 4): fd.stacks on <= 1.5x plain, fd.stacks off <= 1.1x plain.
cd "$(dirname "$0")/.." || exit 2
LG_SO=$PWD/build/libguard.so
[ -f "$LG_SO" ] || { echo "build/libguard.so is missing: run make" >&2; exit 2; }
W=$(mktemp -d /tmp/lg-bench-fd-XXXXXX); trap 'rm -rf "$W"' EXIT
cc -std=gnu11 -O2 -o "$W/fd" bench/fd.c -ldl || exit 2
N=${N:-100000}
cat > "$W/on.json" <<'J'
{ "version": 1, "mode": "enforce", "report": { "at_exit": false }, "fd": { "stacks": true } }
J
cat > "$W/off.json" <<'J'
{ "version": 1, "mode": "enforce", "report": { "at_exit": false }, "fd": { "stacks": false } }
J
configs="plain stacks_on stacks_off"
run() {
  case $1 in
    plain) "$W/fd" "$N" ;;
    stacks_on|stacks_off)
      p=$W/${1#stacks_}.json
      out=$(GUARD_POLICY=$p LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$W "$W/fd" "$N")
      grep -q "libguard_loaded 1" <<<"$out" || { echo "libguard was not loaded" >&2; exit 2; }
      echo "$out" ;;
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
calls = ["socket_close", "open_close"]
med = {(c, k): statistics.median(float(r[2]) for r in rows if r[0] == c and r[1] == k)
       for c in configs for k in calls}
print("%-22s" % "ns/pair (median of 5)" + "".join("%12s" % c for c in configs))
for k in calls:
    print("%-22s" % k + "".join("%12.1f" % med[(c, k)] for c in configs))
print()
for k in calls:
    base = med[("plain", k)]
    print("%-22s" % k + "  ".join("%s %.2fx" % (c, med[(c, k)] / base) for c in configs if c != "plain"))
on = med[("stacks_on", "socket_close")] / med[("plain", "socket_close")]
off = med[("stacks_off", "socket_close")] / med[("plain", "socket_close")]
print("\nbudget: socket+close, fd.stacks on <= 1.5x: %s (%.2fx); fd.stacks off <= 1.1x: %s (%.2fx)"
      % ("met" if on <= 1.5 else "NOT met", on, "met" if off <= 1.1 else "NOT met", off))
PY
