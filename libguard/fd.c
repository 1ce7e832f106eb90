/* The fd guard: a table of every descriptor the program holds, limits, and exhaustion handling.
 *
 * The table is an array indexed by fd, in segments that double in size (segment 0 holds fds
 * 0..1023, segment k >= 1 holds [1024 << (k-1), 1024 << k)), each mmap'd the first time an fd in
 * its range is seen and never unmapped. Lookups are bounds-checked and lock-free; growth is one
 * CAS. An entry is written by the thread that got the fd from the kernel: the kernel hands out a
 * number to one caller at a time, and close clears the entry *before* the real close(2), so a
 * number reused by another thread can never have its new entry wiped.
 *
 * The kernel also closes descriptors we never see (libc closes inside itself, through internal
 * symbols, what it opened for itself; fclose, pclose and closedir are hooked, hooks/stdio.c, but
 * fcloseall is not). A number handed out again proves the old entry gone: creating over a tracked
 * entry replaces it without counting one more open fd. What is left stale is removed by the
 * reconciliation with /proc/self/fd, which also counts fds the hooks never saw (`untracked`).
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SEG0_SHIFT 10
#define SEG_COUNT 23            /* enough for every non-negative int */
#define RECONCILE_MIN_GAP_NS (20ull * 1000000ull)
#define VIOLATION_STACK_GAP_NS (100ull * 1000000ull)

static _Atomic(struct lg_fd_entry *) segs[SEG_COUNT];
static _Atomic int high_fd = -1;            /* highest fd ever seen: bounds table scans */

_Atomic int lg_fd_tracking_var;
static _Atomic uint64_t open_count, peak_count, accepted_count;
static _Atomic uint64_t untracked_count;
static _Atomic uint64_t fd_max;             /* effective limit */
static _Atomic uint64_t warn_at;
static _Atomic int warned, warn_pending;
static _Atomic uint64_t last_reconcile_ns;
static _Atomic uint64_t last_violation_stack_ns;
static _Atomic uint32_t last_violation_stack;
static _Atomic int reserve_fd = -1;
static _Atomic int reserve_lent;
/* Descriptors open at init with FD_CLOEXEC set: no exec passed them down, so they were made in
 * this process before the program ran, by the guard itself (libunwind's validation pipe, the
 * clock guard's timerfd) or by the loader's constructors. Not the program's: never counted. */
#define OWN_MAX 16
static _Atomic int own_fds[OWN_MAX];
static _Atomic int nown, own_max = -1;

static uint32_t violation_stack(unsigned skip);

static bool own(int fd)
{
	if (LG_LIKELY(fd > atomic_load_explicit(&own_max, memory_order_relaxed)))
		return false;
	int n = atomic_load_explicit(&nown, memory_order_relaxed);
	for (int i = 0; i < n; i++) {
		if (atomic_load_explicit(&own_fds[i], memory_order_relaxed) == fd)
			return true;
	}
	return false;
}

/* The program got this number: whatever of ours had it was closed. */
static void disown(int fd)
{
	int n = atomic_load_explicit(&nown, memory_order_relaxed);
	for (int i = 0; i < n; i++) {
		int expected = fd;
		atomic_compare_exchange_strong(&own_fds[i], &expected, -1);
	}
}

/* ---------------------------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------------------------- */

static inline int seg_of(unsigned fd, unsigned *idx, size_t *len)
{
	if (fd < (1u << SEG0_SHIFT)) {
		*idx = fd;
		*len = 1u << SEG0_SHIFT;
		return 0;
	}
	int b = 31 - __builtin_clz(fd);         /* floor(log2(fd)) >= SEG0_SHIFT */
	*idx = fd - (1u << b);
	*len = (size_t)1 << b;
	return b - SEG0_SHIFT + 1;
}

