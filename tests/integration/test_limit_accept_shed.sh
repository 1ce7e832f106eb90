# An accept limit with on_limit "shed" (rate 10, burst 5): 40 connections made at once to a blocking
# accept loop. In enforce mode the program accepts burst + rate*t of them and never sees the rest:
# they are accepted and reset by the guard (the client reads ECONNRESET). In observe mode the
# program accepts all 40 and the report counts what would have been shed.
. "$(dirname "$0")/lib.sh"
grep -rls --include='*.c' lg_limit_after_accept "$LG_ROOT/hooks" "$LG_ROOT/libguard" | grep -qv limiter.c ||
  skip "no hook calls the limiter yet (lg_limit_after_accept)"

build_c server <<'C'
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
/* server PORTFILE: accepts until no connection comes for 1 s (SO_RCVTIMEO bounds a blocking
 * accept on Linux), greets each one, prints how many it accepted. */
int main(int argc, char **argv)
{
	(void)argc;
	int s = socket(AF_INET, SOCK_STREAM, 0), n = 0;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	struct timeval tv = { 1, 0 };
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 128) ||
	    getsockname(s, (struct sockaddr *)&a, &len) ||
	    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		return 2;
	FILE *f = fopen(argv[1], "w");
	fprintf(f, "%d\n", ntohs(a.sin_port));
	fclose(f);
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			perror("accept");
			return 3;
		}
		n++;
		if (write(c, "hi", 2) != 2)
			return 4;
		close(c);
	}
	printf("%d\n", n);
	return 0;
}
C
build_c client <<'C'
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
/* client PORT N: N connections at once, then one read on each: prints "served reset seconds",
 * seconds running from the first connect to the last answer (the window of the guard's decisions). */
int main(int argc, char **argv)
{
	int n = atoi(argv[2]), fds[256], served = 0, reset = 0;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { 5, 0 };
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fds[i], (struct sockaddr *)&a, sizeof(a)) != 0)
			return 2;
	}
	for (int i = 0; i < n; i++) {
		char buf[8];
		ssize_t r = read(fds[i], buf, sizeof(buf));
		if (r == 2)
			served++;
		else if (r < 0 && errno == ECONNRESET)
			reset++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%d %d %.3f\n", served, reset, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
C

N=40
# run MODE: prints "accepted served reset seconds allowed limited"
run() {
  rm -f port reports/*.json
  cat > "policy-$1.json" <<J
{ "version": 1, "mode": "$1",
  "limits": [ { "name": "inbound", "call": "accept", "rate": 10, "burst": 5, "on_limit": "shed" } ] }
J
  GUARD_POLICY=$T/policy-$1.json guarded timeout 20 ./server port >out 2>err &
  local pid=$!
  for _ in $(seq 100); do [ -s port ] && break; sleep 0.05; done
  [ -s port ] || fail "server did not start: $(cat err)"
  local c
  c=$(timeout 20 ./client "$(cat port)" $N) || fail "client failed"
  wait $pid || fail "server failed: $(cat err)"
  local r
  r=$(ls reports/guard-server-*.json | head -1)
  json_ok "$r"
  echo "$(cat out) $c $(jget "$r" '"%d %d" % (d["limits"][0]["allowed"], d["limits"][0]["limited"])')"
}

read -r accepted served reset secs allowed limited <<<"$(run enforce)"
echo "enforce: accepted $accepted, client served $served reset $reset in ${secs}s; report allowed $allowed limited $limited"
# burst + rate * (the client's window, which holds every decision), +1 for rounding.
most=$(awk -v s="$secs" 'BEGIN { printf "%d", 5 + 10 * s + 1 }')
[ "$accepted" -ge 5 ] && [ "$accepted" -le "$most" ] || fail "accepted $accepted, expected 5..$most"
[ "$served" = "$accepted" ] || fail "client was served $served, the program accepted $accepted"
[ "$reset" = $((N - accepted)) ] || fail "client saw $reset resets, expected $((N - accepted))"
[ "$allowed" = "$accepted" ] && [ "$limited" = $((N - accepted)) ] ||
  fail "report says allowed $allowed limited $limited for $accepted accepted of $N"

read -r accepted served reset secs allowed limited <<<"$(run observe)"
echo "observe: accepted $accepted, client served $served reset $reset; report allowed $allowed limited $limited"
[ "$accepted" = $N ] && [ "$served" = $N ] && [ "$reset" = 0 ] || fail "observe mode changed the calls"
most=$(awk -v s="$secs" 'BEGIN { printf "%d", 5 + 10 * s + 1 }')
[ "$limited" -ge $((N - most)) ] && [ $((allowed + limited)) = $N ] ||
  fail "observe: report says allowed $allowed limited $limited of $N"
exit 0
