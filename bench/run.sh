#!/bin/bash
# make bench: every bench/*.sh in turn; each prints its figures as ratios measured in one run
# and keeps them in bench/results/NAME.txt.
cd "$(dirname "$0")/.." || exit 2
mkdir -p bench/results
for b in bench/*.sh; do
  [ "$(basename "$b")" = run.sh ] && continue
  case "$(basename "$b" .sh)" in *${1:-}*) ;; *) continue ;; esac
  echo "== $b"
  bash "$b" 2>&1 | tee "bench/results/$(basename "$b" .sh).txt"
done