static struct lg_fd_entry *seg_alloc(int k, size_t len)
{
	size_t bytes = len * sizeof(struct lg_fd_entry);
	/* NORESERVE: a segment for a few high fds is mostly never touched. */
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	struct lg_fd_entry *fresh = p;   /* zero pages: every entry untracked, in no epoll set */
	struct lg_fd_entry *expected = NULL;
	if (!atomic_compare_exchange_strong(&segs[k], &expected, fresh)) {
		munmap(p, bytes);       /* another thread grew it first */
		return expected;
	}
	lg_mem_register_table(p, bytes);
	return fresh;
}

/* The pages of the table in which an entry was ever written, for fds below POPULATED_FDS (above,
 * every page counts as written). Numbered as if the segments were one array: each segment starts
 * on a page boundary of it (1024 entries of a multiple of 4 bytes), so fd's page is
 * fd * sizeof(entry) / 4096. A reader never looks at an entry of another page: reading a page
 * never written maps the kernel's zero page, which mincore, and so guard.self_bytes, would count
 * as the guard's (the scans read every entry up to the highest fd, and one inherited fd 251 made
 * three such pages). */
#define POPULATED_FDS (1u << 20)
_Static_assert((1024 * sizeof(struct lg_fd_entry)) % 4096 == 0, "segments start on a page");
static _Atomic uint64_t populated[(POPULATED_FDS * sizeof(struct lg_fd_entry) / 4096 + 63) / 64];

static inline size_t fd_page(unsigned fd)
{
	return ((size_t)fd * sizeof(struct lg_fd_entry)) >> 12;
}

/* The entry for fd, or NULL: a negative fd, a segment that cannot be had, or (without grow) an
 * entry of a page never written, whose entries are all zero (untracked). grow: map the segment
 * and mark the page, for a writer. */
struct lg_fd_entry *lg_fd_entry(int fd, bool grow)
{
	unsigned idx;
	size_t len;

	if (fd < 0)
		return NULL;
	if ((unsigned)fd < POPULATED_FDS) {
		size_t page = fd_page((unsigned)fd);
		uint64_t bit = 1ull << (page % 64);
		if (!(atomic_load_explicit(&populated[page / 64], memory_order_acquire) & bit)) {
			if (!grow)
				return NULL;
			atomic_fetch_or_explicit(&populated[page / 64], bit, memory_order_release);
		}
	}
	int k = seg_of((unsigned)fd, &idx, &len);
	struct lg_fd_entry *seg = atomic_load_explicit(&segs[k], memory_order_acquire);
	if (LG_UNLIKELY(!seg)) {
		if (!grow || !(seg = seg_alloc(k, len)))
			return NULL;
	}
	return &seg[idx];
}

int lg_fd_high(void) { return atomic_load_explicit(&high_fd, memory_order_relaxed); }

static void note_high(int fd)
{
	int h = atomic_load_explicit(&high_fd, memory_order_relaxed);
	while (fd > h && !atomic_compare_exchange_weak(&high_fd, &h, fd))
		;
}

static void fd_tick(uint64_t now);

static void count_open(void)
{
	uint64_t n = atomic_fetch_add_explicit(&open_count, 1, memory_order_relaxed) + 1;
	uint64_t p = atomic_load_explicit(&peak_count, memory_order_relaxed);

	while (n > p && !atomic_compare_exchange_weak(&peak_count, &p, n))
		;
	if (LG_UNLIKELY(n >= atomic_load_explicit(&warn_at, memory_order_relaxed)) &&
	    !atomic_load_explicit(&warned, memory_order_relaxed) && !atomic_exchange(&warned, 1)) {
		/* Naming sites needs the symbolizer, which is for report time: the guardian does it. */
		atomic_store(&warn_pending, 1);
		lg_guardian_soon(fd_tick);
	}
}

/* An entry goes away (closed, or replaced by a new fd of that number). */
static void forget(uint32_t old_info)
{
	if (old_info & (LG_FDF_ACCEPTED << 8))
		atomic_fetch_sub_explicit(&accepted_count, 1, memory_order_relaxed);
}

uint64_t lg_fd_open_count(void) { return atomic_load_explicit(&open_count, memory_order_relaxed); }
uint64_t lg_fd_accepted_count(void) { return atomic_load_explicit(&accepted_count, memory_order_relaxed); }
uint64_t lg_fd_max(void) { return atomic_load_explicit(&fd_max, memory_order_relaxed); }

