#!/bin/bash
# Heap guard, issue 3: heap.max_bytes. In enforce mode with on_max "fail" an allocation beyond the
# ceiling returns NULL with ENOMEM (and works again once memory is freed); in observe mode nothing
# fails and the report holds a heap.max violation. Every allocation sampled: the live-heap estimate
# is exact, so the ceiling is met within one block.
. "$(dirname "$0")/lib.sh"

build_c grab <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void *blocks[4096];
int main(void)
{
	int n = 0, err = 0;
	/* Up to 4 MiB in 1 KiB blocks against a ceiling of 1 MiB. */
	for (n = 0; n < 4096; n++) {
		errno = 0;
		blocks[n] = malloc(1024);
		if (!blocks[n]) {
			err = errno;
			break;
		}
		memset(blocks[n], 1, 1024);
	}
	int first_refused = n;
	/* Free half of what was had: allocations work again. */
	for (int i = 0; i < n / 2; i++)
		free(blocks[i]);
	void *again = malloc(1024);
	printf("%d %d %d\n", first_refused, err == ENOMEM, again != NULL);
	return 0;
}
EOF

printf '{ "version": 1, "mode": "enforce", "heap": { "sample_bytes": 1, "max_bytes": 1048576, "on_max": "fail" } }\n' > enforce.json
out=$(timeout 20 env GUARD_POLICY=$T/enforce.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./grab) || fail "grab (enforce) exited with $?"
echo "enforce: $out"
set -- $out
[ "$1" -ge 1000 ] && [ "$1" -le 1024 ] || fail "enforce: refused after $1 blocks of 1 KiB, expected ~1024 (1 MiB)"
[ "$2" = 1 ] || fail "enforce: the refused malloc did not set ENOMEM"
[ "$3" = 1 ] || fail "enforce: malloc still fails after memory was freed"
r=$(ls reports/guard-grab-*.json) || fail "no report"
[ "$(jget $r 'sum(v["count"] for v in d["violations"] if v["kind"] == "heap.max")')" -ge 1 ] \
  || fail "enforce: no heap.max violation"

rm -f reports/*
printf '{ "version": 1, "heap": { "sample_bytes": 1, "max_bytes": 1048576, "on_max": "fail" } }\n' > observe.json
out=$(timeout 20 env GUARD_POLICY=$T/observe.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./grab) || fail "grab (observe) exited with $?"
echo "observe: $out"
set -- $out
[ "$1" = 4096 ] || fail "observe: an allocation failed (after $1 blocks)"
r=$(ls reports/guard-grab-*.json) || fail "no report"
[ "$(jget $r 'sum(v["count"] for v in d["violations"] if v["kind"] == "heap.max")')" -ge 1 ] \
  || fail "observe: no heap.max violation"
echo ok
