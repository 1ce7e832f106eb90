/* Stack capture and interning.
 *
 * lg_stack_capture() is reached from hooks on any thread at once (sampled allocations, fd
 * creation, contended locks), sometimes from a thread that holds glibc's loader lock (a library
 * constructor that allocates inside dlopen). So nothing here takes a lock: unwinding may itself
 * take the loader lock through dl_iterate_phdr, and a thread in dlopen that calls malloc must never
 * wait for us. Interning is a lock-free open-addressing table over one mmap'd region:
 *
 *   [ small slots: 512 words, the first ~256 stacks          ]
 *   [ slots: 64-bit words, (hash tag << 32) | entry offset ]
 *   [ index: 32-bit entry offsets, by stack id              ]
 *   [ arena: entries, bump-allocated, never freed           ]
 *
 * Two tiers of slots because a hashed slot costs a resident page: the big array spreads its
 * first few hundred stacks over as many 4 KiB pages (up to 2 MiB), where most programs have
 * fewer stacks than that. The first ones go to one page of small slots; once it is half full,
 * new stacks go to the big array, and a lookup tries the small tier first (its page is hot). A
 * stack first met by two threads at the very moment the small tier closes may get an entry in
 * each tier; the thread that made the big one looks at the small tier again and uses the entry
 * there if it appeared, so at worst one capture carries the second id.
 *
 * An entry is written completely before a CAS publishes it in a slot (release), so whoever sees
 * the slot sees the frames. Ids are dense (1, 2, 3 ...): an entry that won a slot takes the next
 * index position with a CAS, and any thread that meets an entry without an id helps finish the
 * numbering instead of waiting for the thread that inserted it (which may be preempted, or stopped
 * by fork in the child). The region is never unmapped, so ids stay valid for the whole process.
 */
#include "libguard/internal.h"

/* Local unwinding only: the _UL* entry points live in libunwind.so itself (-lunwind); without it
 * the header names the remote-capable _U* ones of libunwind-x86_64.so. */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <string.h>
#include <sys/mman.h>

#define STACK_DEFAULT_DEPTH 32u
/* Frames of our own between unw_backtrace's first IP and the caller: unw_backtrace's frame (the
 * IP after its getcontext call) and lg_stack_capture's. Found exactly at run time; this bounds the
 * search and sizes the buffer. */
#define STACK_INTERNAL_MAX 4u
#define STACK_SKIP_MAX 16u
_Static_assert(LG_STACK_MAX_DEPTH + STACK_SKIP_MAX + STACK_INTERNAL_MAX <= LG_STACK_BUF,
	       "the capture buffer holds the deepest capture");

/* Capacity at full size; halved until the reservation succeeds (vm.overcommit_memory=2 ignores
 * MAP_NORESERVE and charges the whole mapping). 131072 distinct stacks is far beyond what the
 * sampled sites of a real service produce; beyond it a capture returns 0. */
#define STACK_IDS_SHIFT 17u
#define STACK_IDS_MIN_SHIFT 10u
#define STACK_ARENA_PER_ID 1024u   /* bytes: an entry of depth 126 */
#define STACK_PAGE 4096u
#define SMALL_SLOTS 512u           /* one page */
#define SMALL_LIMIT 256u           /* stacks in the small tier: load 1/2 */
#define NOT_HERE UINT32_MAX
#define STACK_REGION_MAX_PAGES \
	((SMALL_SLOTS * 8u + (((size_t)2 << STACK_IDS_SHIFT) * 8u) + \
	  (((size_t)1 << STACK_IDS_SHIFT) + 1u) * 4u + \
	  ((size_t)1 << STACK_IDS_SHIFT) * STACK_ARENA_PER_ID) / STACK_PAGE + 2u)

struct stack_entry {
	_Atomic uint32_t id;   /* 0 until numbered */
	uint32_t depth;
	uint64_t hash;
	uintptr_t frames[];
};

enum { REGION_NONE = 0, REGION_MAPPING, REGION_READY, REGION_FAILED };

static struct {
	_Atomic int state;
	_Atomic uint32_t max_depth;
	char *base;              /* published with state READY */
	size_t len;
	_Atomic uint64_t *small;  /* SMALL_SLOTS */
	_Atomic uint32_t small_count;
	_Atomic uint64_t *slots;
	uint32_t slot_mask;
	_Atomic uint32_t *index; /* index[id] = entry offset / 8; index[0] unused */
	uint32_t max_ids;
	size_t arena_off, arena_len;
	_Atomic uint64_t arena_used;
	_Atomic uint32_t count;  /* ids handed out: index[1..count] are set and numbered */
	_Atomic uint64_t self_bytes;
	_Atomic int full_warned;
	/* One bit per page of the region that we have written: self_bytes counts memory that is
	 * resident because of us, not the reservation. */
	_Atomic uint64_t touched[(STACK_REGION_MAX_PAGES + 63) / 64];
} stk;

