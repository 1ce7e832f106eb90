#!/bin/bash
# nginx (Debian package, one process, 127.0.0.1) + wrk, keep-alive and "Connection: close":
# plain vs libguard with a full policy (enforce; fd guard with stacks; connect, read, write and
# idle timeouts; max_connections), interleaved, 5 repetitions, median requests/s.
# Budget (issues 4 and 5): >= 0.95x plain throughput.
cd "$(dirname "$0")/.." || exit 2
LG_SO=$PWD/build/libguard.so
[ -f "$LG_SO" ] || { echo "build/libguard.so is missing: run make" >&2; exit 2; }
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "nginx and wrk are needed" >&2; exit 2; }
W=$(mktemp -d /tmp/lg-bench-nginx-XXXXXX)
NGINX=
trap '[ -n "$NGINX" ] && kill $NGINX 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
D=${D:-3}
mkdir -p "$W/logs"
cat > "$W/nginx.conf" <<C
user root;
daemon off;
master_process off;
worker_processes 1;
error_log $W/logs/error.log warn;
pid $W/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$PORT backlog=4096; location / { return 200 "ok\n"; } }
}
C
cat > "$W/full.json" <<'J'
{ "version": 1, "mode": "enforce",
  "fd": { "stacks": true, "on_max": "fail" },
  "net": { "connect_timeout_ms": 2000, "read_timeout_ms": 5000, "write_timeout_ms": 5000,
           "idle_timeout_ms": 10000, "max_connections": 10000 } }
J
start() {
  env "$@" nginx -p "$W" -c "$W/nginx.conf" >"$W/nginx.out" 2>&1 &
  NGINX=$!
  for i in $(seq 50); do curl -s -m 1 "http://127.0.0.1:$PORT/" >/dev/null && return 0; sleep 0.1; done
  echo "nginx did not start: $(cat "$W/nginx.out")" >&2; exit 2
}
stop() { kill $NGINX; wait $NGINX 2>/dev/null; NGINX=; }
rps() { wrk -t 1 -c 32 -d "${D}s" "$@" "http://127.0.0.1:$PORT/" | awk '/Requests\/sec/ {print $2}'; }
for rep in 1 2 3 4 5; do
  for c in plain libguard; do
    if [ $c = plain ]; then start; else start GUARD_POLICY=$W/full.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$W; fi
    [ $c = libguard ] && ! grep -q libguard "/proc/$(cat "$W/nginx.pid")/maps" && { echo "libguard was not loaded" >&2; exit 2; }
    echo "$c keepalive $(rps)" >> "$W/all"
    echo "$c close $(rps -H 'Connection: close')" >> "$W/all"
    stop
  done
done
python3 - "$W/all" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
med = {(c, k): statistics.median(float(r[2]) for r in rows if r[0] == c and r[1] == k)
       for c in ("plain", "libguard") for k in ("keepalive", "close")}
print("%-28s%12s%12s" % ("requests/s (median of 5)", "plain", "libguard"))
for k in ("keepalive", "close"):
    print("%-28s%12.0f%12.0f   %.3fx" % (k, med[("plain", k)], med[("libguard", k)],
                                         med[("libguard", k)] / med[("plain", k)]))
worst = min(med[("libguard", k)] / med[("plain", k)] for k in ("keepalive", "close"))
print("\nbudget: nginx + wrk with a full policy >= 0.95x plain: %s (worst %.3fx)"
      % ("met" if worst >= 0.95 else "NOT met", worst))
PY
