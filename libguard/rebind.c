/* Stepping out of the allocation path when the heap guard is off.
 *
 * With the heap guard off (by the policy, by GUARD_DISABLE, or because it could not start), the
 * malloc family's hooks only forward to the program's allocator. That forwarding is one more
 * call and jump on every malloc and free: 1-3% of a program that does nothing but allocate.
 * So, once, at start-up, the calls to malloc, free, calloc and realloc that the loaded objects
 * make through their PLT are pointed straight at the allocator: the slot that the PLT jumps
 * through (an R_*_JUMP_SLOT relocation's target) is rewritten from our hook to the allocator's
 * function, as the loader would have written it had libguard not been loaded.
 *
 * What is left alone, and keeps going through the hooks (which stay correct):
 *   - a slot that does not hold our own hook: the program (or another preloaded library)
 *     defines the function itself, or bound it elsewhere;
 *   - a slot not yet bound (lazy binding), unless the loader's own lookup would give our hook:
 *     the object was loaded at start-up (so it looks in the global scope first; one dlopen'ed
 *     earlier, e.g. by a library's constructor, may be RTLD_DEEPBIND), does not define the
 *     symbol itself, and the global lookup of the name gives our hook;
 *   - GLOB_DAT slots (code built with -fno-plt, and function pointers): the address of malloc
 *     must stay the same everywhere, and these slots also serve to take it;
 *   - objects loaded later (dlopen), libguard itself, and everything when LD_AUDIT (an audit
 *     module sees and may redirect unbound PLT calls) or LD_BIND_NOT is set.
 * A slot is written as it is if the kernel says it can be. Otherwise, in a RELRO segment (the
 * object was bound at load: -z now), its page is made writable for the one store and read-only
 * again; outside RELRO it is left alone: the loader leaves such a page writable, so another tool
 * made it read-only (bound every slot, then protected the table). A RELRO page that another tool
 * made writable keeps its protection. Each store is one aligned 8-byte word: a thread calling
 * through the slot meanwhile jumps to either function, and both do the same.
 *
 * Nothing here runs if the heap guard could sample later: only READY-time decisions call it.
 */
#include "libguard/internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <linux/futex.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define JUMP_SLOT R_X86_64_JUMP_SLOT
#elif defined(__aarch64__)
#define JUMP_SLOT R_AARCH64_JUMP_SLOT
#endif

#if defined(JUMP_SLOT) && __ELF_NATIVE_CLASS == 64

/* Our own definitions (hooks/alloc.c), not whatever the global lookup of "malloc" gives: the
 * program may define malloc itself, and its calls must not be pointed anywhere else. Weak: the
 * unit tests link the core without the hooks, and nothing is rebound there. */
#define HOOK_ATTR __attribute__((weak, visibility("hidden")))
extern void *lg_hook_malloc(size_t) HOOK_ATTR;
extern void lg_hook_free(void *) HOOK_ATTR;
extern void *lg_hook_calloc(size_t, size_t) HOOK_ATTR;
extern void *lg_hook_realloc(void *, size_t) HOOK_ATTR;

struct target {
	const char *name;
	void *hook;       /* our definition */
	void *to;         /* the allocator's function */
	bool global;      /* the global lookup of name gives our hook (a lazy slot would bind it) */
};

/* An object as the walks see it. */
struct object {
	uintptr_t base, page;
	const ElfW(Phdr) *phdr;
	ElfW(Half) phnum;
	uintptr_t relro_start, relro_end;
	const ElfW(Dyn) *dyn;
	bool dyn_relocated;   /* glibc relocated its dynamic entries in place */
};

/* Objects loaded at start-up: the executable, the preloaded libraries and what they need, found
 * by DT_NEEDED against DT_SONAME (or file name). Their lookup scope is the global one, so "the
 * global lookup gives our hook" says what a lazy slot of theirs would be bound to. An object
 * dlopen'ed before libguard's init (a library's constructor, or a program before guard_start)
 * may have been opened with RTLD_DEEPBIND and look in its own dependencies first: its lazy slots
 * are left alone. */
#define STARTUP_MAX 512u
struct startup {
	uintptr_t base;
	const char *name, *soname;
	const ElfW(Dyn) *dyn;
	uintptr_t strtab;
	bool in;
};