/* ---------------------------------------------------------------------------------------------
 * Accounting
 * ------------------------------------------------------------------------------------------- */

void lg_fd_on_create(int fd, int kind, unsigned flags, unsigned skip)
{
	struct lg_fd_entry *e = lg_fd_entry(fd, true);

	if (!e)
		return;
	if (LG_UNLIKELY(fd <= atomic_load_explicit(&own_max, memory_order_relaxed)))
		disown(fd);
	note_high(fd);
	uint32_t stack = 0;
	if (lg_policy.fd.stacks && lg_policy.fd.enabled)
		stack = lg_stack_capture(skip + 1);
	atomic_store_explicit(&e->stack, stack, memory_order_relaxed);
	atomic_store_explicit(&e->created_ns, lg_now_ns(), memory_order_relaxed);
	atomic_store_explicit(&e->site2, 0, memory_order_relaxed);
	atomic_store_explicit(&e->ep_fd1, 0, memory_order_relaxed);
	atomic_store_explicit(&e->port, 0, memory_order_relaxed);
	uint32_t info = LG_FD_TRACKED | ((uint32_t)flags << 8) | (uint32_t)kind;
	uint32_t old = atomic_exchange_explicit(&e->info, info, memory_order_release);
	if (old)
		forget(old);    /* the old fd of this number was closed behind our back */
	else
		count_open();
	if (flags & LG_FDF_ACCEPTED)
		atomic_fetch_add_explicit(&accepted_count, 1, memory_order_relaxed);
	if (LG_UNLIKELY(lg_fd_over(0)) && lg_policy.fd.enabled && lg_fd_would_exceed(0)) {
		/* Beyond fd.max: observe mode and on_max "report" let it be, and say so. */
		lg_enter();
		lg_violation("fd.max", violation_stack(skip + 1));
		lg_leave();
		if (lg_enforcing() && lg_policy.fd.on_max == LG_ON_MAX_ABORT)
			lg_fd_abort();
	}
}

/* Before the real close: clear the entry first, so that a number the kernel hands out again
 * the moment close returns is recorded by its new owner, never wiped by us. */
void lg_fd_on_close(int fd)
{
	struct lg_fd_entry *e = lg_fd_entry(fd, false);

	if (!e)
		return;
	if (atomic_load_explicit(&e->held_until_ns, memory_order_relaxed))
		lg_fd_unhold(fd, false);
	atomic_store_explicit(&e->ep_fd1, 0, memory_order_relaxed);
	uint32_t old = atomic_exchange_explicit(&e->info, 0, memory_order_acq_rel);
	if (!old)
		return;
	forget(old);
	atomic_fetch_sub_explicit(&open_count, 1, memory_order_relaxed);
	if (LG_UNLIKELY(atomic_load_explicit(&lg_fd_nheld, memory_order_relaxed)))
		lg_fd_release_exhausted();
}

void lg_fd_on_close_range(unsigned first, unsigned last, int flags)
{
	/* CLOSE_RANGE_CLOEXEC only marks them; CLOSE_RANGE_UNSHARE still closes. */
	if (flags & 4 /* CLOSE_RANGE_CLOEXEC */)
		return;
	int h = lg_fd_high();
	if (h < 0 || first > (unsigned)h)
		return;
	if (last > (unsigned)h)
		last = (unsigned)h;
	for (unsigned fd = first; fd <= last; fd++) {
		if (!lg_fd_guard_owns((int)fd))
			lg_fd_on_close((int)fd);
	}
}

unsigned lg_fd_flags(int fd)
{
	struct lg_fd_entry *e = lg_fd_entry(fd, false);

	return e ? (atomic_load_explicit(&e->info, memory_order_relaxed) >> 8) & 0xffu : 0;
}

