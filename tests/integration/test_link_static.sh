#!/bin/bash
# examples/static/leak.c linked statically against the installed package, with the flags
# `pkg-config --static --cflags --libs libguard` gives: the hooks come from the executable, the
# guard starts only at guard_start(), the limiter paces, and guard_report("api") writes a report
# holding the exact bytes leaked at leak_session_buffers (the policy samples every allocation).
source "$(dirname "$0")/lib.sh"
need make pkg-config cc readelf nm python3

P=$T/prefix
timeout 200 ${MAKE:-make} -s -C "$LG_ROOT" install PREFIX="$P" >"$T/install.log" 2>&1 \
  || { tail -20 "$T/install.log"; fail "make install PREFIX=$P failed"; }
export PKG_CONFIG_PATH=$P/lib/pkgconfig
grep -qx "prefix=$P" "$P/lib/pkgconfig/libguard.pc" \
  || fail "installed libguard.pc does not name prefix $P: $(grep '^prefix=' "$P/lib/pkgconfig/libguard.pc")"
flags=$(pkg-config --static --cflags --libs libguard) || fail "pkg-config --static --cflags --libs libguard failed"
cc -std=gnu11 -O2 -g -Wall -Wextra -o "$T/leak" "$LG_ROOT/examples/static/leak.c" $flags \
  || fail "cannot link examples/static/leak.c with: $flags"

# The hooks are the executable's own, exported so that libc's internal calls reach them too; the
# program does not depend on libguard.so.
readelf -d "$T/leak" | grep -q 'NEEDED.*libguard' && fail "the static link depends on libguard.so"
# A hook that nothing in leak.c calls still comes along (it is libc's symbol the exe overrides).
for sym in malloc free socket clock_gettime pthread_mutex_lock; do
  nm -D --defined-only "$T/leak" | grep -qw "$sym" || fail "the executable does not define and export $sym: the archive was not linked whole"
done
nm --defined-only "$T/leak" | grep -qw guard_start || fail "guard_start is not in the executable"

policy=$LG_ROOT/examples/static/every-alloc.json
run() { env -u LD_PRELOAD -u GUARD_POLICY -u GUARD_DISABLE -u GUARD_STRICT GUARD_REPORT_DIR="$T/reports" timeout 20 "$@"; }

run "$T/leak" "$policy" >"$T/out" 2>"$T/err"; rc=$?
cat "$T/out" "$T/err"
[ $rc -eq 0 ] || fail "leak exited with $rc"
grep -qx 'guard_start: 0' "$T/out" || fail "guard_start did not return 0"
grep -qx 'guard_report: 0' "$T/out" || fail "guard_report did not return 0"
# Five tokens at once from a full 100/s burst-5 bucket; the sixth is due ~10 ms later.
wait_ns=$(sed -n 's/^limiter: take5=0 take1_wait_ns=\([0-9]*\)$/\1/p' "$T/out")
[ -n "$wait_ns" ] || fail "take(5) was not allowed at once: $(grep limiter "$T/out")"
[ "$wait_ns" -gt 5000000 ] && [ "$wait_ns" -le 10000000 ] || fail "the sixth token should be ~10 ms away, not $wait_ns ns"

pid_reports=$(ls "$T"/reports/leak-*.json 2>/dev/null)
[ "$(echo "$pid_reports" | grep -c .)" = 1 ] || fail "expected one report, got: $pid_reports"
r=$pid_reports
json_ok "$r"
[ "$(jget "$r" 'd["guard"]["reason"]')" = api ] || fail "report reason is $(jget "$r" 'd["guard"]["reason"]'), not api"
[ "$(jget "$r" 'd["guard"]["policy"]')" = "$policy" ] || fail "report does not name the policy"
[ "$(jget "$r" 'd["heap"]["sample_bytes"]')" = 1 ] || fail "heap.sample_bytes is not 1 in the report"

# bytes and objects of the live sites whose innermost frame is fn
site() {
  python3 - "$r" "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); fn = sys.argv[2]
stacks = {s["id"]: s["frames"] for s in d["stacks"]}
b = o = 0
for e in d["heap"]["live"]:
    fr = stacks.get(e["stack"], [])
    if fr and fr[0]["fn"] == fn:
        b += e["bytes"]; o += e["objects"]
anywhere = any(f["fn"] == fn for e in d["heap"]["live"] for f in stacks.get(e["stack"], []))
print(b, o, int(anywhere))
PY
}
read -r bytes objects _ <<<"$(site leak_session_buffers)"
[ "$bytes" = 7000 ] && [ "$objects" = 7 ] \
  || fail "expected 7000 bytes in 7 objects at leak_session_buffers, got $bytes bytes in $objects objects"
# Allocated before guard_start(): a linked guard was not running, so it is not in the profile.
read -r _ _ seen <<<"$(site allocate_before_start)"
[ "$seen" = 0 ] || fail "an allocation made before guard_start() is in the heap profile"

# GUARD_DISABLE=1: guard_start refuses (-ECANCELED), nothing is written.
rm -f "$T"/reports/*
run env GUARD_DISABLE=1 "$T/leak" "$policy" >"$T/out" 2>&1 && fail "leak ran guarded with GUARD_DISABLE=1"
grep -qx 'guard_start: -125' "$T/out" || fail "guard_start with GUARD_DISABLE=1 should be -ECANCELED: $(cat "$T/out")"
[ "$(count_reports)" = 0 ] || fail "a report was written with GUARD_DISABLE=1"

# An invalid policy: -EINVAL, one error line naming the file, the program runs on unguarded;
# with GUARD_STRICT=1 the process exits with status 2.
printf '{\n  "version": 1,\n  "heap": { "sample_bytes": "every" }\n}\n' > "$T/bad.json"
run "$T/leak" "$T/bad.json" >"$T/out" 2>"$T/err"
grep -qx 'guard_start: -22' "$T/out" || fail "guard_start with an invalid policy should be -EINVAL: $(cat "$T/out" "$T/err")"
[ "$(grep -c 'libguard: error: .*bad.json:3:' "$T/err")" = 1 ] || fail "expected one error line naming bad.json:3: $(cat "$T/err")"
run env GUARD_STRICT=1 "$T/leak" "$T/bad.json" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "GUARD_STRICT=1 with an invalid policy should exit 2, not $rc"
echo "ok: static link with: $flags"