struct walk {
	struct target t[4];
	uintptr_t page;   /* the page size (not LG_PAGE: RELRO is protected in the system's pages) */
	uintptr_t self;   /* libguard's load address: skipped */
	struct startup *objs;
	unsigned nobjs;
	unsigned slots, objects;
	bool failed;
};

/* glibc relocates an object's dynamic entries in place when it has a load bias and its
 * PT_DYNAMIC is writable (elf_get_dynamic_info, l_ld_readonly); the vDSO's are read-only. */
static uintptr_t dyn_ptr(const struct object *o, ElfW(Addr) v)
{
	return o->dyn_relocated ? v : o->base + v;
}

static void object_init(struct object *o, const struct dl_phdr_info *info, uintptr_t page)
{
	*o = (struct object){ .base = info->dlpi_addr, .page = page, .phdr = info->dlpi_phdr,
			      .phnum = info->dlpi_phnum };
	for (ElfW(Half) i = 0; i < o->phnum; i++) {
		const ElfW(Phdr) *ph = &o->phdr[i];
		if (ph->p_type == PT_DYNAMIC) {
			o->dyn = (const ElfW(Dyn) *)(o->base + ph->p_vaddr);
			o->dyn_relocated = o->base != 0 && (ph->p_flags & PF_W);
		} else if (ph->p_type == PT_GNU_RELRO) {
			/* What the loader made read-only: whole pages, both ends rounded down (a
			 * last partial page stays writable, and must stay so). */
			uintptr_t start = o->base + ph->p_vaddr;
			o->relro_start = start & ~(page - 1);
			o->relro_end = (start + ph->p_memsz) & ~(page - 1);
		}
	}
}

/* Whether addr lies in one of the object's executable segments: a lazy slot not bound yet
 * holds an address in the object's own PLT. */
static bool in_text(const struct object *o, uintptr_t addr)
{
	for (ElfW(Half) i = 0; i < o->phnum; i++) {
		const ElfW(Phdr) *ph = &o->phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		uintptr_t s = o->base + ph->p_vaddr;
		if (addr >= s && addr - s < ph->p_memsz)
			return true;
	}
	return false;
}

/* ---- objects loaded at start-up ---- */

static int collect_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct walk *w = arg;
	struct object o;

	(void)size;
	if (w->nobjs >= STARTUP_MAX)
		return 0;   /* beyond: not counted as loaded at start-up (lazy slots left alone) */
	object_init(&o, info, w->page);
	struct startup *e = &w->objs[w->nobjs++];
	*e = (struct startup){ .base = o.base, .name = info->dlpi_name ? info->dlpi_name : "",
			       .dyn = o.dyn };
	uintptr_t soname = 0;
	bool has_soname = false;
	for (const ElfW(Dyn) *d = o.dyn; d && d->d_tag != DT_NULL; d++) {
		if (d->d_tag == DT_STRTAB)
			e->strtab = dyn_ptr(&o, d->d_un.d_ptr);
		else if (d->d_tag == DT_SONAME) {
			soname = d->d_un.d_val;
			has_soname = true;
		}
	}
	if (!e->strtab)
		e->dyn = NULL;
	else if (has_soname)
		e->soname = (const char *)(e->strtab + soname);
	return 0;
}

static bool needs(const struct startup *from, const struct startup *to)
{
	for (const ElfW(Dyn) *d = from->dyn; d && d->d_tag != DT_NULL; d++) {
		if (d->d_tag != DT_NEEDED)
			continue;
		const char *needed = (const char *)(from->strtab + d->d_un.d_val);
		if ((to->soname && strcmp(to->soname, needed) == 0) ||
		    strcmp(lg_base_name(to->name), needed) == 0)
			return true;
	}
	return false;
}

static void mark_startup(struct walk *w)
{
	bool changed = true;

	/* dl_iterate_phdr lists the executable first. */
	for (unsigned i = 0; i < w->nobjs; i++) {
		struct startup *e = &w->objs[i];
		e->in = i == 0 || e->base == w->self || lg_preload_names(e->name);
	}
	while (changed) {
		changed = false;
		for (unsigned i = 0; i < w->nobjs; i++) {
			if (!w->objs[i].in)
				continue;
			for (unsigned j = 0; j < w->nobjs; j++) {
				if (!w->objs[j].in && needs(&w->objs[i], &w->objs[j])) {
					w->objs[j].in = true;
					changed = true;
				}
			}
		}
	}
}

