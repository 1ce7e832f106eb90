/* The connection guard: accept and connect under limits, timeouts the program never set, idle
 * connections reaped, connection caps.
 *
 * It keeps no table of its own: the flags of the fd guard's table say which sockets are
 * listeners, accepted or connected, and whether the program set its own socket timeouts.
 *
 * Shedding a connection is accept + SO_LINGER 0 + close: the client gets a RST at once instead of
 * waiting in a backlog, and the listener stops being readable once the backlog is drained, so an
 * event loop is never left spinning on a connection it cannot take.
 *
 * Holding back a listener: when an accept cannot be served (no fd left, or a rate limiter says
 * "not yet"), a listener registered in epoll is modified to wait for no event (EPOLL_CTL_MOD,
 * events 0), so a level-triggered loop is not woken again and again for a connection it cannot
 * take. The hold is released (EPOLL_CTL_MOD back to the program's events) when an fd is closed,
 * when its time is up (epoll_wait shortens its own timeout to the earliest release) or by the
 * guardian. EPOLL_CTL_MOD re-evaluates readiness (ep_modify() queues the item when the file is
 * ready), so an edge-triggered registration gets its event again: no stall.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * Events by site, for the report
 * ------------------------------------------------------------------------------------------- */

enum net_event { EV_CONNECT_TIMEOUT = 0, EV_IDLE_SHUTDOWN, EV_SHED, EV_COUNT };
static const char *const event_names[EV_COUNT] = { "connect_timeout", "idle_shutdown", "shed" };

#define NET_SITES 256
#define HOLD_MAX 64

struct net_site {
	_Atomic uint32_t stack;
	_Atomic int event;
	_Atomic uint64_t count;
};

static struct net_site sites[NET_SITES];
static _Atomic int nsites;
static _Atomic int site_lock;
static _Atomic uint64_t totals[EV_COUNT];

static void record(enum net_event ev, uint32_t stack)
{
	atomic_fetch_add_explicit(&totals[ev], 1, memory_order_relaxed);
	int n = atomic_load_explicit(&nsites, memory_order_acquire);
	for (int i = 0; i < n; i++) {
		if (atomic_load_explicit(&sites[i].stack, memory_order_relaxed) == stack &&
		    atomic_load_explicit(&sites[i].event, memory_order_relaxed) == (int)ev) {
			atomic_fetch_add_explicit(&sites[i].count, 1, memory_order_relaxed);
			return;
		}
	}
	/* A new site: rare, a short spin (no pthread lock inside hooks). */
	while (atomic_exchange_explicit(&site_lock, 1, memory_order_acquire))
		;
	n = atomic_load_explicit(&nsites, memory_order_relaxed);
	int i;
	for (i = 0; i < n; i++) {
		if (atomic_load(&sites[i].stack) == stack && atomic_load(&sites[i].event) == (int)ev)
			break;
	}
	if (i == n && n < NET_SITES) {
		atomic_store(&sites[i].stack, stack);
		atomic_store(&sites[i].event, (int)ev);
		atomic_store(&sites[i].count, 0);
		atomic_store_explicit(&nsites, n + 1, memory_order_release);
	}
	if (i < NET_SITES)
		atomic_fetch_add_explicit(&sites[i].count, 1, memory_order_relaxed);
	atomic_store_explicit(&site_lock, 0, memory_order_release);
}

static uint32_t site_of(int fd)
{
	struct lg_fd_entry *e = lg_fd_entry(fd, false);
	return e ? atomic_load_explicit(&e->stack, memory_order_relaxed) : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers over the real functions (never our hooks)
 * ------------------------------------------------------------------------------------------- */

static bool is_blocking(int fd)
{
	int fl = LG_REAL(fcntl)(fd, F_GETFL);
	return fl >= 0 && !(fl & O_NONBLOCK);
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };
	/* A signal cuts the sleep short; the caller asks the limiter again, which is correct. */
	nanosleep(&ts, NULL);
}

/* Close with a reset (linger 0): the peer sees RST at once, and no TIME_WAIT is left. */
static void close_with_reset(int fd)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
	LG_REAL(close)(fd);
}

