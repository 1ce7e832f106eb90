#!/bin/bash
# examples/cgo builds and runs with the README's commands after `make install`: a Go program that
# links libguard through `#cgo pkg-config: libguard`, paces work with a guard_limiter, leaks from
# a C function, and writes a report naming that C function -- and not the Go heap it also holds.
# Skipped (77) where Go is not installed. Go's build cache is in the test's temp dir: the first
# build of runtime/cgo takes 10-60 s on a loaded 2-core machine.
source "$(dirname "$0")/lib.sh"
need go make pkg-config cc python3

P=$T/prefix
timeout 200 ${MAKE:-make} -s -C "$LG_ROOT" install PREFIX="$P" >"$T/install.log" 2>&1 \
  || { tail -20 "$T/install.log"; fail "make install PREFIX=$P failed"; }
grep -qx "prefix=$P" "$P/lib/pkgconfig/libguard.pc" \
  || fail "installed libguard.pc does not name prefix $P: $(grep '^prefix=' "$P/lib/pkgconfig/libguard.pc")"

# No network, no toolchain download, nothing written outside $T.
export PKG_CONFIG_PATH=$P/lib/pkgconfig CGO_LDFLAGS_ALLOW='-Wl,--(no-)?whole-archive'
export GOCACHE=$T/go/cache GOPATH=$T/go/path GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off \
  GO111MODULE=on CGO_ENABLED=1 GUARD_REPORT_DIR=$T/reports
unset LD_PRELOAD GUARD_POLICY GUARD_DISABLE

cd "$LG_ROOT/examples/cgo" || fail "no examples/cgo"
timeout 180 go run . >"$T/out" 2>"$T/err"; rc=$?
cat "$T/out" "$T/err"
[ $rc -eq 124 ] && fail "go run timed out"
[ $rc -eq 0 ] || fail "go run exited with $rc"
grep -q '^limiter: take(5) waits 0s, then take(1) waits [5-9][.0-9]*ms$\|^limiter: take(5) waits 0s, then take(1) waits 10ms$' "$T/out" \
  || fail "limiter from Go: take(5) should pass and take(1) wait ~10ms: $(grep limiter "$T/out" | head -1)"
grep -q '^limiter: 20 more requests in ' "$T/out" || fail "the paced requests did not run"
cd "$T" || exit 2

r=$(ls "$T"/reports/cgo-*.json 2>/dev/null)
[ "$(echo "$r" | grep -c .)" = 1 ] || fail "expected one cgo report, got: $r"
json_ok "$r"
[ "$(jget "$r" 'd["guard"]["reason"]')" = api ] || fail "report reason is not api"
python3 - "$r" <<'PY' || fail "the report does not hold the C leak as expected"
import json, sys
d = json.load(open(sys.argv[1]))
stacks = {s["id"]: s["frames"] for s in d["stacks"]}
live = d["heap"]["live"]
at = [e for e in live if stacks[e["stack"]] and stacks[e["stack"]][0]["fn"] == "leak_request_cache"]
b, o = sum(e["bytes"] for e in at), sum(e["objects"] for e in at)
print("leak_request_cache:", b, "bytes in", o, "objects")
assert (b, o) == (7000, 7), (b, o)
# The 8 MiB the Go code holds came from the Go allocator (mmap): invisible to the guard.
total = sum(e["bytes"] for e in live)
print("all live sampled bytes:", total)
assert total < 1 << 20, total
PY

# The Go binary carries the guard itself: it does not need libguard.so at run time.
cd "$LG_ROOT/examples/cgo" && timeout 120 go build -o "$T/cgo-example" . || fail "go build failed"
cd "$T" || exit 2
readelf -d "$T/cgo-example" | grep -q 'NEEDED.*libguard' && fail "the Go binary depends on libguard.so"
echo "ok: go run . reported the C leak"
