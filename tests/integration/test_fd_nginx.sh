#!/bin/bash
# nginx (Debian package) under fd.max 64, enforced: with more clients than fds it keeps serving
# what it can, does not spin while clients wait in its backlog, and recovers when they leave.
. "$(dirname "$0")/lib.sh"
need nginx wrk python3

nginx_prepare
cat > policy.json <<'J'
{ "version": 1, "mode": "enforce", "fd": { "max": 64, "on_max": "fail" } }
J
start_nginx GUARD_POLICY=$T/policy.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }   # utime + stime, clock ticks

# 120 silent clients: nginx holds what fits under fd.max, the rest wait in its backlog.
python3 - "$PORT" > "$T/idle.out" <<'PY' &
import socket, sys, time
cs = []
for i in range(120):
    s = socket.socket(); s.connect(("127.0.0.1", int(sys.argv[1]))); cs.append(s)
print("connected", flush=True)
time.sleep(3)
PY
IDLE=$!
for i in $(seq 50); do grep -q connected "$T/idle.out" && break; sleep 0.1; done
sleep 0.3
fds=$(ls /proc/$pid/fd | wc -l)
c0=$(cpu); sleep 1; c1=$(cpu)
ticks=$((c1 - c0)); hz=$(getconf CLK_TCK)
echo "nginx with 120 waiting clients: fds=$fds cpu=$ticks/$hz ticks in 1 s"
# fd.max counts the program's fds; the guard's own few (reserve fd, eventfd, timerfd) come on top.
[ "$fds" -le 70 ] || fail "nginx holds $fds fds under fd.max 64"
[ "$ticks" -le $((hz / 10)) ] || fail "nginx spins: $ticks ticks of CPU in 1 s"
wait $IDLE

# The silent clients are gone: nginx serves again, within a second.
ok=0; for i in $(seq 20); do [ "$(curl -s -m 1 "http://127.0.0.1:$PORT/")" = ok ] && { ok=1; break; }; sleep 0.1; done
[ $ok = 1 ] || fail "nginx did not recover once the clients left"

# Load beyond its fds: it keeps serving what it can.
out=$(wrk -t 2 -c 150 -d 2s "http://127.0.0.1:$PORT/" 2>&1)
reqs=$(awk '/requests in/ {print $1}' <<<"$out")
echo "wrk -c 150 under fd.max 64: $reqs requests; $(grep -i 'socket errors' <<<"$out")"
[ "${reqs:-0}" -ge 200 ] || fail "nginx served ${reqs:-0} requests under load: $out"
[ "$(curl -s -m 2 "http://127.0.0.1:$PORT/")" = ok ] || fail "nginx does not answer after the load"
stop_nginx
r=$(ls reports/*.json | head -1) || fail "no report from nginx"
json_ok $r
[ "$(jget $r 'd["fd"]["max"]')" = 64 ] || fail "fd.max not in the report"
[ "$(jget $r 'd["fd"]["peak"]')" -le 64 ] || fail "peak beyond fd.max: $(jget $r 'd["fd"]')"
echo ok