/* Reset and close a connection we accepted for the program but will not give it. */
static void reset_close(int fd)
{
	lg_fd_on_close(fd);
	close_with_reset(fd);
}

static void set_timeouts(int fd)
{
	unsigned flags = lg_fd_flags(fd);
	uint32_t r = lg_policy.net.read_timeout_ms, w = lg_policy.net.write_timeout_ms;

	if (!lg_enforcing())
		return;
	if (r && !(flags & LG_FDF_USER_RCVTIMEO)) {
		struct timeval tv = { .tv_sec = r / 1000, .tv_usec = (r % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	if (w && !(flags & LG_FDF_USER_SNDTIMEO)) {
		struct timeval tv = { .tv_sec = w / 1000, .tv_usec = (w % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
}

/* ---------------------------------------------------------------------------------------------
 * listen / setsockopt bookkeeping
 * ------------------------------------------------------------------------------------------- */

void lg_net_on_listen(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int port = 0, saved = errno;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	errno = saved;
	struct lg_fd_entry *e = lg_fd_entry(fd, false);
	if (e)
		atomic_store_explicit(&e->port, (uint32_t)port, memory_order_relaxed);
	lg_fd_set_flags(fd, LG_FDF_LISTEN, 0);
}

void lg_net_on_setsockopt(int fd, int level, int name)
{
	/* The program's own timeout stands: ours is never applied over it, and never re-applied. */
	if (level == SOL_SOCKET && name == SO_RCVTIMEO)
		lg_fd_set_flags(fd, LG_FDF_USER_RCVTIMEO, 0);
	else if (level == SOL_SOCKET && name == SO_SNDTIMEO)
		lg_fd_set_flags(fd, LG_FDF_USER_SNDTIMEO, 0);
}

/* ---------------------------------------------------------------------------------------------
 * accept
 * ------------------------------------------------------------------------------------------- */

/* Accept one pending connection and reset it; returns >= 0 when one was shed, else -1 with
 * *err set. */
static int shed_one(int lfd, bool blocking, int *err)
{
	int fd = LG_REAL(accept4)(lfd, NULL, NULL, SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK));
	if (fd < 0) {
		*err = errno;
		return -1;
	}
	close_with_reset(fd);   /* never the program's: accepted here, not recorded */
	return fd;
}

/* No fd for the connection (fd.max, or the kernel's EMFILE/ENFILE). Returns 1 when the caller
 * should accept again (a blocking listener after a shed), else -1 with errno set. */
static __attribute__((noinline)) int exhausted(int lfd, bool kernel, int kernel_errno, int *blocking)
{
	if (*blocking < 0)
		*blocking = is_blocking(lfd);
	/* A non-blocking listener in epoll waits for a free fd (released by close) or 200 ms. */
	if (!*blocking && lg_fd_hold(lfd, lg_now_ns() + 200000000ull, LG_HOLD_FD) == 0) {
		errno = EAGAIN;
		return -1;
	}
	/* Otherwise shed one pending connection so the listener does not stay readable: with the
	 * reserve fd when the kernel has none left (fd.max can refuse while the kernel has room, or
	 * the other way round: the kernel says which). */
	bool reserve = kernel && lg_fd_reserve_release();
	int err = kernel_errno, fd = -1;
	if (!kernel || reserve) {
		fd = shed_one(lfd, *blocking, &err);
		if (fd < 0 && !reserve && (err == EMFILE || err == ENFILE) &&
		    (reserve = lg_fd_reserve_release()))
			fd = shed_one(lfd, *blocking, &err);
		if (reserve)
			lg_fd_reserve_restore();
	}
	if (fd >= 0) {
		record(EV_SHED, lg_stack_capture(3));
		if (*blocking)
			return 1;
		errno = EAGAIN;
		return -1;
	}
	/* Nothing could be shed for want of an fd: a blocking caller would come straight back, so
	 * at least do not let it spin. */
	if (*blocking && (err == EMFILE || err == ENFILE))
		sleep_ns(50000000ull);
	errno = err;
	return -1;
}

int lg_net_accept(int lfd, struct sockaddr *addr, socklen_t *len, int flags)
{
	struct lg_fd_entry *le = lg_fd_entry(lfd, false);
	int port = le ? (int)atomic_load_explicit(&le->port, memory_order_relaxed) : 0;
	int blocking = -1;     /* -1: not asked yet (a syscall, only on slow paths) */
	bool uses_limits = lg_policy.nlimits > 0;

	for (;;) {
		uint64_t wait_ns = 0;
		int rule = -1;

		if (uses_limits &&
		    lg_limit_before_accept(lfd, port, &wait_ns, &rule) == LG_WAIT) {
			if (blocking < 0)
				blocking = is_blocking(lfd);
			if (blocking) {
				uint64_t t0 = lg_now_ns();
				sleep_ns(wait_ns);
				lg_limit_waited(rule, lg_now_ns() - t0);
				continue;
			}
			lg_fd_hold(lfd, lg_now_ns() + wait_ns, LG_HOLD_LIMIT);
			errno = EAGAIN;
			return -1;
		}
		if (lg_policy.fd.enabled && lg_enforcing() && lg_policy.fd.on_max != LG_ON_MAX_REPORT &&
		    lg_fd_would_exceed(1)) {
			lg_violation("fd.max", lg_stack_capture(2));
			if (lg_policy.fd.on_max == LG_ON_MAX_ABORT)
				lg_fd_abort();
			if (exhausted(lfd, false, EMFILE, &blocking) > 0)
				continue;
			return -1;
		}
		int fd = LG_REAL(accept4)(lfd, addr, len, flags);
		if (fd < 0) {
			int err = errno;
			if ((err == EMFILE || err == ENFILE) && lg_enforcing()) {
				lg_fd_after_create(fd, err, 2);
				if (exhausted(lfd, true, err, &blocking) > 0)
					continue;
				return -1;
			}
			lg_fd_after_create(fd, err, 2);
			errno = err;
			return -1;
		}
		int saved = errno;
		lg_fd_on_create(fd, LG_FD_SOCKET, LG_FDF_ACCEPTED, 2);

		bool shed = false;
		uint32_t max = lg_policy.net.max_connections;
		if (max && lg_fd_accepted_count() > max) {
			/* Observe mode: what would have been shed is reported, the connection stays. */
			if (lg_enforcing())
				shed = true;
			else
				record(EV_SHED, site_of(fd) ? site_of(fd) : lg_stack_capture(2));
		}
		if (!shed && uses_limits && lg_limit_after_accept(lfd, port, &rule) == LG_SHED)
			shed = true;
		if (shed) {
			record(EV_SHED, site_of(fd) ? site_of(fd) : lg_stack_capture(2));
			reset_close(fd);
			if (blocking < 0)
				blocking = is_blocking(lfd);
			if (blocking)
				continue;
			errno = EAGAIN;
			return -1;
		}
		/* An accepted socket never inherits O_NONBLOCK on Linux: only SOCK_NONBLOCK sets it. */
		if (!(flags & SOCK_NONBLOCK) &&
		    (lg_policy.net.read_timeout_ms || lg_policy.net.write_timeout_ms))
			set_timeouts(fd);
		errno = saved;
		return fd;
	}
}

/* ---------------------------------------------------------------------------------------------
 * connect
 * ------------------------------------------------------------------------------------------- */

/* true when every installed signal handler has SA_RESTART (only asked after an EINTR). */
static bool all_handlers_restart(void)
{
	int saved = errno;
	bool all = true;

	for (int sig = 1; sig < NSIG && all; sig++) {
		struct sigaction sa;
		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) != 0)
			continue;
		if (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN && !(sa.sa_flags & SA_RESTART))
			all = false;
	}
	errno = saved;
	return all;
}

/* A blocking connect with a deadline: non-blocking connect + poll, the program's flags put back
 * whatever happens. Returns the connect's result with its errno (ETIMEDOUT at the deadline). */
static __attribute__((noinline)) int connect_with_timeout(int fd, const struct sockaddr *addr, socklen_t len, int fl,
				uint32_t timeout_ms)
{
	int rc, err, saved = errno;

	if (LG_REAL(fcntl)(fd, F_SETFL, fl | O_NONBLOCK) != 0)
		return LG_REAL(connect)(fd, addr, len);
	rc = LG_REAL(connect)(fd, addr, len);
	err = errno;
	/* EALREADY: an earlier attempt (cut short by a signal) is still going: a blocking
	 * connect waits for it. */
	if (rc == 0 || (err != EINPROGRESS && err != EALREADY))
		goto out;

	uint64_t deadline = lg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		uint64_t now = lg_now_ns();
		if (now >= deadline) {
			/* Abandon the attempt: AF_UNSPEC dissociates the socket (the kernel aborts the
			 * handshake), as a blocking connect that failed would leave it. */
			struct sockaddr unspec = { .sa_family = AF_UNSPEC };
			LG_REAL(connect)(fd, &unspec, sizeof(unspec));
			record(EV_CONNECT_TIMEOUT, lg_stack_capture(3));
			rc = -1;
			err = ETIMEDOUT;
			goto out;
		}
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int ms = (int)((deadline - now + 999999) / 1000000);
		int n = LG_REAL(poll)(&pfd, 1, ms);
		if (n < 0 && errno == EINTR) {
			/* A blocking connect is restarted after a handler with SA_RESTART and fails
			 * with EINTR otherwise (the connect goes on in the kernel either way). */
			if (all_handlers_restart())
				continue;
			rc = -1;
			err = EINTR;
			goto out;
		}
		if (n < 0) {
			rc = -1;
			err = errno;
			goto out;
		}
		if (n == 0)
			continue;
		/* Collect the result with connect itself, as the blocking call would: it moves the
		 * socket to connected (a later connect then fails with EISCONN) or, on failure, back
		 * to unconnected (a later connect tries again instead of failing ECONNABORTED). */
		rc = LG_REAL(connect)(fd, addr, len);
		err = errno;
		if (rc != 0 && (err == EALREADY || err == EINPROGRESS))
			continue;
		goto out;
	}
out:
	LG_REAL(fcntl)(fd, F_SETFL, fl);
	errno = rc == 0 ? saved : err;   /* a success leaves errno as the program had it */
	return rc;
}

/* A connection-oriented socket (TCP, SCTP): what connect limits and timeouts are for. A datagram
 * socket's connect only names its default peer, sends nothing and never blocks. */
static bool connection_socket(int fd)
{
	int type = 0, saved = errno;
	socklen_t len = sizeof(type);
	bool yes = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
		   (type == SOCK_STREAM || type == SOCK_SEQPACKET);

	errno = saved;
	return yes;
}

int lg_net_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	uint32_t tmo = lg_policy.net.connect_timeout_ms;
	bool inet = addr && len >= sizeof(sa_family_t) &&
		    (addr->sa_family == AF_INET || addr->sa_family == AF_INET6);
	int rc, err;

	/* One getsockopt, only when a limit or timeout could apply. */
	if (inet && (lg_policy.nlimits > 0 || tmo || lg_policy.net.read_timeout_ms ||
		     lg_policy.net.write_timeout_ms))
		inet = connection_socket(fd);

	if (lg_policy.nlimits > 0 && inet) {
		for (;;) {
			uint64_t wait_ns = 0;
			int rule = -1;
			enum lg_verdict v = lg_limit_before_connect(addr, (uint32_t)len, &wait_ns, &rule);
			if (v == LG_WAIT) {
				uint64_t t0 = lg_now_ns();
				sleep_ns(wait_ns);
				lg_limit_waited(rule, lg_now_ns() - t0);
				continue;
			}
			if (v == LG_FAIL) {
				errno = ECONNREFUSED;
				return -1;
			}
			break;
		}
	}
	/* The program's own SO_SNDTIMEO is its connect timeout (socket(7)): ours never replaces it. */
	int fl = (tmo && inet && !(lg_fd_flags(fd) & LG_FDF_USER_SNDTIMEO)) ? LG_REAL(fcntl)(fd, F_GETFL)
									     : -1;
	if (fl < 0) {
		rc = LG_REAL(connect)(fd, addr, len);
	} else if (fl & O_NONBLOCK) {
		rc = LG_REAL(connect)(fd, addr, len);
		if (rc < 0 && errno == EINPROGRESS) {
			/* The guardian fails it if it is still connecting at the deadline. */
			err = errno;
			struct lg_fd_entry *e = lg_fd_entry(fd, false);
			if (e) {
				atomic_store_explicit(&e->site2, lg_stack_capture(2), memory_order_relaxed);
				atomic_store_explicit(&e->net_ns, lg_now_ns(), memory_order_relaxed);
				lg_fd_set_flags(fd, LG_FDF_CONNECTING, 0);
			}
			errno = err;
		}
		return rc;
	} else if (lg_enforcing()) {
		rc = connect_with_timeout(fd, addr, len, fl, tmo);
	} else {
		/* Observe: the connect runs as it would; one that took longer is reported. */
		uint64_t t0 = lg_now_ns();
		rc = LG_REAL(connect)(fd, addr, len);
		err = errno;
		if (lg_now_ns() - t0 > (uint64_t)tmo * 1000000ull)
			record(EV_CONNECT_TIMEOUT, lg_stack_capture(2));
		errno = err;
	}
	if (rc == 0 && fl >= 0 && !(fl & O_NONBLOCK)) {
		err = errno;
		lg_fd_set_flags(fd, LG_FDF_CONNECTED, 0);
		set_timeouts(fd);
		errno = err;
	} else if (rc == 0 && (lg_policy.net.read_timeout_ms || lg_policy.net.write_timeout_ms) &&
		   inet && is_blocking(fd)) {
		err = errno;
		lg_fd_set_flags(fd, LG_FDF_CONNECTED, 0);
		set_timeouts(fd);
		errno = err;
	}
	return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The guardian's scan: idle accepted connections, non-blocking connects past their deadline
 * ------------------------------------------------------------------------------------------- */

static void scan_idle(struct lg_fd_entry *e, int fd, uint32_t info, uint64_t now)
{
	uint32_t idle_ms = lg_policy.net.idle_timeout_ms;
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);

	if (info & (LG_FDF_IDLE_DONE << 8))
		return;
	uint64_t created = atomic_load_explicit(&e->created_ns, memory_order_relaxed);
	if (now - created < (uint64_t)idle_ms * 1000000ull)
		return;
	/* For an accepted socket net_ns is the earliest time it can have been quiet for idle_ms,
	 * learnt from its last TCP_INFO: until then, no syscall. A value left by an earlier
	 * connection on the same fd number is never later than the new one's own earliest time
	 * (created + idle_ms), so it cannot delay a shutdown. Without this, a scan made one
	 * getsockopt per connection past its first idle_ms, every period (8.6% of a core for 4000
	 * active connections at idle_timeout_ms 500). */
	if (now < atomic_load_explicit(&e->net_ns, memory_order_relaxed))
		return;
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0 || ti.tcpi_state != TCP_ESTABLISHED)
		return;
	/* Both directions: a connection streaming a response to a silent client is not idle. */
	uint32_t quiet = ti.tcpi_last_data_recv < ti.tcpi_last_data_sent ? ti.tcpi_last_data_recv
									 : ti.tcpi_last_data_sent;
	if (quiet < idle_ms) {
		atomic_store_explicit(&e->net_ns, now + (uint64_t)(idle_ms - quiet) * 1000000ull,
				      memory_order_relaxed);
		return;
	}
	/* The fd may have been closed and its number reused since we read info: check again. */
	if (atomic_load_explicit(&e->info, memory_order_acquire) != info ||
	    atomic_load_explicit(&e->created_ns, memory_order_relaxed) != created)
		return;
	lg_fd_set_flags(fd, LG_FDF_IDLE_DONE, 0);
	/* shutdown, never close: the program owns the fd, and sees EOF through its own read/epoll. */
	if (lg_enforcing())
		LG_REAL(shutdown)(fd, SHUT_RDWR);
	record(EV_IDLE_SHUTDOWN, atomic_load_explicit(&e->stack, memory_order_relaxed));
}

