# A connect limit with on_limit "fail": rate 10, burst 2 on 127.0.0.1/32 port P. Three immediate
# connects: in enforce mode the third fails with ECONNREFUSED; in observe mode all three succeed
# and the report counts one limited. Connects elsewhere (another port) are not limited, nor are
# UDP connects (they only name a peer).
. "$(dirname "$0")/lib.sh"
# The hooks (hooks/socket.c, through libguard/net.c) ask the limiter; until they do, skip.
grep -rls --include='*.c' lg_limit_before_connect "$LG_ROOT/hooks" "$LG_ROOT/libguard" | grep -qv limiter.c ||
  skip "no hook calls the limiter yet (lg_limit_before_connect)"

build_c listener <<'C'
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
/* Listens on two ports of 127.0.0.1 and prints them; the kernel completes handshakes (backlog),
 * nothing is ever accepted. Runs until killed. */
int main(void)
{
	for (int i = 0; i < 2; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(a);
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 64) ||
		    getsockname(s, (struct sockaddr *)&a, &len))
			return 2;
		printf("%d\n", ntohs(a.sin_port));
	}
	fflush(stdout);
	pause();
	return 0;
}
C
build_c connector <<'C'
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
/* connector PORT N [udp]: N immediate connects to 127.0.0.1:PORT; prints "ok" or the errno name
 * each. */
int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int type = argc > 3 && strcmp(argv[3], "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM;
	for (int i = 0; i < atoi(argv[2]); i++) {
		int c = socket(AF_INET, type, 0);
		errno = 0;
		int rc = connect(c, (struct sockaddr *)&a, sizeof(a));
		printf("%s%s", i ? " " : "",
		       rc == 0 ? "ok" : errno == ECONNREFUSED ? "ECONNREFUSED" : strerror(errno));
		close(c);
	}
	printf("\n");
	return 0;
}
C
timeout 30 ./listener > ports &
lpid=$!
for _ in $(seq 100); do [ "$(wc -l < ports)" = 2 ] && break; sleep 0.05; done
[ "$(wc -l < ports)" = 2 ] || fail "listener did not start"
P=$(sed -n 1p ports); Q=$(sed -n 2p ports)

policy() {
  cat > "policy-$1.json" <<J
{ "version": 1, "mode": "$1",
  "limits": [ { "name": "db", "call": "connect", "rate": 10, "burst": 2, "addr": "127.0.0.1/32",
                "port": $P, "on_limit": "fail" } ] }
J
}
policy enforce
policy observe

# check MODE PORT EXPECTED ALLOWED LIMITED [udp]
check() {
  rm -f reports/*.json
  out=$(GUARD_POLICY=$T/policy-$1.json guarded timeout 10 ./connector "$2" 3 ${6:-} 2>err) ||
    fail "connector failed in $1 mode: $(cat err)"
  [ "$out" = "$3" ] || fail "$1 mode, port $2: got \"$out\", expected \"$3\""
  # timeout(1) runs guarded too and writes its own report: take the connector's.
  r=$(ls reports/guard-connector-*.json | head -1)
  json_ok "$r"
  read -r name allowed limited <<<"$(jget "$r" '" ".join(str(d["limits"][0][k]) for k in
    ("name", "allowed", "limited"))')"
  [ "$name" = db ] || fail "report has no limit db: $r"
  [ "$allowed" = "$4" ] || fail "$1 mode, port $2: allowed is $allowed, expected $4"
  [ "$limited" = "$5" ] || fail "$1 mode, port $2: limited is $limited, expected $5"
  echo "$1 port $2 ${6:-tcp}: $out (allowed $4, limited $5)"
}
check enforce "$P" "ok ok ECONNREFUSED" 2 1
check observe "$P" "ok ok ok" 2 1
# Another port of the same address matches no rule: not counted, never refused.
check enforce "$Q" "ok ok ok" 0 0
# UDP to the limited address and port: connect sends nothing, so it is neither counted nor refused.
check enforce "$P" "ok ok ok" 0 0 udp

kill "$lpid" 2>/dev/null
wait "$lpid" 2>/dev/null
exit 0