static bool loaded_at_startup(const struct walk *w, uintptr_t base)
{
	for (unsigned i = 0; i < w->nobjs; i++)
		if (w->objs[i].base == base)
			return w->objs[i].in;
	return false;
}

/* ---- rebinding ---- */

/* Whether the word at addr can be written now, asked of the kernel: FUTEX_WAKE_OP adds 0 to it
 * with an atomic instruction (so a concurrent store, such as the loader binding that slot, is
 * neither torn nor lost) and fails with EFAULT where our store would fault. It wakes no one. */
static bool word_writable(void *addr)
{
	static int nobody;

	return syscall(SYS_futex, &nobody, FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG, 0, 0, addr,
		       FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_EQ, 0)) >= 0;
}

/* Stores into an object's read-only RELRO slots, made together: one mprotect to make their
 * pages writable and one to make them read-only again (a few per object, on one page). */
#define RELRO_PENDING_MAX 16u
struct relro_stores {
	void **slot[RELRO_PENDING_MAX];
	void *to[RELRO_PENDING_MAX];
	unsigned n;
};

/* Store to into slot now if the kernel says it can be written, or queue it in rs if it is in a
 * read-only RELRO page. False: left alone (read-only, and not by the loader). */
static bool store_slot(const struct object *o, struct relro_stores *rs, void **slot, void *to)
{
	uintptr_t a = (uintptr_t)slot;

	if (word_writable(slot)) {
		/* Outside RELRO, or a RELRO page another tool made writable (and may write again):
		 * its protection is left as it is. */
		__atomic_store_n(slot, to, __ATOMIC_RELAXED);
		return true;
	}
	if (a < o->relro_start || a >= o->relro_end || rs->n >= RELRO_PENDING_MAX)
		return false;   /* read-only, and not by the loader: left alone */
	rs->slot[rs->n] = slot;
	rs->to[rs->n++] = to;
	return true;
}

/* The queued RELRO stores: their pages writable for the stores, then read-only again, as the
 * loader left them. Returns how many could not be made. */
static unsigned relro_flush(const struct object *o, struct relro_stores *rs)
{
	if (!rs->n)
		return 0;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (unsigned i = 0; i < rs->n; i++) {
		uintptr_t page = (uintptr_t)rs->slot[i] & ~(o->page - 1);
		lo = page < lo ? page : lo;
		hi = page + o->page > hi ? page + o->page : hi;
	}
	if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) != 0)
		return rs->n;
	for (unsigned i = 0; i < rs->n; i++)
		__atomic_store_n(rs->slot[i], rs->to[i], __ATOMIC_RELAXED);
	mprotect((void *)lo, hi - lo, PROT_READ);
	return 0;
}

/* A slot is pointed at the allocator if it holds our hook (the loader bound it to us: the
 * allocator is what the hook would call), or, not bound yet, if the loader would bind it to us:
 * the object was loaded at start-up, does not define the symbol itself, and the global lookup
 * gives our hook. */
static void rebind_slots(struct walk *w, const struct object *o, bool startup,
			 const ElfW(Rela) *rel, size_t n, const ElfW(Sym) *symtab,
			 const char *strtab, size_t strsz)
{
	struct relro_stores rs = { .n = 0 };
	unsigned done = 0;

	for (size_t i = 0; i < n; i++) {
		if (ELF64_R_TYPE(rel[i].r_info) != JUMP_SLOT)
			continue;
		const ElfW(Sym) *sym = &symtab[ELF64_R_SYM(rel[i].r_info)];
		if (sym->st_name >= strsz)
			continue;
		const char *name = strtab + sym->st_name;
		for (unsigned k = 0; k < LG_ARRAY_SIZE(w->t); k++) {
			const struct target *t = &w->t[k];
			/* A thousand slots in libstdc++ alone: the first letter turns most away. */
			if (name[0] != t->name[0] || strcmp(name, t->name) != 0)
				continue;
			void **slot = (void **)(o->base + rel[i].r_offset);
			uintptr_t v = (uintptr_t)__atomic_load_n(slot, __ATOMIC_RELAXED);
			bool lazy = startup && t->global && sym->st_shndx == SHN_UNDEF &&
				    in_text(o, v);
			if (v == (uintptr_t)t->hook || lazy) {
				if (store_slot(o, &rs, slot, t->to))
					done++;
				else
					w->failed = true;
			}
			break;
		}
	}
	unsigned lost = relro_flush(o, &rs);
	if (lost) {
		done -= lost;
		w->failed = true;
	}
	w->slots += done;
	w->objects += done > 0;
}