static void scan_connecting(struct lg_fd_entry *e, int fd, uint32_t info, uint64_t now)
{
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	uint64_t started = atomic_load_explicit(&e->net_ns, memory_order_relaxed);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0 || ti.tcpi_state != TCP_SYN_SENT) {
		lg_fd_set_flags(fd, 0, LG_FDF_CONNECTING);   /* done, one way or the other */
		return;
	}
	if (now - started < (uint64_t)lg_policy.net.connect_timeout_ms * 1000000ull)
		return;
	if (atomic_load_explicit(&e->info, memory_order_acquire) != info)
		return;
	lg_fd_set_flags(fd, 0, LG_FDF_CONNECTING);
	/* shutdown of a SYN_SENT socket disconnects it with ECONNRESET (tcp_disconnect): the
	 * program's own poll/epoll sees the error. */
	if (lg_enforcing())
		LG_REAL(shutdown)(fd, SHUT_RDWR);
	record(EV_CONNECT_TIMEOUT, atomic_load_explicit(&e->site2, memory_order_relaxed));
}

/* One scan of the fd table (the guardian runs it every net period; bench/reaper.c times it). */
void lg_net_scan(uint64_t now)
{
	int h = lg_fd_high();
	bool idle = lg_policy.net.idle_timeout_ms != 0, conn = lg_policy.net.connect_timeout_ms != 0;

	for (int fd = 0; fd <= h; fd++) {
		struct lg_fd_entry *e = lg_fd_entry(fd, false);
		if (!e)
			continue;
		uint32_t info = atomic_load_explicit(&e->info, memory_order_acquire);
		if (!info)
			continue;
		if (idle && (info & (LG_FDF_ACCEPTED << 8)))
			scan_idle(e, fd, info, now);
		else if (conn && (info & (LG_FDF_CONNECTING << 8)))
			scan_connecting(e, fd, info, now);
	}
}

