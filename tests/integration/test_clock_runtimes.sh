# Runtimes that read clocks heavily (a JVM, CPython, node) run unchanged under the default
# policy: same output, same exit status, a report whose clock section lists realtime readers.
. "$(dirname "$0")/lib.sh"
need python3

ran=0
# check NAME CMD...: identical output/status with and without the library; readers reported.
check() {
  local name=$1; shift
  local plain guarded prc grc
  plain=$(timeout 60 "$@" 2>&1); prc=$?
  rm -f "$T"/reports/*.json
  guarded=$(timeout 60 env LD_PRELOAD="$LG_SO" GUARD_REPORT_DIR="$T/reports" "$@" 2>&1); grc=$?
  [ $prc -eq 0 ] || fail "$name: failed without libguard ($prc): $plain"
  [ $grc -eq $prc ] || fail "$name: exit $grc under libguard: $guarded"
  [ "$plain" = "$guarded" ] || fail "$name: output differs: '$plain' vs '$guarded'"
  local r
  # The program's own report: a launcher in front of it (a pyenv shim is a bash script) writes
  # one too, and may write the larger one.
  r=$(ls -S "$T"/reports/*-"$(basename "$1")"*.json 2>/dev/null | head -1)
  [ -n "$r" ] || r=$(ls -S "$T"/reports/*.json | head -1) || fail "$name: no report"
  json_ok "$r"
  python3 - "$r" <<'PY' || fail "$name: clock section wrong"
import json, sys
c = json.load(open(sys.argv[1]))["clock"]
assert c["jumps"] == [] and c["monotonic_regressions"] == 0 and c["clamped_ms"] == 0, c
assert sum(r["calls"] for r in c["realtime_readers"]) > 10000, c["realtime_readers"][:5]
PY
  echo "ok: $name"
  ran=$((ran + 1))
}

cat > "$T/clocks.py" <<'PY'
import time, datetime
n = 0; prev = time.monotonic()
for i in range(200000):
    t = time.time(); m = time.monotonic(); n += m >= prev; prev = m
    if i % 1000 == 0: datetime.datetime.now(); time.time_ns(); time.perf_counter()
print("python ok", n == 200000)
PY
check python python3 "$T/clocks.py"

if command -v node >/dev/null 2>&1; then
  check node node -e 'let n=0,p=process.hrtime.bigint();for(let i=0;i<200000;i++){Date.now();const m=process.hrtime.bigint();n+=m>=p;p=m;if(i%1000==0)new Date().toISOString();}console.log("node ok",n===200000)'
fi

if command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1; then
  mkdir -p "$T/java"
  cat > "$T/java/Clocks.java" <<'JAVA'
public class Clocks {
	public static void main(String[] args) throws Exception {
		long n = 0, prev = System.nanoTime();
		Thread t = new Thread(() -> { for (int i = 0; i < 300000; i++) System.currentTimeMillis(); });
		t.start();
		for (int i = 0; i < 300000; i++) {
			long m = System.nanoTime();
			if (m >= prev) n++;
			prev = m;
			System.currentTimeMillis();
			if (i % 1000 == 0) java.time.Instant.now();
		}
		t.join();
		System.out.println("java ok " + (n == 300000));
	}
}
JAVA
  timeout 60 javac -d "$T/java" "$T/java/Clocks.java" || fail "cannot compile Clocks.java"
  check java java -cp "$T/java" Clocks
fi
[ $ran -ge 2 ] || skip "fewer than two runtimes available"
