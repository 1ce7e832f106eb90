# The guard's own descriptors (the guardian's eventfd, the clock's timerfd, the fd guard's
# reserve, libunwind's address-validation pipe) live above the numbers programs name by hand: a
# shell's `exec 3>file` (dup2 onto fd 3) must never turn a guard write into a write to the file.
. "$(dirname "$0")/lib.sh"
cat > s.sh <<'SH'
exec 3>"$1/f3" 4>"$1/f4" 5>"$1/f5" 6>"$1/f6" 7>"$1/f7" 8>"$1/f8"
for i in $(seq 1 200); do x=$(printf '%0300d' $i); done   # some allocation and forks
kill -USR2 $$                                              # the guardian writes a report
sleep 0.5
ls -l /proc/$$/fd | awk '{print $NF}' | grep -c '^anon_inode:\|^pipe:' || true
echo done
SH
cat > enforce.json <<'J'
{ "mode": "enforce", "heap": { "sample_bytes": 1 } }
J
GUARD_POLICY=$T/enforce.json guarded bash s.sh "$T" >out 2>err || fail "script failed: $(cat err)"
grep -qx done out || fail "script did not finish"
for n in 3 4 5 6 7 8; do
  [ -s "$T/f$n" ] && fail "the guard wrote into the program's fd $n: $(od -c "$T/f$n" | head -3)"
done
ls reports/*.json >/dev/null 2>&1 || fail "no report"
python3 - "$T"/reports/*.json <<'PY' || fail "no report with reason signal"
import json, sys
assert any(json.load(open(f))["guard"]["reason"] in ("signal", "exit") for f in sys.argv[1:])
PY
# The guard's descriptors are where they should be: the fds a guarded shell has and a plain one
# has not (fd 3 is ls's own directory fd in both) are all high.
list_fds() { "$@" bash -c 'ls /proc/$$/fd' | sort -n; }
list_fds env > plain || fail "listing fds failed"
list_fds env GUARD_POLICY=$T/enforce.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports > guarded_fds || fail "listing fds failed"
own=$(comm -13 <(sort plain) <(sort guarded_fds) | sort -n | tr '\n' ' ')
[ -n "$own" ] || fail "found no guard descriptor: the check checks nothing"
for fd in $own; do
  [ "$fd" -ge 900 ] || fail "guard descriptor $fd is below 900 (guard's: $own)"
done
echo "ok: the program's fds 3..8 stayed untouched; the guard's fds are $own"