/* ---------------------------------------------------------------------------------------------
 * Holding a listener back in epoll. Rare, so a mutex: every change to a held registration (hold,
 * release, the program's own EPOLL_CTL_MOD/DEL of a held fd) is made under it, so the kernel
 * always ends with the events the program asked for once no hold is left.
 * ------------------------------------------------------------------------------------------- */

_Atomic int lg_fd_nheld;
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { int fd; int reason; } held[HOLD_MAX];
static int nheld;

static void hold_lock_take(void) { LG_REAL(pthread_mutex_lock)(&hold_lock); }
static void hold_lock_drop(void) { LG_REAL(pthread_mutex_unlock)(&hold_lock); }

static int find_held(int fd)
{
	for (int i = 0; i < nheld; i++) {
		if (held[i].fd == fd)
			return i;
	}
	return -1;
}

/* Under the lock: put the program's events back and forget hold i. */
static void release_locked(int i, bool rearm)
{
	struct lg_fd_entry *e = lg_fd_entry(held[i].fd, false);

	if (e) {
		int epfd = (int)atomic_load_explicit(&e->ep_fd1, memory_order_relaxed) - 1;
		if (rearm && epfd >= 0) {
			struct epoll_event ev = {
				.events = atomic_load_explicit(&e->ep_events, memory_order_relaxed),
				.data.u64 = atomic_load_explicit(&e->ep_data, memory_order_relaxed),
			};
			LG_REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, held[i].fd, &ev);
		}
		atomic_store_explicit(&e->held_until_ns, 0, memory_order_relaxed);
	}
	held[i] = held[--nheld];
	atomic_store_explicit(&lg_fd_nheld, nheld, memory_order_relaxed);
}

