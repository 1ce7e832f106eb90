#!/bin/bash
# nginx (Debian package) under an accept limit, enforced: { call accept, port P, rate 200, burst 20,
# on_limit shed }, driven by wrk -t2 -c32 -d3s with "Connection: close" (one request per
# connection, so every request costs one accept).
#   - nginx serves burst + rate*t requests (+-25%), counted in its own access log;
#   - the report's limits section says limited > 0 and allowed within the same bounds;
#   - nginx's CPU over the run stays well below one core (< 60%): shedding is accept + RST, the
#     listener never spins;
#   - the same load without the limit is served far beyond it (the test can tell the difference).
# What nginx sees for a shed connection (checked with strace): epoll_wait returns the listener
# readable; nginx calls accept4(SOCK_NONBLOCK); the guard's hook makes the real accept4 (fd N),
# setsockopt(N, SO_LINGER {1, 0}), close(N), and returns -1 EAGAIN to nginx, which treats it as
# "not ready" (ngx_event_accept logs it at debug level only) and goes back to epoll_wait; the
# level-triggered listener wakes it again while the backlog holds more. So each shed connection
# costs nginx one wake-up and four syscalls, and between connections it sleeps in epoll_wait:
# its CPU follows the clients' reconnection rate, it is never a spin. The client (wrk) gets a RST:
# a read error (ECONNRESET), or a write error when the RST came before its request was written;
# wrk reconnects at once, so it makes ~20,000 connections/s here, all but 200/s of them shed.
. "$(dirname "$0")/lib.sh"
need nginx wrk python3 curl

RATE=200 BURST=20 DUR=3
nginx_prepare "$T/logs/access.log"
cat > policy.json <<J
{ "version": 1, "mode": "enforce",
  "limits": [ { "name": "inbound", "call": "accept", "port": $PORT, "rate": $RATE, "burst": $BURST,
                "on_limit": "shed" } ] }
J

NGINX_TIMEOUT=30
# Each nginx run starts from an empty access log (served() counts its lines).
fresh_access_log() { : > "$T/logs/access.log"; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }   # utime + stime, clock ticks
served() { wc -l < "$T/logs/access.log"; }
HZ=$(getconf CLK_TCK)

# load LABEL: wrk against nginx; sets SERVED (access-log lines during the run), SECS (wall time of
# the run), CPU_PCT (nginx CPU over it, % of one core) and WRK (wrk's output).
load() {
  # The limiter refills while nginx sits idle before the run: let it fill up (burst/rate = 0.1 s)
  # so every run starts from a full bucket, as the formula assumes.
  sleep 0.3
  local l0 c0 t0 t1 c1
  l0=$(served); c0=$(cpu); t0=$(date +%s.%N)
  WRK=$(timeout -k 2 $((DUR + 8)) wrk -t2 -c32 -d${DUR}s -H 'Connection: close' "http://127.0.0.1:$PORT/" 2>&1)
  t1=$(date +%s.%N); c1=$(cpu)
  sleep 0.2   # the last responses' log lines
  SERVED=$(( $(served) - l0 ))
  SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  CPU_PCT=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v s="$SECS" 'BEGIN { printf "%d", 100 * c / hz / s }')
  ERRS=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 }' <<<"$WRK"); ERRS=${ERRS:-0}
  echo "$1: wrk: $(awk '/requests in/' <<<"$WRK" | sed 's/^ *//'); $(grep -i 'socket errors' <<<"$WRK" | sed 's/^ *//')"
  echo "$1: nginx served $SERVED requests (access log) in ${SECS}s, nginx CPU ${CPU_PCT}% of one core"
  CPU_TICKS=$((c1 - c0))
  # Once the load is gone, nginx sleeps: nothing left spinning on the listener.
  c0=$(cpu); sleep 1; IDLE_TICKS=$(( $(cpu) - c0 ))
  echo "$1: nginx CPU in the second after the load: $IDLE_TICKS/$HZ ticks"
}

# Without libguard: the baseline the limit must be told apart from.
fresh_access_log; start_nginx
load plain
PLAIN=$SERVED PLAIN_CPU=$CPU_PCT
stop_nginx

fresh_access_log; start_nginx GUARD_POLICY=$T/policy.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports
load limited
stop_nginx

# The run's decisions span wrk's -d (wrk stops sending at DUR); SECS includes wrk's start-up and
# tear-down, so the window used is DUR, with +-25% around the expectation.
EXPECT=$((BURST + RATE * DUR))
LO=$((EXPECT * 75 / 100)) HI=$((EXPECT * 125 / 100))
echo "expected: burst + rate*duration = $BURST + $RATE*$DUR = $EXPECT (accepted range $LO..$HI)"
[ "$PLAIN" -ge $((EXPECT * 3)) ] ||
  fail "plain nginx served only $PLAIN requests, not far above the limit's $EXPECT: the test cannot tell the limit apart"
[ "$SERVED" -ge "$LO" ] && [ "$SERVED" -le "$HI" ] ||
  fail "nginx served $SERVED requests under the limit, expected $LO..$HI"
[ "$CPU_PCT" -lt 60 ] || fail "nginx CPU ${CPU_PCT}% of one core under the limit: pinned"

r=$(ls reports/*.json 2>/dev/null | head -1)
[ -n "$r" ] || fail "no report from nginx"
json_ok "$r"
read -r name allowed limited <<<"$(jget "$r" '"%s %d %d" % (d["limits"][0]["name"], d["limits"][0]["allowed"], d["limits"][0]["limited"])')"
echo "report: limits[0] $name allowed $allowed limited $limited"
# allowed also counts the start-up curl probes (a few, spread before the run).
[ "$name" = inbound ] || fail "limits[0] is $name"
[ "$limited" -gt 0 ] || fail "the report shows nothing limited"
[ "$allowed" -ge "$LO" ] && [ "$allowed" -le "$HI" ] || fail "report allowed $allowed, expected $LO..$HI"
[ "$allowed" -ge "$SERVED" ] || fail "report allowed $allowed < $SERVED served"
# Every shed connection reaches the client as a reset (wrk: read or write error); the last few
# may be shed after wrk stopped counting (up to its 32 connections, plus 2% slack).
echo "wrk socket errors (connect+read+write): $ERRS, connections shed: $limited"
[ "$ERRS" -ge $((limited * 98 / 100 - 32)) ] && [ "$ERRS" -le "$limited" ] ||
  fail "wrk saw $ERRS socket errors for $limited connections shed"
[ "$IDLE_TICKS" -le $((HZ / 20)) ] || fail "nginx used $IDLE_TICKS ticks in the second after the load"
per=$(awk -v t="$CPU_TICKS" -v hz="$HZ" -v n=$((SERVED + limited)) 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
echo "plain nginx: $PLAIN requests (CPU ${PLAIN_CPU}%); limited: $SERVED requests served, $limited connections shed (CPU ${CPU_PCT}%, $per us of nginx CPU per connection)"
echo ok