/* ---------------------------------------------------------------------------------------------
 * The region
 * ------------------------------------------------------------------------------------------- */

static int region_map(unsigned shift)
{
	size_t ids = (size_t)1 << shift;
	size_t small_len = SMALL_SLOTS * sizeof(uint64_t);
	size_t slots_len = small_len + (ids * 2) * sizeof(uint64_t);
	size_t index_len = ((ids + 1) * sizeof(uint32_t) + 7) & ~(size_t)7;
	size_t arena_len = ids * STACK_ARENA_PER_ID;
	size_t len = slots_len + index_len + arena_len;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);

	if (p == MAP_FAILED)
		return -1;
	stk.base = p;
	stk.len = len;
	stk.small = p;
	stk.slots = (_Atomic uint64_t *)(void *)(stk.base + small_len);
	stk.slot_mask = (uint32_t)(ids * 2 - 1);
	stk.index = (_Atomic uint32_t *)(void *)(stk.base + slots_len);
	stk.max_ids = (uint32_t)ids;
	stk.arena_off = slots_len + index_len;
	stk.arena_len = arena_len;
	return 0;
}

/* Count the pages of [off, off + len) we write for the first time. */
static void region_touch(size_t off, size_t len)
{
	uint64_t added = 0;

	for (size_t page = off / STACK_PAGE; page <= (off + len - 1) / STACK_PAGE; page++) {
		uint64_t bit = (uint64_t)1 << (page % 64);

		if (!(atomic_fetch_or(&stk.touched[page / 64], bit) & bit))
			added += STACK_PAGE;
	}
	if (added) {
		atomic_fetch_add(&stk.self_bytes, added);
		lg_mem_account_mmap((int64_t)added);
	}
}

static struct stack_entry *entry_at(uint32_t off8)
{
	return (struct stack_entry *)(void *)(stk.base + (size_t)off8 * 8);
}

static uint32_t entry_off8(const struct stack_entry *e)
{
	return (uint32_t)(((const char *)e - stk.base) / 8);
}

/* Libunwind's setup for this process, once, at boot.
 *
 * Caching policy: with the default UNW_CACHE_GLOBAL, libunwind 1.6 holds the global register-state
 * cache lock (get_rs_cache, a mutex) while fetch_proc_info calls dl_iterate_phdr, which takes the
 * loader's dl_load_write_lock: lock order "libunwind, then loader". A thread that already holds the
 * loader lock and reaches a hook (a dl_iterate_phdr callback that allocates, a library constructor
 * inside dlopen) unwinds in the opposite order, and the two deadlock; dlclose then waits for ever
 * (test_stack_dlopen_while_capturing_does_not_deadlock caught exactly this). UNW_CACHE_PER_THREAD
 * would take no lock, but Debian builds libunwind without --enable-per-thread-cache and
 * unw_set_caching_policy silently turns it into UNW_CACHE_GLOBAL. UNW_CACHE_NONE takes no lock;
 * unw_backtrace keeps its own per-thread trace cache (Gtrace.c, filled through tdep_stash_frame),
 * so a warm capture still never parses DWARF.
 *
 * Warm-up: the first unwind runs tdep_init; better here at boot than inside a hook. Only that: a
 * cursor set up with unw_init_local runs it, while unw_backtrace would also build this thread's
 * trace cache, a 256 KiB table zeroed page by page (64 page faults in every process, even one
 * that never captures a stack). Each thread builds its own at its first capture. The busy flag
 * keeps any allocation libunwind makes out of our own hooks. */
static void unwinder_setup(void)
{
	unw_context_t uc;
	unw_cursor_t cursor;

	lg_enter();
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_NONE);
	if (unw_getcontext(&uc) == 0)
		(void)unw_init_local(&cursor, &uc);
	lg_leave();
}

void lg_stack_init(uint32_t max_depth)
{
	int expected = REGION_NONE;

	if (max_depth == 0)
		max_depth = STACK_DEFAULT_DEPTH;
	if (max_depth > LG_STACK_MAX_DEPTH)
		max_depth = LG_STACK_MAX_DEPTH;
	atomic_store(&stk.max_depth, max_depth);

	/* Only the depth changes on a later call (policy reload, fork child): ids already handed
	 * to guards must stay valid, so the table is never rebuilt. */
	if (!atomic_compare_exchange_strong(&stk.state, &expected, REGION_MAPPING))
		return;
	for (unsigned shift = STACK_IDS_SHIFT; shift >= STACK_IDS_MIN_SHIFT; shift--) {
		if (region_map(shift) == 0) {
			unwinder_setup();
			atomic_store_explicit(&stk.state, REGION_READY, memory_order_release);
			return;
		}
	}
	atomic_store(&stk.state, REGION_FAILED);
	lg_warn("cannot reserve memory for stacks; stack ids will be 0");
}

