#!/bin/bash
# guard-report, the viewer: summary with function and file:line, exit status on violations,
# --svg (valid XML, names the functions, renders, zooms on click), --diff (growth per site).
# Reports are synthetic (built here from a real binary's symbols), so this runs without any guard.
. "$(dirname "$0")/lib.sh"
need python3 objdump nm addr2line
GR=$LG_BUILD/guard-report
[ -x "$GR" ] || fail "build/guard-report is missing (run make)"

build_c leak -g <<'EOF'
#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) void *leak_here(size_t n)
{
	void *p = malloc(n);
	memset(p, 1, n);
	return p;
}
__attribute__((noinline)) void serve(void)
{
	for (int i = 0; i < 64; i++)
		leak_here(65536);
}
int main(void)
{
	serve();
	return 0;
}
EOF

# mkreport EXE SCALE VIOLATIONS: a report whose heap grows with SCALE at leak_here, called from
# serve (a real return address in EXE, so addr2line finds leak.c).
cat > mkreport.py <<'EOF'
import json, re, subprocess, sys
exe, scale, viol = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", exe], capture_output=True, text=True).stdout.splitlines()
def ret_after(callee):
    for i, l in enumerate(dis):
        if re.search(r"call\s+[0-9a-f]+ <%s>" % callee, l):
            return int(dis[i + 1].split(":")[0], 16)
    raise SystemExit("no call to " + callee)
syms = {}
for l in subprocess.run(["nm", exe], capture_output=True, text=True).stdout.splitlines():
    p = l.split()
    if len(p) == 3:
        syms[p[2]] = int(p[0], 16)
base = 0x555555554000
def fr(fn, off, mod=exe):
    return {"addr": hex(base + off), "fn": fn, "module": mod, "offset": hex(off)}
hook = {"addr": "0x7f0000001000", "fn": "malloc", "module": "/opt/lib/libguard.so", "offset": "0x1000"}
stacks = [
  {"id": 1, "frames": [hook, fr("leak_here", syms["leak_here"] + 8), fr("serve", ret_after("leak_here")),
                       fr("main", ret_after("serve"))]},
  {"id": 2, "frames": [hook, fr(None, 0x3456, "/usr/lib/libfoo.so.1"), fr("main", ret_after("serve"))]},
]
d = {"guard": {"version": "0.1.0", "pid": 77, "exe": exe, "reason": "exit", "policy": "default",
               "mode": "observe", "started_unix_ms": 1000, "written_unix_ms": 3500, "self_bytes": 123456},
     "stacks": stacks,
     "heap": {"backend": "jemalloc", "sample_bytes": 524288, "allocated_bytes": int(5e6 * scale),
              "live": [{"stack": 1, "bytes": int(4194304 * scale), "objects": 64},
                       {"stack": 2, "bytes": 65536, "objects": 1}], "suspects": []},
     "locks": {"contended": [{"stack": 2, "count": 3, "wait_ns": 2500000, "max_wait_ns": 1000000}]},
     "violations": [{"kind": "heap.max", "count": 2, "stack": 1}] if viol else []}
json.dump(d, sys.stdout)
EOF
python3 mkreport.py "$T/leak" 1 0 > old.json || fail "cannot make old.json"
python3 mkreport.py "$T/leak" 2 1 > new.json || fail "cannot make new.json"

# Summary: the function, its file:line, the module offset; exit 0 without violations.
"$GR" old.json > sum_old.txt; rc=$?
[ $rc -eq 0 ] || fail "summary of a clean report exited $rc"
grep -q "leak_here at leak.c:[0-9]" sum_old.txt || { cat sum_old.txt; fail "summary does not name leak_here with file:line"; }
grep -q "no violations" sum_old.txt || fail "summary does not say there are no violations"
grep -q "libfoo.so.1+0x3456" sum_old.txt || fail "an unnamed frame is not shown as module+offset"
"$GR" --no-lines old.json | grep -q "leak.c:" && fail "--no-lines still prints file:line"

# Violations: listed first, exit 1.
"$GR" new.json > sum_new.txt; rc=$?
[ $rc -eq 1 ] || fail "summary of a report with violations exited $rc, want 1"
head -5 sum_new.txt | grep -q "^VIOLATIONS (1)" || { cat sum_new.txt; fail "violations are not first"; }
grep -q "heap.max .*leak_here" sum_new.txt || fail "the violation does not name its site"

# Usage errors and unreadable reports: exit 2.
"$GR" > /dev/null 2>&1; [ $? -eq 2 ] || fail "no argument should exit 2"
"$GR" missing.json > /dev/null 2>&1; [ $? -eq 2 ] || fail "a missing report should exit 2"
echo '{"x":1}' > bad.json
"$GR" bad.json > /dev/null 2>&1; [ $? -eq 2 ] || fail "a non-report should exit 2"
"$GR" --svg x.svg --profile nope old.json > /dev/null 2>&1; [ $? -eq 2 ] || fail "an unknown profile should exit 2"
"$GR" --svg x.svg --profile fds old.json > /dev/null 2>&1; [ $? -eq 2 ] || fail "an absent profile should exit 2"

