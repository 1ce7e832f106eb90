# An accept limit with on_limit "wait" paces a blocking accept loop: 2000 connections offered as
# fast as a client can make them, under rate 500 and burst 20, are all accepted, in
# (2000 - 20) / 500 = 3.96 s +-10% from the first accept to the last. The same loop without the
# limit must be much faster, or the test would prove nothing about the limiter.
. "$(dirname "$0")/lib.sh"
# The hooks (hooks/socket.c, through libguard/net.c) ask the limiter; until they do, skip.
grep -rls --include='*.c' lg_limit_before_accept "$LG_ROOT/hooks" "$LG_ROOT/libguard" | grep -qv limiter.c ||
  skip "no hook calls the limiter yet (lg_limit_before_accept)"

build_c server <<'C'
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
int main(int argc, char **argv)
{
	int n = atoi(argv[2]), one = 1;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* A backlog that holds every connection: the client never waits on a full queue, so the
	 * pace is the limiter's alone (the kernel caps it at net.core.somaxconn). */
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 4096) ||
	    getsockname(s, (struct sockaddr *)&a, &len)) {
		perror("listen");
		return 2;
	}
	FILE *f = fopen(argv[1], "w");
	fprintf(f, "%d\n", ntohs(a.sin_port));
	fclose(f);
	double first = 0, last = 0;
	for (int i = 0; i < n; i++) {
		int c = accept(s, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR) { i--; continue; }
			perror("accept");
			return 3;
		}
		last = now_s();
		if (i == 0)
			first = last;
		close(c);
	}
	printf("%d %.3f\n", n, last - first);
	return 0;
}
C
build_c client <<'C'
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	int port = atoi(argv[1]), n = atoi(argv[2]), ok = 0;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	for (int i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		/* The handshake completes in the kernel, queued for accept; then the client is done
		 * with it (accept still returns a connection whose peer has closed). */
		if (connect(c, (struct sockaddr *)&a, sizeof(a)) == 0)
			ok++;
		close(c);
	}
	printf("%d\n", ok);
	return ok == n ? 0 : 1;
}
C
[ "$(cat /proc/sys/net/core/somaxconn)" -ge 2000 ] || skip "net.core.somaxconn is below 2000"

N=2000
# run_pair POLICY|-: start the server (guarded with POLICY, or unguarded for -), feed it N
# connections, print "accepted seconds".
run_pair() {
  rm -f port out
  if [ "$1" = - ]; then
    timeout 20 ./server port $N >out 2>err &
  else
    GUARD_POLICY=$1 guarded timeout 20 ./server port $N >out 2>err &
  fi
  local pid=$!
  for _ in $(seq 100); do [ -s port ] && break; sleep 0.05; done
  [ -s port ] || fail "server did not start: $(cat err)"
  timeout 20 ./client "$(cat port)" $N >/dev/null || fail "client could not make $N connections"
  wait $pid || fail "server failed: $(cat err)"
  cat out
}

# Without a limit: the client must outpace 1000 connections/s, or pacing could not be seen.
read -r n secs <<<"$(run_pair -)"
[ "$n" = $N ] || fail "unlimited server accepted $n"
echo "unlimited: $n accepted in ${secs}s"
awk -v s="$secs" 'BEGIN { exit !(s < 1.98) }' ||
  skip "this machine makes only $N connections in ${secs}s; the limit could not be told apart"

cat > policy.json <<'J'
{ "version": 1, "mode": "enforce",
  "limits": [ { "name": "inbound", "call": "accept", "rate": 500, "burst": 20, "on_limit": "wait" } ] }
J
read -r n secs <<<"$(run_pair "$T/policy.json")"
echo "limited: $n accepted in ${secs}s (expected 3.96 s +-10%)"
[ "$n" = $N ] || fail "limited server accepted $n of $N"
awk -v s="$secs" 'BEGIN { exit !(s >= 3.564 && s <= 4.356) }' ||
  fail "$N accepts took ${secs}s, expected 3.96 s +-10%"

# timeout(1) runs guarded too and writes its own report: take the server's.
r=$(ls reports/guard-server-*.json | head -1)
json_ok "$r"
read -r nlimits name call allowed limited waited <<<"$(jget "$r" '" ".join(str(x) for x in
  [len(d["limits"])] + [d["limits"][0][k] for k in ("name", "call", "allowed", "limited", "waited_ms")])')"
[ "$nlimits" = 1 ] || fail "report has $nlimits limits, expected 1: $r"
[ "$name" = inbound ] && [ "$call" = accept ] || fail "limit is $name/$call, expected inbound/accept"
echo "report: allowed $allowed limited $limited waited_ms $waited"
[ "$allowed" = $N ] || fail "allowed is $allowed, expected $N (one token per accepted connection)"
# An accept after the burst finds no token and waits (counted once however often it wakes), unless
# the previous one overslept its wait by a whole interval (2 ms; a loaded machine does): at most
# N - burst, and most of them.
[ "$limited" -ge 1000 ] && [ "$limited" -le 1980 ] || fail "limited is $limited, expected 1000..1980"
# The loop spent nearly all of its 3.96 s asleep on the limiter.
[ "$waited" -ge 3000 ] && [ "$waited" -le 4400 ] || fail "waited_ms is $waited, expected ~3960"
exit 0
