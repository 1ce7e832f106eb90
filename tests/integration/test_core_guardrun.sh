# guardrun runs a program under the library, passes its exit status through (and death by a
# signal), and tells where the report went; report dirs that cannot be written are one warning.
. "$(dirname "$0")/lib.sh"
build_c status <<'C'
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv)
{
	char *p = malloc(1000);
	strcpy(p, "payload");
	if (argc > 1 && strcmp(argv[1], "kill") == 0)
		raise(SIGTERM);
	printf("%s %s\n", p, argc > 1 ? argv[1] : "");
	return argc > 1 ? atoi(argv[1]) : 0;
}
C
G=$LG_BUILD/guardrun
$G --report-dir "$T/reports" -- ./status 7 >out 2>err; rc=$?
[ $rc -eq 7 ] || fail "exit status 7 came back as $rc"
grep -qx "payload 7" out || fail "program output missing"
path=$(sed -n 's/^guardrun: report: //p' err)
[ -n "$path" ] && [ -f "$path" ] || fail "guardrun did not name an existing report: $(cat err)"
json_ok "$path"
[ "$(jget "$path" 'd["guard"]["reason"]')" = exit ] || fail "reason is not exit"
[ "$(jget "$path" 'd["guard"]["exe"]')" = "$T/status" ] || fail "exe is wrong in $path"
[ "$(stat -c %a "$path")" = 600 ] || fail "report mode is not 0600"

$G --report-dir "$T/reports" -- ./status kill >out 2>err; rc=$?
[ $rc -eq 143 ] || fail "death by SIGTERM came back as $rc, expected 143"

# Report dirs that do not exist, or cannot be written: one warning, the program runs on, and the
# report is not lost (it goes to the working dir).
mkdir -p work ro && chmod 0500 ro
cd work
GUARD_REPORT_DIR=/nonexistent/dir LD_PRELOAD=$LG_SO ../status 0 >out 2>err; rc=$?
[ $rc -eq 0 ] || fail "unwritable report dir changed the exit status to $rc"
[ "$(grep -c 'libguard: warning:' err)" -eq 1 ] || fail "expected one warning: $(cat err)"
grep -q "/nonexistent/dir" err || fail "warning does not name the dir"
ls guard-status-*.json >/dev/null 2>&1 || fail "the report was lost instead of written to the working dir"
rm -f guard-status-*.json
if [ "$(id -u)" != 0 ]; then
  GUARD_REPORT_DIR=$T/ro LD_PRELOAD=$LG_SO ../status 0 >out 2>err || fail "read-only dir broke the run"
  grep -q "libguard: warning: report dir $T/ro" err || fail "read-only dir not warned about"
fi
cd "$T"

# GUARD_ALLOCATOR=system: allocations go to glibc's malloc, and the report says so.
rm -f reports/*.json
GUARD_ALLOCATOR=system guarded ./status 6 >out 2>err; rc=$?
[ $rc -eq 6 ] || fail "GUARD_ALLOCATOR=system changed the exit status to $rc: $(cat err)"
grep -qx "payload 6" out || fail "GUARD_ALLOCATOR=system broke the program's output"
r=$(ls reports/*.json | head -1)
[ "$(jget "$r" 'd["heap"]["backend"]')" = system ] || fail "heap backend is not system under GUARD_ALLOCATOR=system"
rm -f reports/*.json
guarded ./status 0 >/dev/null 2>&1
[ "$(jget "$(ls reports/*.json | head -1)" 'd["heap"]["backend"]')" = jemalloc ] || fail "default backend is not jemalloc"

# GUARD_DISABLE=1: every hook passes through and nothing is written.
rm -f reports/*.json
GUARD_DISABLE=1 guarded ./status 4 >out 2>err; rc=$?
[ $rc -eq 4 ] || fail "GUARD_DISABLE changed the exit status"
[ "$(count_reports)" -eq 0 ] || fail "GUARD_DISABLE=1 still wrote a report"
echo "ok: status pass-through, signal death, report location, unwritable dirs, allocator choice, GUARD_DISABLE"
