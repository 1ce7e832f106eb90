# redis-server under the default policy: started, used with redis-cli on 127.0.0.1, shut down;
# it answers as without the library and writes a report that parses.
. "$(dirname "$0")/lib.sh"
need redis-server redis-cli python3
# The port is free when chosen, but something may take it before redis binds: try again then.
for attempt in 1 2 3; do
  port=$(free_port)
  guarded_exec redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$T" >"$T/redis.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do
    redis-cli -p $port ping >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  grep -q "Address already in use" "$T/redis.log" || break
  wait $pid
done
[ "$(redis-cli -p $port ping)" = PONG ] || fail "redis did not answer: $(tail -5 "$T/redis.log")"
for i in $(seq 1 200); do echo "SET key$i value$i"; done | redis-cli -p $port >/dev/null
[ "$(redis-cli -p $port DBSIZE)" = 200 ] || fail "DBSIZE is not 200"
[ "$(redis-cli -p $port GET key77)" = value77 ] || fail "GET key77 is wrong"
redis-cli -p $port shutdown nosave >/dev/null 2>&1
for _ in $(seq 1 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "redis did not shut down"
wait $pid; rc=$?
[ $rc -eq 0 ] || fail "redis exited with $rc"
grep -q "libguard:" "$T/redis.log" && fail "libguard printed: $(grep libguard: "$T/redis.log" | head -3)"
r=$(reports_for $pid) || fail "no report for redis pid $pid"
json_ok $r
echo "ok: redis served 200 keys and wrote $r"