void lg_fd_set_flags(int fd, unsigned set, unsigned clear)
{
	struct lg_fd_entry *e = lg_fd_entry(fd, false);

	if (!e)
		return;
	uint32_t cur = atomic_load_explicit(&e->info, memory_order_relaxed);
	uint32_t want;
	do {
		if (!cur)
			return;         /* not tracked: nothing to flag */
		want = (cur & ~((uint32_t)clear << 8)) | ((uint32_t)set << 8);
	} while (!atomic_compare_exchange_weak(&e->info, &cur, want));
	if ((set & LG_FDF_ACCEPTED) && !(cur & (LG_FDF_ACCEPTED << 8)))
		atomic_fetch_add_explicit(&accepted_count, 1, memory_order_relaxed);
	if ((clear & LG_FDF_ACCEPTED) && (cur & (LG_FDF_ACCEPTED << 8)))
		atomic_fetch_sub_explicit(&accepted_count, 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------------------------- */

static void set_max(uint64_t max)
{
	atomic_store(&fd_max, max);
	double w = (double)max * lg_policy.fd.warn_ratio;
	atomic_store(&warn_at, w >= 1.0 && w < 1.8e19 ? (uint64_t)w : (max ? max : UINT64_MAX));
}

static uint64_t nofile_soft(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return UINT64_MAX;
	return (uint64_t)rl.rlim_cur;
}

static void reserve_replace(void);

void lg_fd_on_rlimit(int resource)
{
	if (resource != RLIMIT_NOFILE)
		return;
	if (lg_policy.fd.max == 0)
		set_max(nofile_soft());
	/* The kernel hands out numbers below the soft limit only: a reserve at or above a lowered
	 * limit frees nothing when closed. Open it again while the program still has room. */
	int fd = atomic_load(&reserve_fd);
	if (fd >= 0 && (uint64_t)fd >= nofile_soft())
		reserve_replace();
}

/* skip: guard frames between violation_stack's caller and the program. noinline: the count of
 * frames must not change with inlining. */
static __attribute__((noinline)) uint32_t violation_stack(unsigned skip)
{
	/* A program spinning on a refused call must not pay an unwind each time: one stack per
	 * 100 ms, the count goes to the last one. */
	uint64_t now = lg_now_ns();
	uint64_t last = atomic_load_explicit(&last_violation_stack_ns, memory_order_relaxed);
	if (last && now - last < VIOLATION_STACK_GAP_NS)
		return atomic_load_explicit(&last_violation_stack, memory_order_relaxed);
	atomic_store_explicit(&last_violation_stack_ns, now, memory_order_relaxed);
	uint32_t id = lg_stack_capture(skip + 1);
	atomic_store_explicit(&last_violation_stack, id, memory_order_relaxed);
	return id;
}

bool lg_fd_over(unsigned n)
{
	uint64_t used = atomic_load_explicit(&open_count, memory_order_relaxed) +
			atomic_load_explicit(&untracked_count, memory_order_relaxed);
	return used + n > atomic_load_explicit(&fd_max, memory_order_relaxed);
}

bool lg_fd_would_exceed(unsigned n)
{
	if (LG_LIKELY(!lg_fd_over(n)))
		return false;
	/* Stale entries (fds closed inside libc) may be what fills the count: look before
	 * refusing. Rate-limited, so a refused loop does not read /proc on every call. */
	uint64_t now = lg_now_ns();
	uint64_t last = atomic_load_explicit(&last_reconcile_ns, memory_order_relaxed);
	if (now - last >= RECONCILE_MIN_GAP_NS &&
	    atomic_compare_exchange_strong(&last_reconcile_ns, &last, now))
		lg_fd_reconcile();
	return lg_fd_over(n);
}

int lg_fd_admit(unsigned n, unsigned skip)
{
	if (LG_LIKELY(!lg_fd_over(n)) || !lg_policy.fd.enabled)
		return 0;
	if (!lg_fd_would_exceed(n))
		return 0;
	if (!lg_enforcing() || lg_policy.fd.on_max == LG_ON_MAX_REPORT)
		return 0;       /* recorded after the call, by lg_fd_after_create */
	lg_enter();
	lg_violation("fd.max", violation_stack(skip + 1));
	lg_leave();
	if (lg_policy.fd.on_max == LG_ON_MAX_ABORT)
		lg_fd_abort();
	return -EMFILE;
}

void lg_fd_after_create(int rc, int err, unsigned skip)
{
	/* The kernel's own EMFILE/ENFILE: the limit that fd.max 0 stands for was reached. */
	if (!lg_policy.fd.enabled || rc >= 0 || (err != EMFILE && err != ENFILE))
		return;
	lg_enter();
	lg_violation("fd.max", violation_stack(skip + 1));
	lg_leave();
	if (lg_enforcing() && lg_policy.fd.on_max == LG_ON_MAX_ABORT)
		lg_fd_abort();
}

void lg_fd_abort(void)
{
	lg_error("fd.max reached (%llu open): aborting as the policy's fd.on_max asks",
		 (unsigned long long)lg_fd_open_count());
	lg_report_write("exit");
	abort();
}

/* ---------------------------------------------------------------------------------------------
 * The reserve descriptor: when the kernel has no fd left, closing it lets one pending connection
 * be accepted and reset, so a listener that cannot be served does not stay readable forever.
 * ------------------------------------------------------------------------------------------- */

static void reserve_open(void)
{
	if (atomic_load(&reserve_fd) >= 0 || !lg_enforcing())
		return;
	int fd = lg_fd_move_high((int)syscall(SYS_openat, AT_FDCWD, "/dev/null",
					      O_RDONLY | O_CLOEXEC));
	int none = -1;
	if (fd >= 0 && !atomic_compare_exchange_strong(&reserve_fd, &none, fd))
		syscall(SYS_close, fd);   /* another thread restored it first */
}

bool lg_fd_is_reserve(int fd)
{
	return fd >= 0 && fd == atomic_load_explicit(&reserve_fd, memory_order_relaxed);
}

/* The program dup2()s onto the reserve's number: the kernel closes it for us, and the number
 * becomes the program's, which we must then never close. */
void lg_fd_reserve_disown(int fd)
{
	int expected = fd;

	if (fd >= 0)
		atomic_compare_exchange_strong(&reserve_fd, &expected, -1);
}

/* Give the reserve up for one accept (or a report); true if there was one. */
bool lg_fd_reserve_release(void)
{
	int fd = atomic_exchange(&reserve_fd, -1);
	if (fd < 0)
		return false;
	syscall(SYS_close, fd);
	return true;
}

void lg_fd_reserve_restore(void)
{
	reserve_open();
}

static void reserve_replace(void)
{
	if (lg_fd_reserve_release())
		reserve_open();
}

/* ---------------------------------------------------------------------------------------------
 * Reconciliation with /proc/self/fd: raw syscalls and a stack buffer (no allocation, no hook).
 * ------------------------------------------------------------------------------------------- */

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static bool ours(int fd, int dirfd)
{
	return fd == dirfd || fd == reserve_fd || lg_guardian_owns_fd(fd) || own(fd);
}

void lg_fd_guard_yield(int fd)
{
	if (fd < 0)
		return;
	lg_guardian_yield_fd(fd);
	lg_fd_reserve_disown(fd);
	if (own(fd)) {
		/* Made at init by someone of ours (libunwind's validation pipe, the clock's timerfd,
		 * which checks itself before each use). Whoever it was cannot be told the new number:
		 * a pipe is libunwind's, and unwinding must stop using it. */
		struct stat st;
		if (syscall(SYS_fstat, fd, &st) == 0 && S_ISFIFO(st.st_mode))
			lg_stack_disable();
		disown(fd);
	}
}

bool lg_fd_guard_owns(int fd)
{
	return fd >= 0 && ours(fd, -1);
}

/* Calls fn(fd) for each open fd except ours; returns the number of fds or -errno. */
static int each_open_fd(void (*fn)(int fd, void *arg), void *arg)
{
	char buf[4096];
	int dirfd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/fd",
				 O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int count = 0;

	if (dirfd < 0)
		return -errno;
	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(void *)(buf + off);
			off += d->d_reclen;
			if (d->d_name[0] < '0' || d->d_name[0] > '9')
				continue;
			int fd = atoi(d->d_name);
			if (ours(fd, dirfd))
				continue;
			count++;
			fn(fd, arg);
		}
	}
	syscall(SYS_close, dirfd);
	return count;
}