int lg_fd_hold(int fd, uint64_t until_ns, int reason)
{
	struct lg_fd_entry *e = lg_fd_entry(fd, false);
	int rc = -1, saved = errno;

	if (!e || atomic_load_explicit(&e->ep_fd1, memory_order_relaxed) == 0)
		return -1;
	hold_lock_take();
	int i = find_held(fd);
	int epfd = (int)atomic_load_explicit(&e->ep_fd1, memory_order_relaxed) - 1;
	if (i >= 0) {
		if (until_ns > atomic_load_explicit(&e->held_until_ns, memory_order_relaxed))
			atomic_store_explicit(&e->held_until_ns, until_ns, memory_order_relaxed);
		if (reason == LG_HOLD_FD)
			held[i].reason = reason;
		rc = 0;
	} else if (epfd >= 0 && nheld < HOLD_MAX) {
		/* Events 0: the kernel reports nothing for it (a listener has no HUP/ERR). Fails with
		 * EINVAL for an EPOLLEXCLUSIVE registration: the caller then sheds instead. */
		struct epoll_event ev = { .events = 0,
					  .data.u64 = atomic_load_explicit(&e->ep_data, memory_order_relaxed) };
		if (LG_REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, fd, &ev) == 0) {
			held[nheld].fd = fd;
			held[nheld].reason = reason;
			nheld++;
			atomic_store_explicit(&e->held_until_ns, until_ns, memory_order_relaxed);
			atomic_store_explicit(&lg_fd_nheld, nheld, memory_order_relaxed);
			rc = 0;
		}
	}
	hold_lock_drop();
	/* An epoll_wait of ours releases it in time; one we do not see (poll() on the epoll fd, a
	 * second loop) relies on the guardian's tick. */
	if (rc == 0)
		lg_guardian_need_thread();
	errno = saved;
	return rc;
}

