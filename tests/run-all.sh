#!/bin/bash
# make test: unit tests (cmocka), the unit tests again under ASan and UBSan, then the
# integration tests; the last line is the total.
cd "$(dirname "$0")/.." || exit 2
total_p=0; total_f=0
tally() { # reads "...: N passed, M failed" from the last line of a log
  local line; line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  local p f; p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  total_p=$((total_p + ${p:-0})); total_f=$((total_f + ${f:-1}))
}
log=$(mktemp); ./tests/run-unit.sh "$@" | tee "$log"; tally "$log"
if [ -z "${LG_SKIP_SANITIZERS:-}" ]; then
  for san in address undefined; do
    echo "== unit tests with SANITIZER=$san"
    if make -s SANITIZER=$san sanunit >"$log.build" 2>&1; then
      bins=$(ls build/tests-$san/test_* 2>/dev/null)
      ASAN_OPTIONS=detect_leaks=1 ./tests/run-unit.sh $bins | sed "s/^unit:/unit[$san]:/" | tee "$log"; tally "$log"
    else
      tail -20 "$log.build"; echo "unit[$san]: 0 passed, 1 failed"; total_f=$((total_f + 1))
    fi
  done
fi
./tests/integration/run.sh | tee "$log"; tally "$log"
rm -f "$log" "$log.build"
echo "$total_p passed, $total_f failed"
[ $total_f -eq 0 ]