/* ---------------------------------------------------------------------------------------------
 * Interning
 * ------------------------------------------------------------------------------------------- */

static uint64_t frames_hash(const uintptr_t *frames, uint32_t depth)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ depth;

	for (uint32_t i = 0; i < depth; i++) {
		h ^= frames[i];
		h *= 0xbf58476d1ce4e5b9ull;
		h ^= h >> 31;
	}
	return h ^ (h >> 29);
}

static bool entry_equals(const struct stack_entry *e, uint64_t hash, const uintptr_t *frames,
			 uint32_t depth)
{
	return e->hash == hash && e->depth == depth &&
	       memcmp(e->frames, frames, depth * sizeof(uintptr_t)) == 0;
}

/* A new, unpublished entry from the arena, or NULL when the arena is exhausted. A thread that
 * loses the race to publish an identical stack wastes these bytes; that happens only when two
 * threads meet a new stack at the same moment. */
static struct stack_entry *entry_new(const uintptr_t *frames, uint32_t depth, uint64_t hash)
{
	size_t size = sizeof(struct stack_entry) + depth * sizeof(uintptr_t);
	uint64_t off = atomic_fetch_add(&stk.arena_used, size);
	struct stack_entry *e;

	if (off + size > stk.arena_len)
		return NULL;
	region_touch(stk.arena_off + off, size);
	e = (struct stack_entry *)(void *)(stk.base + stk.arena_off + off);
	e->depth = depth;
	e->hash = hash;
	memcpy(e->frames, frames, depth * sizeof(uintptr_t));
	return e;
}

/* Give a published entry its id, or return the one it has. Lock-free: the id is the index
 * position the entry claims at count + 1; whoever finds position count + 1 claimed but the count
 * not yet moved finishes that step for the claimant, so no thread ever waits for another. Each
 * entry claims exactly one position: positions are claimed only at count + 1, and count moves
 * past a position only after its entry's id is set. */
static uint32_t entry_number(struct stack_entry *e)
{
	uint32_t mine = entry_off8(e);

	for (;;) {
		/* Read count before id: count > n implies the id of position n's entry is set. */
		uint32_t n = atomic_load(&stk.count);
		uint32_t id = atomic_load(&e->id);
		uint32_t holder = 0;

		if (id != 0)
			return id;
		if (n >= stk.max_ids)
			return 0;
		if (atomic_compare_exchange_strong(&stk.index[n + 1], &holder, mine)) {
			region_touch((size_t)((char *)&stk.index[n + 1] - stk.base), sizeof(uint32_t));
			holder = mine;
		}
		uint32_t zero = 0;
		atomic_compare_exchange_strong(&entry_at(holder)->id, &zero, n + 1);
		atomic_compare_exchange_strong(&stk.count, &n, n + 1);
	}
}

/* Look the stack up in one tier of slots, and insert it at the empty slot that ends its probe if
 * the tier takes it (open: count below limit; the big tier passes no count). Returns its id, 0 if
 * it cannot be had (id or arena limit), or NOT_HERE: absent, and the tier is closed or full. *mine
 * is the entry made for it, kept across tiers. */
static uint32_t tier_intern(_Atomic uint64_t *slots, uint32_t mask, _Atomic uint32_t *count,
			    uint32_t limit, uint64_t hash, const uintptr_t *frames, uint32_t depth,
			    struct stack_entry **mine)
{
	uint64_t tag = hash >> 32;
	uint32_t slot = (uint32_t)hash & mask;

