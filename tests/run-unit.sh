#!/bin/sh
# Runs cmocka unit test binaries; prints each binary's result and a total.
# Usage: run-unit.sh BIN... ; exit status 1 if any test failed.
passed=0; failed=0
for bin in "$@"; do
  case "$bin" in *.d) continue ;; esac   # make's dependency files sit beside the binaries
  [ -x "$bin" ] || continue
  out=$(timeout 300 "$bin" 2>&1); rc=$?
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed, timed out, or no cmocka summary
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    printf '%s\n' "$out" | grep -E '^\[  (FAILED|  ERROR) |^\[ +FAILED +\]|error|Assert' | head -20
    echo "unit: $(basename "$bin"): $p passed, $f failed (exit $rc)"
  else
    echo "unit: $(basename "$bin"): $p passed"
  fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
