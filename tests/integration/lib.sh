# Shared helpers for integration tests (sourced). Each test runs in its own temp dir.
set -u
LG_ROOT=${LG_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LG_BUILD=${LG_BUILD:-$LG_ROOT/build}
LG_SO=$LG_BUILD/libguard.so
T=$(mktemp -d /tmp/lg-test-XXXXXX)
trap 'cd /; rm -rf "$T"' EXIT
cd "$T" || exit 2
mkdir -p reports

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "skip: $*"; exit 77; }
need() { for c in "$@"; do command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"; done; }

# guarded CMD...: run CMD with libguard preloaded, reports into $T/reports.
guarded() { LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports "$@"; }
# For a background run whose $! must be the program itself: `guarded_exec CMD... &`.
guarded_exec() { LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports exec "$@"; }

# A C program built from a here-doc: build_c NAME [CFLAGS...] < source
build_c() { local name=$1; shift; cat > "$T/$name.c"; cc -std=gnu11 -O1 -g -o "$T/$name" "$T/$name.c" "$@" -lpthread || fail "cannot build $name"; }

# reports_for PID: the JSON reports a process wrote.
reports_for() { ls "$T"/reports/*-"$1".json 2>/dev/null; }

# json_ok FILE...: every file parses as JSON and has a guard section.
json_ok() {
  for f in "$@"; do
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "guard" in d and d["guard"]["pid"] > 0' "$f" \
      || fail "report $f does not parse"
  done
}

# count_reports: how many JSON reports are in $T/reports.
count_reports() { ls "$T"/reports/*.json 2>/dev/null | wc -l; }

# jq-like field read with python: jget FILE EXPR (EXPR uses d as the parsed report)
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
