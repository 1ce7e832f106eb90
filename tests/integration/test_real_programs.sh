# Real programs nobody here wrote run under the default policy exactly as without it: same
# output, same exit status, and a report that parses.
. "$(dirname "$0")/lib.sh"

# same_as_plain NAME CMD...: output and status identical with and without the library.
same_as_plain() {
  local name=$1; shift
  "$@" >"$T/$name.plain" 2>&1; local plain_rc=$?
  rm -f "$T"/reports/*.json
  guarded "$@" >"$T/$name.guarded" 2>&1; local guarded_rc=$?
  [ $plain_rc -eq $guarded_rc ] || fail "$name: exit status $guarded_rc under libguard, $plain_rc without"
  # Output may carry pids, temp names or timings: compare after masking digits and hex.
  local a b
  a=$(sed -E 's/[0-9a-f]{6,}/H/g; s/[0-9]+/N/g' "$T/$name.plain")
  b=$(sed -E 's/[0-9a-f]{6,}/H/g; s/[0-9]+/N/g' "$T/$name.guarded")
  [ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") | head -20; fail "$name: output differs under libguard"; }
  grep -q "libguard:" "$T/$name.guarded" && fail "$name: libguard printed: $(grep libguard: "$T/$name.guarded" | head -3)"
  [ "$(count_reports)" -ge 1 ] || fail "$name: no report written"
  json_ok "$T"/reports/*.json
  echo "ok: $name ($(count_reports) report(s))"
}

need python3 perl gcc git sqlite3 node
cat > "$T/py.py" <<'PY'
import threading, socket, sqlite3, subprocess, json
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
port = srv.getsockname()[1]
def serve():
    for _ in range(4):
        c, _ = srv.accept(); c.sendall(c.recv(100).upper()); c.close()
t = threading.Thread(target=serve); t.start()
out = []
def client(i):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"hello %d" % i); out.append(s.recv(100)); s.close()
ts = [threading.Thread(target=client, args=(i,)) for i in range(4)]
[x.start() for x in ts]; [x.join() for x in ts]; t.join()
db = sqlite3.connect(":memory:"); db.execute("create table t(x)"); db.executemany("insert into t values (?)", [(i,) for i in range(1000)])
print(sorted(out), db.execute("select sum(x) from t").fetchone()[0])
print(subprocess.run(["echo", "child"], capture_output=True, text=True).stdout.strip())
print(json.dumps({"k": list(range(5))}))
PY
same_as_plain python python3 "$T/py.py"
same_as_plain perl perl -e 'my %h; $h{$_} = $_ * 2 for 1..100000; print scalar(keys %h), "\n"; print `echo from-child`;'
printf '#include <stdio.h>\nint main(void){puts("hi");return 0;}\n' > "$T/hello.c"
same_as_plain gcc gcc -O2 -c "$T/hello.c" -o "$T/hello.o"
cat > "$T/gitc.sh" <<'SH'
set -e
rm -rf "$1/repo"; git init -q "$1/repo"; cd "$1/repo"; echo x > f; git add f
git -c user.email=a@b -c user.name=n commit -qm one; git log --format=%s
SH
same_as_plain git bash "$T/gitc.sh" "$T"
same_as_plain bash-fork-exec bash -c 'n=0; for i in $(seq 1 300); do n=$((n + $(/bin/echo 1))); done; echo $n'
same_as_plain node node -e 'const s=require("net").createServer(c=>c.end("pong")); s.listen(0,"127.0.0.1",()=>{require("net").connect(s.address().port,"127.0.0.1").on("data",d=>{console.log(String(d));s.close();});});'
same_as_plain sqlite3 sqlite3 :memory: "create table if not exists t(x); insert into t values (1),(2),(3); select count(*), sum(x) from t;"
