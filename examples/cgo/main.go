// Command cgo links libguard into a Go program through cgo: it starts the guard with a policy,
// paces work with a libguard rate limiter from Go, leaks memory from a C function, and writes a
// report that names that C function.
//
//	make install PREFIX=$HOME/.local                     # from the repository root
//	cd examples/cgo
//	export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig
//	export CGO_LDFLAGS_ALLOW='-Wl,--(no-)?whole-archive'
//	go run .                                             # or: go run . -policy FILE -requests N
//
// The report is written to $GUARD_REPORT_DIR, else the working directory. What the guard sees
// in a Go program: only C code called through cgo and the libc calls it makes. The Go runtime
// makes its own system calls and has its own allocator and scheduler, so goroutines, the Go heap,
// Go's sockets and Go's clocks are invisible to it (see docs/linking.md).
package main

/*
#cgo pkg-config: libguard
#include <guard.h>
#include <stdlib.h>
#include "leak.h"
*/
import "C"

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

const (
	leakBlocks     = 7
	leakBlockBytes = 1000
)

// limiter wraps a guard_limiter: a lock-free token bucket that lives in libguard's own memory.
type limiter struct{ l *C.guard_limiter }

func newLimiter(ratePerSecond, burst float64) (*limiter, error) {
	l, err := C.guard_limiter_new(C.double(ratePerSecond), C.double(burst))
	if l == nil {
		return nil, fmt.Errorf("guard_limiter_new(%v, %v): %w", ratePerSecond, burst, err)
	}
	return &limiter{l}, nil
}

// take returns 0 when n tokens were taken, else how long until they would be (nothing taken).
func (l *limiter) take(n uint32) time.Duration {
	return time.Duration(C.guard_limiter_take(l.l, C.uint32_t(n)))
}

// wait blocks, in Go, until n tokens are taken; it returns how long that took.
func (l *limiter) wait(n uint32) time.Duration {
	start := time.Now()
	for {
		d := l.take(n)
		if d == 0 {
			return time.Since(start)
		}
		time.Sleep(d)
	}
}

func (l *limiter) free() { C.guard_limiter_free(l.l) }

func errnoErr(rc C.int) error { return syscall.Errno(-rc) }

func main() {
	policy := flag.String("policy", "policy.json", "libguard policy (\"\": $GUARD_POLICY or the default)")
	requests := flag.Int("requests", 20, "requests to pace through the limiter")
	flag.Parse()

	cpolicy := C.CString(*policy)
	defer C.free(unsafe.Pointer(cpolicy))
	if *policy == "" {
		cpolicy = nil
	}
	if rc := C.guard_start(cpolicy); rc != 0 {
		fmt.Fprintf(os.Stderr, "cgo: guard_start(%q): %v\n", *policy, errnoErr(rc))
		os.Exit(1)
	}
	fmt.Printf("guard started with policy %q\n", *policy)

	// 100 requests a second, 5 at once: the first five go straight through, the rest are paced
	// about 10 ms apart.
	lim, err := newLimiter(100, 5)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cgo:", err)
		os.Exit(1)
	}
	burst := lim.take(5)
	next := lim.take(1)
	fmt.Printf("limiter: take(5) waits %v, then take(1) waits %v\n", burst, next)
	start := time.Now()
	var waited time.Duration
	for i := 0; i < *requests; i++ {
		waited += lim.wait(1)
	}
	fmt.Printf("limiter: %d more requests in %v (waited %v)\n", *requests,
		time.Since(start).Round(time.Millisecond), waited.Round(time.Millisecond))
	lim.free()

	leaked := C.leak_request_cache(leakBlocks, leakBlockBytes)
	fmt.Printf("leaked %d bytes in C at leak_request_cache\n", leaked)

	// 8 MiB on the Go heap, kept live until the report is written: the Go allocator gets its
	// memory with mmap, not malloc, so the guard's heap profile does not contain it.
	goHeap := make([]byte, 8<<20)
	for i := range goHeap {
		goHeap[i] = byte(i)
	}

	var st C.struct_guard_stats
	C.guard_stats(&st)
	fmt.Printf("stats: heap_live_bytes=%d fds_open=%d threads_live=%d violations=%d\n",
		st.heap_live_bytes, st.fds_open, st.threads_live, st.violations)

	// Go exits through the exit_group system call, not libc's exit(): libguard's destructor (and
	// so its exit report) never runs in a Go program. Ask for the report explicitly.
	reason := C.CString("api")
	defer C.free(unsafe.Pointer(reason))
	if rc := C.guard_report(reason); rc != 0 {
		fmt.Fprintf(os.Stderr, "cgo: guard_report: %v\n", errnoErr(rc))
		os.Exit(1)
	}
	runtime.KeepAlive(goHeap)
	dir := os.Getenv("GUARD_REPORT_DIR")
	if dir == "" {
		dir, _ = os.Getwd()
	}
	fmt.Printf("report written to %s (cgo-%d.json with the example policy)\n", dir, os.Getpid())
}