struct scan {
	uint64_t *bits;          /* open fds, one bit each, up to nbits */
	int nbits;
	uint64_t untracked;
};

static void scan_one(int fd, void *arg)
{
	struct scan *s = arg;
	struct lg_fd_entry *e = lg_fd_entry(fd, false);

	if (fd < s->nbits)
		s->bits[fd / 64] |= 1ull << (fd % 64);
	if (!e || !atomic_load_explicit(&e->info, memory_order_acquire))
		s->untracked++;
}

void lg_fd_reconcile(void)
{
	static uint64_t bits[(1 << 16) / 64];  /* fds below 65536: the common case */
	static _Atomic int busy;
	struct scan s = { .bits = bits, .nbits = 1 << 16 };

	if (atomic_exchange(&busy, 1))
		return;         /* one scan at a time is enough */
	lg_enter();
	int saved = errno;
	uint64_t start = lg_now_ns();
	memset(bits, 0, sizeof(bits));
	if (each_open_fd(scan_one, &s) >= 0) {
		/* Tracked but not open, and older than the scan: closed where no hook saw it. */
		int h = lg_fd_high();
		for (int fd = 0; fd <= h && fd < s.nbits; fd++) {
			if (bits[fd / 64] & (1ull << (fd % 64)))
				continue;
			struct lg_fd_entry *e = lg_fd_entry(fd, false);
			if (!e || !atomic_load_explicit(&e->info, memory_order_relaxed) ||
			    atomic_load_explicit(&e->created_ns, memory_order_relaxed) >= start)
				continue;
			uint32_t old = atomic_load_explicit(&e->info, memory_order_relaxed);
			if (old && atomic_compare_exchange_strong(&e->info, &old, 0)) {
				forget(old);
				atomic_fetch_sub_explicit(&open_count, 1, memory_order_relaxed);
			}
		}
		atomic_store_explicit(&untracked_count, s.untracked, memory_order_relaxed);
	}
	errno = saved;
	lg_leave();
	atomic_store(&busy, 0);
}

