# A C++ program using std::mutex, std::shared_mutex and std::thread runs unchanged under the
# library (same output, same status) and is profiled: its contended std::mutex and
# std::shared_mutex sites and its threads are in the report.
. "$(dirname "$0")/lib.sh"
need python3 g++

cat > "$T/cxx.cc" <<'CC'
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

static std::mutex mu;
static std::shared_mutex smu;
static long counter, shared_value;
static std::atomic<bool> writer_done;

__attribute__((noinline)) void bump_counter(int n)
{
	for (int i = 0; i < n; i++) {
		std::lock_guard<std::mutex> g(mu);
		counter++;
		std::this_thread::sleep_for(std::chrono::microseconds(200));
	}
}

__attribute__((noinline)) void write_shared(int n)
{
	for (int i = 0; i < n; i++) {
		std::unique_lock<std::shared_mutex> g(smu);
		shared_value++;
		std::this_thread::sleep_for(std::chrono::microseconds(200));
	}
	writer_done = true;
}

/* Reads for as long as the writer writes (at least n times): the reader always meets the writer
 * holding the lock, whichever thread the scheduler starts first. */
__attribute__((noinline)) long read_shared(int n)
{
	long sum = 0;
	for (int i = 0; i < n || !writer_done; i++) {
		std::shared_lock<std::shared_mutex> g(smu);
		sum += shared_value;
	}
	return sum;
}

int main()
{
	std::vector<std::thread> ts;
	for (int i = 0; i < 3; i++)
		ts.emplace_back(bump_counter, 100);
	ts.emplace_back(write_shared, 100);
	ts.emplace_back([] { read_shared(2000); });
	for (auto &t : ts)
		t.join();
	std::printf("counter %ld shared %ld\n", counter, shared_value);
	return 0;
}
CC
g++ -std=c++17 -O1 -g -o "$T/cxx" "$T/cxx.cc" -pthread || fail "cannot build the C++ program"

plain=$(timeout 20 "$T/cxx"); prc=$?
guarded_out=$(timeout 20 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports "$T/cxx" 2>"$T/err"); grc=$?
[ $prc -eq 0 ] && [ $grc -eq 0 ] || fail "exit status $grc under libguard, $prc without"
[ "$plain" = "$guarded_out" ] || fail "output differs: '$guarded_out' vs '$plain'"
[ "$plain" = "counter 300 shared 100" ] || fail "unexpected output $plain"
[ -s "$T/err" ] && fail "libguard printed: $(head -3 "$T/err")"
f=$(ls "$T"/reports/*.json | head -1)
json_ok "$f"
python3 - "$f" <<'PY' || fail "the C++ program is not profiled"
import json, sys
d = json.load(open(sys.argv[1]))
stacks = {s["id"]: [fr["fn"] or "" for fr in s["frames"]] for s in d["stacks"]}
sites = d["locks"]["contended"]
def count_in(name):
    return sum(c["count"] for c in sites if any(name in fn for fn in stacks[c["stack"]]))
print("bump_counter", count_in("bump_counter"), "write/read_shared", count_in("write_shared"), count_in("read_shared"))
print("threads", d["threads"])
assert count_in("bump_counter") >= 50, "std::mutex contention not seen"
assert count_in("write_shared") + count_in("read_shared") >= 1, "std::shared_mutex contention not seen"
assert d["threads"]["peak"] >= 2 and d["threads"]["live"] == 0 and d["threads"]["unjoined"] == []
PY
echo "ok: C++"