static int rebind_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct walk *w = arg;
	struct object o;

	(void)size;
	if (info->dlpi_addr == w->self)
		return 0;
	object_init(&o, info, w->page);
	if (!o.dyn)
		return 0;
	uintptr_t jmprel = 0, symtab = 0, strtab = 0;
	size_t pltrelsz = 0, strsz = 0;
	ElfW(Sxword) pltrel = 0;
	for (const ElfW(Dyn) *dyn = o.dyn; dyn->d_tag != DT_NULL; dyn++) {
		switch (dyn->d_tag) {
		case DT_JMPREL: jmprel = dyn_ptr(&o, dyn->d_un.d_ptr); break;
		case DT_PLTRELSZ: pltrelsz = dyn->d_un.d_val; break;
		case DT_PLTREL: pltrel = (ElfW(Sxword))dyn->d_un.d_val; break;
		case DT_SYMTAB: symtab = dyn_ptr(&o, dyn->d_un.d_ptr); break;
		case DT_STRTAB: strtab = dyn_ptr(&o, dyn->d_un.d_ptr); break;
		case DT_STRSZ: strsz = dyn->d_un.d_val; break;
		default: break;
		}
	}
	if (!jmprel || !symtab || !strtab || pltrel != DT_RELA)
		return 0;
	rebind_slots(w, &o, loaded_at_startup(w, o.base), (const ElfW(Rela) *)jmprel,
		     pltrelsz / sizeof(ElfW(Rela)), (const ElfW(Sym) *)symtab,
		     (const char *)strtab, strsz);
	return 0;
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);
	return v && *v;
}

void lg_alloc_rebind(void)
{
	struct walk w = {
		.t = {
			{ "malloc", (void *)lg_hook_malloc, (void *)lg_alloc.malloc, false },
			{ "free", (void *)lg_hook_free, (void *)lg_alloc.free, false },
			{ "calloc", (void *)lg_hook_calloc, (void *)lg_alloc.calloc, false },
			{ "realloc", (void *)lg_hook_realloc, (void *)lg_alloc.realloc, false },
		},
	};
	Dl_info info;
	struct link_map *self = NULL;

	/* An audit module sees (and may redirect) every PLT call that stays unbound, and
	 * LD_BIND_NOT asks that slots stay as they are: both are left to the loader. */
	if (env_set("LD_AUDIT") || env_set("LD_BIND_NOT")) {
		lg_debug("heap guard off: LD_AUDIT or LD_BIND_NOT is set, so the PLT slots are left "
			 "as the loader keeps them (allocations go through libguard's hooks)");
		return;
	}
	lg_enter();
	if (!dladdr1((void *)lg_alloc_rebind, &info, (void **)&self, RTLD_DL_LINKMAP) || !self) {
		lg_leave();
		return;
	}
	w.self = self->l_addr;
	long page = sysconf(_SC_PAGESIZE);
	w.page = page > 0 && (page & (page - 1)) == 0 ? (uintptr_t)page : 4096;
	for (unsigned k = 0; k < LG_ARRAY_SIZE(w.t); k++) {
		struct target *t = &w.t[k];
		if (!t->hook || !t->to || t->to == t->hook) {
			lg_leave();
			return;
		}
		t->global = dlsym(RTLD_DEFAULT, t->name) == t->hook;
	}
	/* Mapped, not the guard's arena: with GUARD_DISABLE nothing else would make that arena
	 * (91 KiB of jemalloc metadata and ~100 us of start-up). */
	size_t objs_len = STARTUP_MAX * sizeof(*w.objs);
	void *objs = mmap(NULL, objs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	w.objs = objs == MAP_FAILED ? NULL : objs;
	if (w.objs) {
		dl_iterate_phdr(collect_object, &w);
		mark_startup(&w);
	}
	dl_iterate_phdr(rebind_object, &w);
	if (w.objs)
		munmap(w.objs, objs_len);
	lg_leave();
	lg_debug("heap guard off: %u PLT slots of malloc/free/calloc/realloc in %u objects now call "
		 "the allocator directly%s", w.slots, w.objects,
		 w.failed ? " (some are read-only, or could not be made writable, and still go "
			    "through libguard)" : "");
}

#else

void lg_alloc_rebind(void) {}

#endif