static void adopt_one(int fd, void *arg)
{
	struct stat st;
	int kind = LG_FD_OTHER;

	(void)arg;
	int fdflags = (int)syscall(SYS_fcntl, fd, F_GETFD);
	if (fdflags >= 0 && (fdflags & FD_CLOEXEC)) {
		int n = atomic_load(&nown);
		if (n < OWN_MAX) {
			atomic_store(&own_fds[n], fd);
			atomic_store(&nown, n + 1);
			if (fd > atomic_load(&own_max))
				atomic_store(&own_max, fd);
			return;
		}
	}
	if (fstat(fd, &st) == 0) {
		if (S_ISSOCK(st.st_mode))
			kind = LG_FD_SOCKET;
		else if (S_ISFIFO(st.st_mode))
			kind = LG_FD_PIPE;
		else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISCHR(st.st_mode) ||
			 S_ISBLK(st.st_mode))
			kind = LG_FD_FILE;
	}
	struct lg_fd_entry *e = lg_fd_entry(fd, true);
	if (!e)
		return;
	note_high(fd);
	atomic_store(&e->created_ns, lg_now_ns());
	uint32_t old = atomic_exchange(&e->info, LG_FD_TRACKED | (LG_FDF_INHERITED << 8) | (uint32_t)kind);
	if (!old)
		count_open();
}

/* ---------------------------------------------------------------------------------------------
 * Guardian work: the one warning, periodic reconciliation, overdue holds
 * ------------------------------------------------------------------------------------------- */

struct site_acc {
	uint32_t stack;
	uint64_t count;
	uint64_t kinds[LG_FD_KIND_COUNT];
	uint64_t oldest_ns;
};