	for (uint32_t probe = 0; probe <= mask; probe++, slot = (slot + 1) & mask) {
		uint64_t word = atomic_load_explicit(&slots[slot], memory_order_acquire);

		if (word == 0) {
			if (count && atomic_load_explicit(count, memory_order_relaxed) >= limit)
				return NOT_HERE;
			/* Past the id limit the table only answers lookups: new entries would never be
			 * numbered, and probe sequences stay short. */
			if (*mine == NULL && atomic_load(&stk.count) >= stk.max_ids)
				return 0;
			if (*mine == NULL && (*mine = entry_new(frames, depth, hash)) == NULL)
				return 0;
			uint64_t publish = (tag << 32) | entry_off8(*mine);
			if (atomic_compare_exchange_strong_explicit(&slots[slot], &word, publish,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				if (count)
					atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
				region_touch((size_t)((char *)&slots[slot] - stk.base), sizeof(uint64_t));
				return entry_number(*mine);
			}
			/* Lost the slot: word now holds the winner, which may be this very stack. */
		}
		if ((word >> 32) == tag) {
			struct stack_entry *e = entry_at((uint32_t)word);

			if (entry_equals(e, hash, frames, depth))
				return entry_number(e);
		}
	}
	return NOT_HERE;
}

static uint32_t stack_intern(const uintptr_t *frames, uint32_t depth)
{
	uint64_t hash = frames_hash(frames, depth);
	struct stack_entry *mine = NULL;
	uint32_t id = tier_intern(stk.small, SMALL_SLOTS - 1, &stk.small_count, SMALL_LIMIT, hash,
				  frames, depth, &mine);

	if (id != NOT_HERE)
		return id;
	id = tier_intern(stk.slots, stk.slot_mask, NULL, 0, hash, frames, depth, &mine);
	if (id == NOT_HERE)
		return 0;
	/* The small tier closed while we looked: another thread may have just put this stack
	 * there; everyone else finds that entry first, so use it too (lookup only: limit 0). */
	uint32_t first = tier_intern(stk.small, SMALL_SLOTS - 1, &stk.small_count, 0, hash, frames,
				     depth, &mine);
	return first != NOT_HERE && first != 0 ? first : id;
}

static void warn_full_once(void)
{
	int expected = 0;

	/* Busy: a hook called us, and the log line must not come back through one. */
	if (atomic_compare_exchange_strong(&stk.full_warned, &expected, 1)) {
		lg_enter();
		lg_warn("stack table is full (%u stacks); new stacks get id 0", stk.max_ids);
		lg_leave();
	}
}

/* ---------------------------------------------------------------------------------------------
 * Capture
 * ------------------------------------------------------------------------------------------- */

/* Where the caller's frame starts in what unw_backtrace returned. libunwind reports return
 * addresses unadjusted, so the caller's frame is exactly our return address; searching for it
 * copes with libunwind versions that do or do not list unw_backtrace's own frame. */
static unsigned caller_frame(void *const *frames, int n, const void *ret)
{
	for (int i = 0; i < n && i < (int)STACK_INTERNAL_MAX; i++)
		if (frames[i] == ret)
			return (unsigned)i;
	return 2;
}

/* Set when the program takes over a descriptor libunwind keeps for itself (its address-validation
 * pipe, made at boot in the program's fd space): unwinding would then read and write the
 * program's descriptor (and block on it). Stacks are given up rather than the program's fd. */
static _Atomic int unwinder_off;

void lg_stack_disable(void)
{
	if (!atomic_exchange(&unwinder_off, 1))
		lg_warn("the program replaced a descriptor the unwinder uses: stacks are off from now on");
}

int lg_stack_want(unsigned skip)
{
	if (atomic_load_explicit(&stk.state, memory_order_acquire) != REGION_READY ||
	    atomic_load_explicit(&unwinder_off, memory_order_relaxed))
		return 0;
	if (skip > STACK_SKIP_MAX)
		skip = STACK_SKIP_MAX;
	return (int)(atomic_load_explicit(&stk.max_depth, memory_order_relaxed) + skip +
		     STACK_INTERNAL_MAX);
}

uint32_t lg_stack_intern_from(void *const *frames, int n, const void *ret, unsigned skip)
{
	uint32_t depth = atomic_load_explicit(&stk.max_depth, memory_order_relaxed), id;
	unsigned first;

	if (skip > STACK_SKIP_MAX)
		skip = STACK_SKIP_MAX;
	first = caller_frame(frames, n, ret) + skip;
	if (n <= 0 || first >= (unsigned)n)
		return 0;
	if ((unsigned)n - first < depth)
		depth = (unsigned)n - first;
	id = stack_intern((const uintptr_t *)(const void *)(frames + first), depth);
	if (LG_UNLIKELY(id == 0) && atomic_load(&stk.count) >= stk.max_ids)
		warn_full_once();
	return id;
}

/* noinline: the capture needs a frame of its own, whose return address leads to the caller. */
__attribute__((noinline)) uint32_t lg_stack_capture(unsigned skip)
{
	return lg_stack_capture_at(__builtin_return_address(0), skip);
}

uint32_t lg_stack_frames(uint32_t id, const uintptr_t **frames)
{
	uint32_t off8;
	struct stack_entry *e;

	*frames = NULL;
	if (atomic_load_explicit(&stk.state, memory_order_acquire) != REGION_READY)
		return 0;
	if (id == 0 || id > stk.max_ids)
		return 0;
	/* Acquire pairs with the CAS that published the entry: its frames are complete. */
	off8 = atomic_load_explicit(&stk.index[id], memory_order_acquire);
	if (off8 == 0)
		return 0;
	e = entry_at(off8);
	*frames = e->frames;
	return e->depth;
}

uint32_t lg_stack_count(void)
{
	if (atomic_load_explicit(&stk.state, memory_order_acquire) != REGION_READY)
		return 0;
	return atomic_load(&stk.count);
}

uint64_t lg_stack_self_bytes(void)
{
	return atomic_load(&stk.self_bytes);
}
