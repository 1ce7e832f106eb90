#!/bin/bash
# examples/systemd/libguard.conf: its lines agree with each other (the report dir is the state
# dir, the checked policy is the one used, the library is the installed one), and the environment
# it sets, with its paths moved under $T, guards a program whose report lands in that directory;
# the ExecStartPre check passes for the example policy and fails for a broken one.
source "$(dirname "$0")/lib.sh"
need python3

conf=$LG_ROOT/examples/systemd/libguard.conf
python3 - "$conf" "$T" <<'PY' > "$T/env.sh" || fail "examples/systemd/libguard.conf is inconsistent"
import shlex, sys
conf, T = sys.argv[1], sys.argv[2]
unit = "demo"                                    # %N for demo.service
env, keys, section = {}, {}, None
for raw in open(conf):
    line = raw.strip()
    if not line or line[0] in "#;":
        continue
    if line.startswith("["):
        section = line
        continue
    assert section == "[Service]", "directive outside [Service]: " + line
    key, _, value = line.partition("=")
    value = value.replace("%N", unit)
    keys.setdefault(key, []).append(value)
    if key == "Environment":
        for word in shlex.split(value):
            k, _, v = word.partition("=")
            env[k] = v
for k in ("LD_PRELOAD", "GUARD_POLICY", "GUARD_REPORT_DIR"):
    assert k in env, "no Environment=%s" % k
assert env["LD_PRELOAD"] == "/usr/local/lib/libguard.so", env["LD_PRELOAD"]
assert env["GUARD_REPORT_DIR"].startswith("/var/lib/"), env["GUARD_REPORT_DIR"]
state = keys.get("StateDirectory", [""])[0]
assert "/var/lib/" + state == env["GUARD_REPORT_DIR"], "StateDirectory=%s does not create %s" % (state, env["GUARD_REPORT_DIR"])
pre = shlex.split(keys["ExecStartPre"][0])
assert pre[:3] == ["/usr/bin/env", "-u", "LD_PRELOAD"], pre
assert pre[3] == "/usr/local/bin/guardrun" and pre[4] == "--check" and pre[5] == env["GUARD_POLICY"], pre
# The same environment with every path under T, for this test.
print("export GUARD_POLICY=%s GUARD_REPORT_DIR=%s" % (shlex.quote(T + env["GUARD_POLICY"]), shlex.quote(T + env["GUARD_REPORT_DIR"])))
print("CHECK_POLICY=%s" % shlex.quote(T + pre[5]))
PY
cat "$T/env.sh"
source "$T/env.sh"
mkdir -p "$(dirname "$GUARD_POLICY")" "$GUARD_REPORT_DIR"
cp "$LG_ROOT/examples/systemd/policy.json" "$GUARD_POLICY"

# ExecStartPre: the example policy passes, a broken one stops the start.
env -u LD_PRELOAD "$LG_BUILD/guardrun" --check "$CHECK_POLICY" >/dev/null 2>&1 || fail "guardrun --check rejects examples/systemd/policy.json"
printf '{ "version": 1, "mode": "observe", "report": { "interval_s": "often" } }\n' > "$T/bad.json"
env -u LD_PRELOAD "$LG_BUILD/guardrun" --check "$T/bad.json" >/dev/null 2>&1 && fail "guardrun --check accepts a broken policy"

# The service's process under exactly that environment (LD_PRELOAD moved to the build).
build_c svc <<'C'
#include <stdlib.h>
#include <string.h>
int main(void) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); return p ? 0 : 1; }
C
LD_PRELOAD=$LG_SO timeout 20 "$T/svc" || fail "the service failed under the drop-in's environment"
r=$(ls "$GUARD_REPORT_DIR"/guard-svc-*.json 2>/dev/null)
[ -n "$r" ] || fail "no report in GUARD_REPORT_DIR ($GUARD_REPORT_DIR): $(ls -R "$T" | head -20)"
json_ok "$r"
[ "$(jget "$r" 'd["guard"]["policy"]')" = "$GUARD_POLICY" ] || fail "the report does not name the drop-in's policy"
ls "$GUARD_REPORT_DIR"/guard-svc-*.prom >/dev/null 2>&1 || fail "the example policy asks for prom output; none was written"
[ "$(stat -c %a "$r")" = 600 ] || fail "report mode is $(stat -c %a "$r"), not 600"
echo "ok: drop-in environment guards the service; report in $GUARD_REPORT_DIR"