/* Group open fds by creation stack into acc (capacity cap, open addressing on stack). */
static size_t group_sites(struct site_acc *acc, size_t cap, bool with_unstacked)
{
	size_t n = 0;
	int h = lg_fd_high();

	for (int fd = 0; fd <= h; fd++) {
		struct lg_fd_entry *e = lg_fd_entry(fd, false);
		if (!e)
			continue;
		uint32_t info = atomic_load_explicit(&e->info, memory_order_acquire);
		if (!info || (info & (LG_FDF_INHERITED << 8)))
			continue;
		uint32_t stack = atomic_load_explicit(&e->stack, memory_order_relaxed);
		if (!stack && !with_unstacked)
			continue;
		size_t i = (stack * 2654435761u) % cap, probes = 0;
		while (acc[i].count && acc[i].stack != stack && probes++ < cap)
			i = (i + 1) % cap;
		if (probes >= cap)
			break;
		if (!acc[i].count) {
			acc[i].stack = stack;
			acc[i].oldest_ns = UINT64_MAX;
			n++;
		}
		acc[i].count++;
		unsigned kind = info & 0xffu;
		acc[i].kinds[kind < LG_FD_KIND_COUNT ? kind : LG_FD_OTHER]++;
		uint64_t c = atomic_load_explicit(&e->created_ns, memory_order_relaxed);
		if (c < acc[i].oldest_ns)
			acc[i].oldest_ns = c;
		if (n * 4 >= cap * 3)
			break;  /* full enough: the biggest sites are already in */
	}
	return n;
}

static int cmp_site_desc(const void *a, const void *b)
{
	const struct site_acc *x = a, *y = b;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return x->stack < y->stack ? -1 : x->stack > y->stack;
}

static size_t compact_sorted(struct site_acc *acc, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < cap; i++) {
		if (acc[i].count)
			acc[n++] = acc[i];
	}
	qsort(acc, n, sizeof(*acc), cmp_site_desc);
	return n;
}

/* The innermost frame of a stack that lies in the main program, else the innermost named one. */
static void name_site(uint32_t stack, char *out, size_t len)
{
	const uintptr_t *frames;
	uint32_t nf = lg_stack_frames(stack, &frames);
	const char *exe = lg_exe_path();
	struct lg_symbol first = { 0 };

	snprintf(out, len, "stack %u", stack);
	for (uint32_t i = 0; i < nf; i++) {
		struct lg_symbol sym = { 0 };
		if (lg_symbolize(frames[i] - 1, &sym) != 0 || !sym.fn)
			continue;
		if (!first.fn)
			first = sym;
		if (sym.module && strcmp(sym.module, exe) == 0) {
			first = sym;
			break;
		}
	}
	if (first.fn)
		snprintf(out, len, "%s", first.fn);
}

static void warn_top_sites(void)
{
	enum { CAP = 256 };
	struct site_acc *acc = lg_mem_calloc(CAP, sizeof(*acc));
	char msg[512] = "", name[128];
	size_t used = 0;

	if (acc) {
		size_t n = compact_sorted(acc, (group_sites(acc, CAP, false), CAP));
		for (size_t i = 0; i < n && i < 3; i++) {
			name_site(acc[i].stack, name, sizeof(name));
			int k = snprintf(msg + used, sizeof(msg) - used, "%s%s (%llu)", i ? ", " : "",
					 name, (unsigned long long)acc[i].count);
			if (k > 0 && (size_t)k < sizeof(msg) - used)
				used += (size_t)k;
		}
		lg_mem_free(acc);
	}
	lg_warn("%llu of %llu fds open (fd.warn_ratio %.2f); top sites: %s; raise fd.max or find the "
		"leak in the report", (unsigned long long)lg_fd_open_count(),
		(unsigned long long)lg_fd_max(), lg_policy.fd.warn_ratio,
		used ? msg : "unknown (fd.stacks is off)");
}