void lg_fd_unhold(int fd, bool rearm)
{
	int saved = errno;

	hold_lock_take();
	int i = find_held(fd);
	if (i >= 0)
		release_locked(i, rearm);
	hold_lock_drop();
	errno = saved;
}

/* An fd was closed: listeners waiting for one may go again. */
void lg_fd_release_exhausted(void)
{
	int saved = errno;

	if (lg_fd_over(1))
		return;
	hold_lock_take();
	for (int i = nheld - 1; i >= 0; i--) {
		if (held[i].reason == LG_HOLD_FD)
			release_locked(i, true);
	}
	hold_lock_drop();
	errno = saved;
}

/* Release the holds that are due; returns the earliest release still ahead (UINT64_MAX: none). */
uint64_t lg_fd_release_due(uint64_t now)
{
	uint64_t next = UINT64_MAX;
	int saved = errno;

	hold_lock_take();
	for (int i = nheld - 1; i >= 0; i--) {
		struct lg_fd_entry *e = lg_fd_entry(held[i].fd, false);
		uint64_t until = e ? atomic_load_explicit(&e->held_until_ns, memory_order_relaxed) : 0;
		if (until <= now)
			release_locked(i, true);
		else if (until < next)
			next = until;
	}
	hold_lock_drop();
	errno = saved;
	return next;
}

