# A bad policy is one clear line on stderr and the program runs unguarded (fail-open); with
# GUARD_STRICT=1 (or guardrun --strict) it exits with status 2 before main. guardrun --check
# validates without running anything.
. "$(dirname "$0")/lib.sh"
build_c hello <<'C'
#include <stdio.h>
int main(void) { puts("hello from main"); return 5; }
C
printf '{\n  "fd": {\n    "max": -3\n  }\n}\n' > bad.json
GUARD_POLICY=$T/bad.json guarded ./hello >out 2>err; rc=$?
[ $rc -eq 5 ] || fail "fail-open run exited $rc, expected the program's 5"
grep -qx "hello from main" out || fail "main did not run under a bad policy"
[ "$(grep -c 'libguard: error:' err)" -eq 1 ] || fail "expected exactly one error line, got: $(cat err)"
grep -q "libguard: error: $T/bad.json:3:[0-9]*: .*fd.max" err || fail "error line lacks FILE:LINE:COL and the key: $(cat err)"
[ "$(count_reports)" -eq 0 ] || fail "an unguarded run wrote a report"

GUARD_STRICT=1 GUARD_POLICY=$T/bad.json guarded ./hello >out 2>err; rc=$?
[ $rc -eq 2 ] || fail "strict run exited $rc, expected 2"
[ -s out ] && fail "main ran under GUARD_STRICT=1 with a bad policy"
grep -q "libguard: error: $T/bad.json:3:" err || fail "strict run did not say why: $(cat err)"

GUARD_POLICY=$T/missing.json guarded ./hello >out 2>err; rc=$?
[ $rc -eq 5 ] || fail "a missing policy file must fail open"
grep -q "libguard: error: .*missing.json: No such file" err || fail "missing file not named: $(cat err)"

printf '\x00\x01garbage\xff' > bin.json
GUARD_POLICY=$T/bin.json guarded ./hello >/dev/null 2>err; rc=$?
[ $rc -eq 5 ] || fail "binary garbage policy: exit $rc"
grep -q "libguard: error: .*bin.json:1:" err || fail "binary garbage not reported with a position: $(cat err)"

"$LG_BUILD/guardrun" --check bad.json >out 2>err; rc=$?
[ $rc -eq 2 ] || fail "guardrun --check on a bad policy exited $rc"
grep -q "bad.json:3:" err || fail "guardrun --check did not say where: $(cat err)"
"$LG_BUILD/guardrun" --check "$LG_ROOT/policy/default.json" >out 2>&1 || fail "guardrun --check rejects the default policy: $(cat out)"
"$LG_BUILD/guardrun" --strict --policy bad.json -- ./hello >out 2>err; rc=$?
[ $rc -eq 2 ] || fail "guardrun --strict with a bad policy exited $rc"
[ -s out ] && fail "guardrun --strict ran the program"
echo "ok: fail-open, strict, missing, garbage and --check behave"