static void fd_tick(uint64_t now)
{
	(void)now;
	/* Whatever took the reserve (a shed accept, a report) and could not open it again because
	 * the program held every fd: try again. */
	reserve_open();
	lg_fd_reconcile();
	if (atomic_exchange(&warn_pending, 0))
		warn_top_sites();
}

/* The report that borrowed the reserve is written: take it back. */
static void fd_report_done(void)
{
	if (atomic_exchange(&reserve_lent, 0))
		reserve_open();
}

static void hold_tick(uint64_t now)
{
	if (atomic_load_explicit(&lg_fd_nheld, memory_order_relaxed))
		lg_fd_release_due(now);
}

/* ---------------------------------------------------------------------------------------------
 * Report
 * ------------------------------------------------------------------------------------------- */

static int fd_snapshot(struct lg_snapshot *s)
{
	if (!lg_policy.fd.enabled)
		return 0;
	/* The report file needs an fd, and a program that ran out has none: lend it the reserve
	 * (the guardian opens it again). */
	if (lg_fd_reserve_release())
		atomic_store(&reserve_lent, 1);
	lg_fd_reconcile();
	s->fd.present = true;
	s->fd.max = lg_fd_max() == UINT64_MAX ? 0 : lg_fd_max();
	s->fd.open = lg_fd_open_count();
	s->fd.peak = atomic_load(&peak_count);
	s->fd.untracked = atomic_load(&untracked_count);

	/* Sized to what is open (a report is written by every forked child at exit: zeroing a large
	 * table there costs page faults for nothing). */
	size_t cap = 16;
	while (cap < 2 * (lg_fd_open_count() + 1) && cap < 1024)
		cap <<= 1;
	struct site_acc *acc = lg_mem_calloc(cap, sizeof(*acc));
	if (!acc)
		return -ENOMEM;
	size_t n = compact_sorted(acc, (group_sites(acc, cap, !lg_policy.fd.stacks), cap));
	s->fd.sites = lg_snapshot_alloc(s, sizeof(*s->fd.sites) * (n ? n : 1));
	uint64_t now = lg_now_ns();
	for (size_t i = 0; s->fd.sites && i < n; i++) {
		struct lg_snap_fd_site *site = &s->fd.sites[s->fd.nsites++];
		site->stack = acc[i].stack;
		site->count = acc[i].count;
		memcpy(site->kinds, acc[i].kinds, sizeof(site->kinds));
		site->oldest_ms = now > acc[i].oldest_ns ? (now - acc[i].oldest_ns) / 1000000ull : 0;
	}
	lg_mem_free(acc);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */

static bool net_configured(void)
{
	return lg_policy.net.connect_timeout_ms || lg_policy.net.read_timeout_ms ||
	       lg_policy.net.write_timeout_ms || lg_policy.net.idle_timeout_ms ||
	       lg_policy.net.max_connections || lg_policy.nlimits;
}

static void fd_init(void)
{
	if (!lg_policy.fd.enabled && !net_configured())
		return;
	set_max(lg_policy.fd.max ? lg_policy.fd.max : nofile_soft());
	lg_fd_holds_init();
	reserve_open();
	each_open_fd(adopt_one, NULL);
	atomic_store(&peak_count, atomic_load(&open_count));
	if (lg_policy.fd.enabled)
		lg_guardian_every("fd", 2000, fd_tick);
	if (lg_enforcing())
		lg_guardian_every("fd-holds", 100, hold_tick);
	atomic_store_explicit(&lg_fd_tracking_var, 1, memory_order_release);
}

static void fd_atfork_child(void)
{
	/* The table describes the child's fds too (fork copies them); holds and counters do not
	 * carry over: the child has no hold of its own, and reports its own peak. */
	lg_fd_holds_atfork_child();
	atomic_store(&peak_count, atomic_load(&open_count));
	atomic_store(&warned, 0);
	atomic_store(&warn_pending, 0);
}

/* Late: the other guards' own descriptors exist by then, and are told apart (see own_fds). */
LG_GUARD(fd, .order = 90, .init = fd_init, .atfork_child = fd_atfork_child,
	 .snapshot = fd_snapshot, .report_done = fd_report_done);