/* The program's epoll_ctl: remember a registration (to hold it back later, and to put it back),
 * and while an fd is held, apply its new events only when the hold ends. */
int lg_fd_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct lg_fd_entry *e = lg_fd_entry(fd, false);
	bool locked = false;
	int rc;

	if (e && atomic_load_explicit(&lg_fd_nheld, memory_order_relaxed)) {
		hold_lock_take();
		locked = true;
	}
	if (locked && find_held(fd) >= 0 && ev && (op == EPOLL_CTL_MOD || op == EPOLL_CTL_ADD)) {
		struct epoll_event none = { .events = 0, .data = ev->data };
		rc = LG_REAL(epoll_ctl)(epfd, op, fd, &none);
	} else {
		if (locked && op == EPOLL_CTL_DEL && find_held(fd) >= 0)
			release_locked(find_held(fd), false);
		rc = LG_REAL(epoll_ctl)(epfd, op, fd, ev);
	}
	if (rc == 0 && e) {
		int saved = errno;
		if (op == EPOLL_CTL_DEL) {
			if (atomic_load_explicit(&e->ep_fd1, memory_order_relaxed) == epfd + 1)
				atomic_store_explicit(&e->ep_fd1, 0, memory_order_relaxed);
		} else if (ev) {
			atomic_store_explicit(&e->ep_events, ev->events, memory_order_relaxed);
			atomic_store_explicit(&e->ep_data, ev->data.u64, memory_order_relaxed);
			atomic_store_explicit(&e->ep_fd1, epfd + 1, memory_order_relaxed);
		}
		errno = saved;
	}
	if (locked)
		hold_lock_drop();
	return rc;
}

/* epoll_wait and friends while some listener is held: release what is due first, and never
 * sleep past the next release, but do not return early to the program either (an early 0 would
 * be a spurious wake-up). timeout_ns < 0 = forever. */
