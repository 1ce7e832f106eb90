#!/bin/bash
# nginx with slow clients that connect and say nothing (slowloris-style, 60 of them for 3 s):
# under idle_timeout_ms 500 its connection count returns to the baseline within 2 s (without
# libguard they stay: client_header_timeout is 60 s), and it keeps serving wrk traffic meanwhile.
. "$(dirname "$0")/lib.sh"
need nginx wrk python3 curl

nginx_prepare
cat > policy.json <<'J'
{ "version": 1, "mode": "enforce", "net": { "idle_timeout_ms": 500 } }
J

nfds() { ls /proc/$pid/fd | wc -l; }

# slow_clients: 60 connections that say nothing for 3 s; prints "connected" once they are up.
slow_clients() {
  python3 - "$PORT" <<'PY' &
import socket, sys, time
cs = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(60)]
print("connected", flush=True)
time.sleep(3)
PY
}

# Without libguard: the slow clients hold their connections.
start_nginx
base=$(nfds)
slow_clients > "$T/slow.out"; SLOW=$!
for i in $(seq 50); do grep -q connected "$T/slow.out" && break; sleep 0.1; done
sleep 1.6
plain=$(nfds)
echo "plain nginx: baseline $base fds, $plain with 60 slow clients after 1.6 s"
[ "$plain" -ge $((base + 55)) ] || fail "the slow clients did not stay without libguard: the scenario is broken"
wait $SLOW; stop_nginx

start_nginx GUARD_POLICY=$T/policy.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports
base=$(nfds)
slow_clients > "$T/slow.out"; SLOW=$!
for i in $(seq 50); do grep -q connected "$T/slow.out" && break; sleep 0.1; done
up=$(nfds)
# Normal traffic meanwhile: keep-alive connections that talk are never reaped.
out=$(wrk -t 1 -c 10 -d 2s "http://127.0.0.1:$PORT/" 2>&1)
after=$(nfds)
reqs=$(awk '/requests in/ {print $1}' <<<"$out")
echo "guarded nginx: baseline $base fds, $up with 60 slow clients, $after after 2 s; wrk meanwhile: $reqs requests $(grep -i 'socket errors' <<<"$out")"
[ "$up" -ge $((base + 50)) ] || fail "the slow clients never reached nginx ($up fds)"
[ "$after" -le $((base + 2)) ] || fail "idle connections were not reaped: $after fds, baseline $base"
[ "${reqs:-0}" -ge 200 ] || fail "nginx served ${reqs:-0} requests meanwhile"
grep -qi "socket errors" <<<"$out" && fail "wrk saw errors: $(grep -i 'socket errors' <<<"$out")"
wait $SLOW; stop_nginx
r=$(ls reports/*.json | head -1) || fail "no report from nginx"
json_ok $r
n=$(jget $r 'd["net"]["idle_shutdowns"]')
[ "$n" -ge 60 ] && [ "$n" -le 62 ] || fail "idle_shutdowns $n: $(jget $r 'd["net"]')"
echo ok
