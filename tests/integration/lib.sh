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

# free_port: a TCP port on 127.0.0.1 that nothing holds now (the kernel's pick for a bind to 0;
# a random number can land on a port a connection of an earlier test still holds).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nginx (the Debian package) as a test subject, one process answering "ok" on 127.0.0.1.
# nginx_prepare [ACCESS_LOG]: picks a free port into $PORT, writes $T/nginx.conf (ACCESS_LOG is a
# path, or off by default) and makes the exit trap stop nginx if it still runs.
nginx_prepare() {
  PORT=$(free_port)
  mkdir -p "$T/logs"
  cat > "$T/nginx.conf" <<C
user root;
daemon off;
master_process off;
worker_processes 1;
error_log $T/logs/error.log warn;
pid $T/nginx.pid;
events { worker_connections 1024; }
http {
  access_log ${1:-off};
  server { listen 127.0.0.1:$PORT backlog=512; location / { return 200 "ok\n"; } }
}
C
  NGINX=
  trap '[ -n "$NGINX" ] && kill $NGINX 2>/dev/null; wait 2>/dev/null; cd /; rm -rf "$T"' EXIT
}
# start_nginx [VAR=VALUE...]: nginx in the background under that environment (for example
# LD_PRELOAD=$LG_SO) and at most NGINX_TIMEOUT seconds (40); waits until it answers. $NGINX is the
# background job, $pid nginx itself.
start_nginx() {
  env "$@" timeout -k 2 "${NGINX_TIMEOUT:-40}" nginx -p "$T" -c "$T/nginx.conf" >"$T/nginx.out" 2>&1 &
  NGINX=$!
  for _ in $(seq 50); do curl -s -m 1 "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
  [ "$(curl -s -m 2 "http://127.0.0.1:$PORT/")" = ok ] || fail "nginx does not answer: $(cat $T/nginx.out $T/logs/error.log)"
  pid=$(cat "$T/nginx.pid")
}
stop_nginx() { kill $NGINX; wait $NGINX 2>/dev/null; NGINX=; }
