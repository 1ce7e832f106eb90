#!/bin/bash
# Runs every tests/integration/test_*.sh with a time bound. A script passes with exit 0, is
# skipped with exit 77 (a program it needs is missing), and fails otherwise.
# Usage: run.sh [NAME-PATTERN]
cd "$(dirname "$0")/../.." || exit 2
export LG_ROOT=$PWD LG_BUILD=$PWD/build
passed=0; failed=0; skipped=0; failures=""
for t in tests/integration/test_*.sh; do
  name=$(basename "$t" .sh)
  case "$name" in *${1:-}*) ;; *) continue ;; esac
  log=$(mktemp /tmp/lg-it-XXXXXX.log)
  start=$(date +%s)
  timeout -k 5 "${LG_IT_TIMEOUT:-240}" bash "$t" >"$log" 2>&1; rc=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1)); echo "integration: ok   $name (${secs}s)"
  elif [ $rc -eq 77 ]; then
    skipped=$((skipped + 1)); echo "integration: skip $name: $(tail -1 "$log")"
  else
    failed=$((failed + 1)); failures="$failures $name"
    echo "integration: FAIL $name (exit $rc)"; tail -25 "$log" | sed 's/^/    /'
  fi
  rm -f "$log"
done
echo "integration: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
