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
 *   - a slot not yet bound (lazy binding) unless the global lookup of the name would give our
 *     hook, as the loader's own lookup would;
 *   - GLOB_DAT slots (code built with -fno-plt, and function pointers): the address of malloc
 *     must stay the same everywhere, and these slots also serve to take it;
 *   - objects loaded later (dlopen), and libguard itself.
 * A slot in a RELRO segment (the object was bound at load: -z now) is made writable for the one
 * store and read-only again. Each store is one aligned 8-byte word: a thread calling through the
 * slot meanwhile jumps to either function, and both do the same.
 *
 * Nothing here runs if the heap guard could sample later: only READY-time decisions call it.
 */
#include "libguard/internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
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

struct walk {
	struct target t[4];
	uintptr_t page;   /* the page size (not LG_PAGE: RELRO is protected in the system's pages) */
	uintptr_t self;   /* libguard's load address: skipped */
	unsigned slots, objects;
	bool failed;
};

struct object {
	uintptr_t base, page;
	const ElfW(Phdr) *phdr;
	ElfW(Half) phnum;
	uintptr_t relro_start, relro_end;
};

/* A dynamic entry's address: glibc relocates most of them in place, the vDSO's are not. */
static uintptr_t dyn_ptr(const struct object *o, ElfW(Addr) v)
{
	return v < o->base ? o->base + v : v;
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

static bool store_slot(const struct object *o, void **slot, void *to)
{
	uintptr_t a = (uintptr_t)slot;

	if (a >= o->relro_start && a < o->relro_end) {
		uintptr_t page = a & ~(o->page - 1);
		if (mprotect((void *)page, o->page, PROT_READ | PROT_WRITE) != 0)
			return false;
		__atomic_store_n(slot, to, __ATOMIC_RELAXED);
		/* Back to what the loader left: RELRO is read-only. */
		mprotect((void *)page, o->page, PROT_READ);
		return true;
	}
	__atomic_store_n(slot, to, __ATOMIC_RELAXED);
	return true;
}

static void rebind_slots(struct walk *w, const struct object *o, const ElfW(Rela) *rel, size_t n,
			 const ElfW(Sym) *symtab, const char *strtab, size_t strsz)
{
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
			if (strcmp(name, t->name) != 0)
				continue;
			void **slot = (void **)(o->base + rel[i].r_offset);
			uintptr_t v = (uintptr_t)__atomic_load_n(slot, __ATOMIC_RELAXED);
			if (v == (uintptr_t)t->hook || (t->global && in_text(o, v))) {
				if (store_slot(o, slot, t->to))
					done++;
				else
					w->failed = true;
			}
			break;
		}
	}
	w->slots += done;
	w->objects += done > 0;
}

static int rebind_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct walk *w = arg;
	struct object o = { .base = info->dlpi_addr, .page = w->page, .phdr = info->dlpi_phdr,
			    .phnum = info->dlpi_phnum };
	const ElfW(Dyn) *dyn = NULL;

	(void)size;
	if (o.base == w->self)
		return 0;
	for (ElfW(Half) i = 0; i < o.phnum; i++) {
		if (o.phdr[i].p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(o.base + o.phdr[i].p_vaddr);
		else if (o.phdr[i].p_type == PT_GNU_RELRO) {
			/* What the loader made read-only: whole pages, both ends rounded down (a
			 * last partial page stays writable, and must stay so). */
			uintptr_t start = o.base + o.phdr[i].p_vaddr;
			o.relro_start = start & ~(o.page - 1);
			o.relro_end = (start + o.phdr[i].p_memsz) & ~(o.page - 1);
		}
	}
	if (!dyn)
		return 0;
	uintptr_t jmprel = 0, symtab = 0, strtab = 0;
	size_t pltrelsz = 0, strsz = 0;
	ElfW(Sxword) pltrel = 0;
	for (; dyn->d_tag != DT_NULL; dyn++) {
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
	rebind_slots(w, &o, (const ElfW(Rela) *)jmprel, pltrelsz / sizeof(ElfW(Rela)),
		     (const ElfW(Sym) *)symtab, (const char *)strtab, strsz);
	return 0;
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
	dl_iterate_phdr(rebind_object, &w);
	lg_leave();
	lg_debug("heap guard off: %u PLT slots of malloc/free/calloc/realloc in %u objects now call "
		 "the allocator directly%s", w.slots, w.objects,
		 w.failed ? " (some could not be made writable and still go through libguard)" : "");
}

#else

void lg_alloc_rebind(void) {}

#endif