# Diff: the leaking site grew by 4 MiB; exit 1 because NEW holds violations.
"$GR" --diff old.json new.json > diff.txt; rc=$?
[ $rc -eq 1 ] || fail "--diff exited $rc, want 1 (NEW has violations)"
grep -q "^  +4.0 MiB .*leak_here at leak.c" diff.txt || { cat diff.txt; fail "--diff does not show leak_here growing by 4 MiB"; }
grep -q "libfoo" diff.txt && { cat diff.txt; fail "--diff lists a site that did not grow"; }
"$GR" --diff new.json old.json > diff2.txt; rc=$?
[ $rc -eq 0 ] || fail "--diff towards a clean report exited $rc"
grep -q "no site grew" diff2.txt || fail "a shrinking heap shows growth"

# SVG: well-formed, self-contained, names the functions, root first, script inline.
"$GR" --svg flame.svg old.json > /dev/null; rc=$?
[ $rc -eq 0 ] || fail "--svg exited $rc"
python3 - flame.svg <<'EOF' || fail "flame graph check failed"
import sys, xml.etree.ElementTree as ET
ns = {"s": "http://www.w3.org/2000/svg"}
root = ET.parse(sys.argv[1]).getroot()
assert not any(e.get("href") or e.get("{http://www.w3.org/1999/xlink}href") for e in root.iter()), "external reference"
frames = {}
for g in root.iter("{http://www.w3.org/2000/svg}g"):
    t = g.find("s:text", ns); r = g.find("s:rect", ns)
    frames[t.get("data-n")] = (int(g.get("data-d")), float(r.get("width")), g.find("s:title", ns).text)
assert set(["all", "main", "serve", "leak_here", "malloc", "libfoo.so.1+0x3456"]) <= set(frames), frames
assert frames["all"][0] == 0 and frames["main"][0] == 1 and frames["serve"][0] == 2 and frames["leak_here"][0] == 3, frames
assert frames["leak_here"][1] > 20 * frames["libfoo.so.1+0x3456"][1], "widths are not proportional"
assert "4.0 MiB" in frames["leak_here"][2], frames["leak_here"][2]
assert root.find("s:script", ns) is not None, "no inline script"
EOF

# The inline script: click-to-zoom, run against a small DOM stand-in in node.
if command -v node >/dev/null 2>&1; then
  cat > zoom.js <<'EOF'
const fs = require("fs");
const svg = fs.readFileSync(process.argv[2], "utf8");
const script = svg.split("<![CDATA[")[1].split("]]>")[0];
function el(attrs) {
  return { a: attrs, style: {}, textContent: "", on: {},
    getAttribute(k) { return this.a[k]; }, setAttribute(k, v) { this.a[k] = String(v); },
    addEventListener(ev, fn) { this.on[ev] = fn; } };
}
const gs = [];
const re = /<g class="f" data-x="([^"]*)" data-w="([^"]*)" data-d="([^"]*)"><title>([^<]*)<\/title><rect x="([^"]*)" y="[^"]*" width="([^"]*)"[^>]*\/><text x="[^"]*" y="[^"]*" data-n="([^"]*)">/g;
let m;
while ((m = re.exec(svg))) {
  const g = el({ "data-x": m[1], "data-w": m[2], "data-d": m[3] });
  g.rect = el({ x: m[5], width: m[6] }); g.text = el({ "data-n": m[7] }); g.title = el({}); g.title.textContent = m[4];
  g.querySelector = (s) => (s === "rect" ? g.rect : s === "text" ? g.text : g.title);
  gs.push(g);
}
const ids = { details: el({}), reset: el({}) };
global.document = { querySelectorAll: () => gs, getElementById: (i) => ids[i] };
eval(script);
const by = (n) => gs.find((g) => g.text.a["data-n"] === n);
by("serve").on.click();
const check = (c, msg) => { if (!c) { console.error("zoom: " + msg); process.exit(1); } };
check(+by("serve").rect.a.width > 1170, "the clicked frame does not fill the width");
check(+by("leak_here").rect.a.width > 1170 * 0.9, "its child is not rescaled");
check(by("libfoo.so.1+0x3456").style.display === "none", "a frame outside it is still shown");
check(by("main").style.opacity === 0.5, "its ancestor is not dimmed");
check(by("serve").text.textContent === "serve", "the label is not refitted");
ids.reset.on.click();
check(by("libfoo.so.1+0x3456").style.display === "", "reset does not show every frame again");
by("leak_here").on.mouseover();
check(ids.details.textContent.indexOf("leak_here") === 0, "hover does not fill the details line");
EOF
  node zoom.js flame.svg || fail "the flame graph's script does not zoom"
fi

# It renders: a PNG of the right size, not blank.
if command -v rsvg-convert >/dev/null 2>&1; then
  rsvg-convert -o flame.png flame.svg || fail "rsvg-convert cannot render the flame graph"
  python3 - flame.png <<'EOF' || fail "the rendered flame graph is wrong"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
w, h = struct.unpack(">II", data[16:24])
assert w == 1200 and h > 100, (w, h)
EOF
else
  echo "note: rsvg-convert missing (librsvg2-bin): rendering not checked"
fi
echo "ok"
