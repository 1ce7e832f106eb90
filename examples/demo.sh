#!/bin/sh
# make demo: run the example service under libguard with the embedded default policy, then
# show where the report went and what it says.
set -eu
cd "$(dirname "$0")/.."
out=build/demo
rm -rf "$out" && mkdir -p "$out"
echo "== build/guardrun --report-dir $out -- build/examples/service"
build/guardrun --report-dir "$out" -- build/examples/service 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
cat "$out/stderr"
report=$(sed -n 's/^guardrun: report: //p' "$out/stderr" | head -1)
[ -n "$report" ] || { echo "demo: no report was written" >&2; exit 1; }
echo
echo "== build/guard-report $report"
# guard-report exits 1 when the report holds violations; the demo's default policy only observes.
build/guard-report "$report" || [ $? -eq 1 ]