int lg_fd_epoll_wait(int epfd, struct epoll_event *events, int maxevents, int64_t timeout_ns,
		     const sigset_t *sigmask, int variant)
{
	uint64_t start = lg_now_ns();
	uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : start + (uint64_t)timeout_ns;

	for (;;) {
		uint64_t now = lg_now_ns();
		uint64_t next = atomic_load_explicit(&lg_fd_nheld, memory_order_relaxed)
					? lg_fd_release_due(now) : UINT64_MAX;
		uint64_t until = next < deadline ? next : deadline;
		int64_t wait_ns = until == UINT64_MAX ? -1 : until > now ? (int64_t)(until - now) : 0;
		int n;

		if (variant == 2) {
			struct timespec ts = { .tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000 };
			n = LG_REAL(epoll_pwait2)(epfd, events, maxevents, wait_ns < 0 ? NULL : &ts, sigmask);
		} else {
			/* Round up: rounding down would wake just before the release, to no purpose. */
			int ms = wait_ns < 0 ? -1 : wait_ns > (int64_t)INT32_MAX * 1000000 ? INT32_MAX
									: (int)((wait_ns + 999999) / 1000000);
			n = variant == 1 ? LG_REAL(epoll_pwait)(epfd, events, maxevents, ms, sigmask)
					 : LG_REAL(epoll_wait)(epfd, events, maxevents, ms);
		}
		if (n != 0 || until == deadline || lg_now_ns() >= deadline)
			return n;
	}
}

void lg_fd_holds_init(void)
{
	pthread_mutex_init(&hold_lock, NULL);
}

void lg_fd_holds_atfork_child(void)
{
	/* The epoll instances are shared with the parent: its holds are its own to release. */
	pthread_mutex_init(&hold_lock, NULL);
	for (int i = 0; i < nheld; i++) {
		struct lg_fd_entry *e = lg_fd_entry(held[i].fd, false);
		if (e)
			atomic_store(&e->held_until_ns, 0);
	}
	nheld = 0;
	atomic_store(&lg_fd_nheld, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Report and lifecycle
 * ------------------------------------------------------------------------------------------- */

static int net_snapshot(struct lg_snapshot *s)
{
	if (!lg_fd_tracking())
		return 0;
	s->net.present = true;
	s->net.connect_timeouts = atomic_load(&totals[EV_CONNECT_TIMEOUT]);
	s->net.idle_shutdowns = atomic_load(&totals[EV_IDLE_SHUTDOWN]);
	s->net.shed = atomic_load(&totals[EV_SHED]);
	int n = atomic_load_explicit(&nsites, memory_order_acquire);
	s->net.sites = lg_snapshot_alloc(s, sizeof(*s->net.sites) * (size_t)(n ? n : 1));
	for (int i = 0; s->net.sites && i < n; i++) {
		s->net.sites[s->net.nsites++] = (struct lg_snap_net_site){
			.stack = atomic_load(&sites[i].stack),
			.event = event_names[atomic_load(&sites[i].event)],
			.count = atomic_load(&sites[i].count),
		};
	}
	return 0;
}

static void net_init(void)
{
	uint32_t period = 0;

	if (lg_policy.net.idle_timeout_ms)
		period = lg_policy.net.idle_timeout_ms / 4;
	if (lg_policy.net.connect_timeout_ms &&
	    (!period || lg_policy.net.connect_timeout_ms / 4 < period))
		period = lg_policy.net.connect_timeout_ms / 4;
	if (lg_policy.net.idle_timeout_ms || lg_policy.net.connect_timeout_ms) {
		lg_guardian_every("net", period < 20 ? 20 : period > 1000 ? 1000 : period, lg_net_scan);
		/* Idle connections are closed while the program sleeps: that needs the thread. */
		lg_guardian_need_thread();
	}
}

static void net_atfork_child(void)
{
	atomic_store(&nsites, 0);
	atomic_store(&site_lock, 0);
	for (int i = 0; i < EV_COUNT; i++)
		atomic_store(&totals[i], 0);
}

/* After the fd guard (order 90): it needs the table. */
LG_GUARD(net, .order = 91, .init = net_init, .atfork_child = net_atfork_child,
	 .snapshot = net_snapshot);
