/* Symbolization at report time: module, offset and function name for a code address.
 *
 * The module and its load base come from dl_iterate_phdr (the PT_LOAD segment holding the
 * address). Names come from dladdr when the dynamic symbol table has one; otherwise from the
 * object's .symtab, read from the file on disk, which is what names static and non-exported
 * functions of the main executable (the same source unw_get_proc_name uses). Each object's
 * function symbols are read once, sorted, and kept until lg_symbol_reset(); the names point into
 * the file mapping, or into a private string arena for names copied from dladdr (those live in the
 * loaded object, which a dlclose could unmap before the report is written).
 *
 * Only for report time: this opens and maps files, allocates (lg_mem_alloc) and takes glibc's
 * loader lock, so a caller must not hold any lock a hook can take.
 */
#include "libguard/internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYMBOL_MAX_PHDRS 64
/* Names are copied into chunks of one page (a report names a few hundred frames at most); a
 * longer name gets a chunk of its own. */
#define NAME_CHUNK (4096u - 2 * sizeof(size_t))

struct fn_symbol {
	uintptr_t start;   /* relative to the load base for ET_DYN, absolute for ET_EXEC */
	uintptr_t size;
	const char *name;  /* inside the file mapping */
	unsigned rank;     /* among symbols at one address, the highest is reported */
};

struct module {
	char *path;
	uintptr_t base;
	bool symtab_read;
	void *map;
	size_t map_len;
	struct fn_symbol *syms;
	size_t nsyms;
};

/* The object holding an address, copied out of dl_iterate_phdr's callback: the link map entry
 * behind dlpi_name and dlpi_phdr can go away with a dlclose once the callback returns. */
struct found {
	uintptr_t addr;
	bool hit;
	bool is_exe;
	bool is_vdso;
	uintptr_t base;
	char name[PATH_MAX];
	ElfW(Half) phnum;
	ElfW(Phdr) phdr[SYMBOL_MAX_PHDRS];
};

struct name_chunk {
	struct name_chunk *next;
	size_t used;
	char data[];
};

static struct {
	pthread_mutex_t lock;
	struct module *mods;
	size_t nmods, cap;
	struct name_chunk *names;
	char exe[PATH_MAX];
} sym = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* ---------------------------------------------------------------------------------------------
 * Finding the object
 * ------------------------------------------------------------------------------------------- */

static bool range_holds(const struct dl_phdr_info *info, uintptr_t addr)
{
	for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && addr >= lo && addr - lo < ph->p_memsz)
			return true;
	}
	return false;
}

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct found *f = arg;
	uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);

	(void)size;
	if (!range_holds(info, f->addr))
		return 0;
	f->hit = true;
	f->base = info->dlpi_addr;
	/* The vDSO has no file to read; glibc names it "linux-vdso.so.1" (older ones ""), so it is
	 * told apart by the address the kernel passed in AT_SYSINFO_EHDR. */
	f->is_vdso = vdso != 0 && range_holds(info, vdso);
	/* glibc lists the main program first with dlpi_name "" (its l_name). */
	f->is_exe = !f->is_vdso && (info->dlpi_name == NULL || info->dlpi_name[0] == '\0');
	if (info->dlpi_name != NULL) {
		strncpy(f->name, info->dlpi_name, sizeof(f->name) - 1);
		f->name[sizeof(f->name) - 1] = '\0';
	}
	f->phnum = info->dlpi_phnum <= SYMBOL_MAX_PHDRS ? info->dlpi_phnum : 0;
	memcpy(f->phdr, info->dlpi_phdr, f->phnum * sizeof(ElfW(Phdr)));
	return 1;
}

/* dladdr and dl_iterate_phdr name the executable by argv[0] or ""; /proc/self/exe is the file. */
static const char *exe_path(void)
{
	if (sym.exe[0] == '\0') {
		ssize_t n = readlink("/proc/self/exe", sym.exe, sizeof(sym.exe) - 1);

		sym.exe[n > 0 ? n : 0] = '\0';
	}
	return sym.exe[0] != '\0' ? sym.exe : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Reading .symtab
 * ------------------------------------------------------------------------------------------- */

static bool in_file(size_t file_len, uint64_t off, uint64_t len)
{
	return off <= file_len && len <= file_len - off;
}

/* The file on disk may not be the image in memory (a package upgrade replaced it): its symbols
 * would then name the wrong functions. Its program headers must equal the loaded ones. */
static bool file_matches(const char *map, size_t len, const Elf64_Ehdr *eh, const struct found *f)
{
	if (f->phnum == 0 || eh->e_phnum != f->phnum || eh->e_phentsize != sizeof(Elf64_Phdr))
		return false;
	if (!in_file(len, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)))
		return false;
	return memcmp(map + eh->e_phoff, f->phdr, f->phnum * sizeof(Elf64_Phdr)) == 0;
}

static int symbol_cmp(const void *a, const void *b)
{
	const struct fn_symbol *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return (x->rank > y->rank) - (x->rank < y->rank);
}

/* A sized global beats a sized local beats an unsized alias at the same address. */
static unsigned symbol_rank(const Elf64_Sym *s)
{
	return (s->st_size != 0 ? 2u : 0u) + (ELF64_ST_BIND(s->st_info) == STB_GLOBAL ? 1u : 0u);
}

/* The name of a defined function symbol, or NULL if s is not one (or its name is bad). */
static const char *function_name(const Elf64_Sym *s, const char *map, const Elf64_Shdr *strtab)
{
	unsigned type = ELF64_ST_TYPE(s->st_info);

	if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
	    s->st_value == 0 || s->st_name >= strtab->sh_size)
		return NULL;
	const char *name = map + strtab->sh_offset + s->st_name;
	/* The name must end inside its table, or it would run off the mapping. */
	if (name[0] == '\0' || memchr(name, '\0', strtab->sh_size - s->st_name) == NULL)
		return NULL;
	return name;
}

static int collect_functions(struct module *m, const char *map, size_t len, const Elf64_Shdr *symtab,
			     const Elf64_Shdr *strtab)
{
	const Elf64_Sym *syms;
	size_t n, kept = 0;

	if (symtab->sh_entsize != sizeof(Elf64_Sym) || symtab->sh_offset % _Alignof(Elf64_Sym) != 0 ||
	    !in_file(len, symtab->sh_offset, symtab->sh_size) ||
	    !in_file(len, strtab->sh_offset, strtab->sh_size))
		return -EINVAL;
	syms = (const Elf64_Sym *)(const void *)(map + symtab->sh_offset);
	n = symtab->sh_size / sizeof(Elf64_Sym);
	/* Count the functions, then keep them: a symbol table is mostly other symbols, and a
	 * table sized for all of them was most of a report's working memory. */
	size_t want = 0;
	for (size_t i = 0; i < n; i++)
		want += function_name(&syms[i], map, strtab) != NULL;
	m->syms = lg_mem_calloc(want ? want : 1, sizeof(*m->syms));
	if (m->syms == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n && kept < want; i++) {
		const Elf64_Sym *s = &syms[i];
		const char *name = function_name(s, map, strtab);

		if (name != NULL)
			m->syms[kept++] = (struct fn_symbol){ s->st_value, s->st_size, name,
							      symbol_rank(s) };
	}
	qsort(m->syms, kept, sizeof(*m->syms), symbol_cmp);
	m->nsyms = kept;
	return 0;
}

static const Elf64_Shdr *section_headers(const char *map, size_t len, const Elf64_Ehdr *eh,
					 size_t *count)
{
	const Elf64_Shdr *sh;
	size_t n = eh->e_shnum;

	if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr) ||
	    eh->e_shoff % _Alignof(Elf64_Shdr) != 0 || !in_file(len, eh->e_shoff, sizeof(Elf64_Shdr)))
		return NULL;
	sh = (const Elf64_Shdr *)(const void *)(map + eh->e_shoff);
	/* More than SHN_LORESERVE sections: e_shnum is 0 and the count is in section 0's sh_size. */
	if (n == 0)
		n = sh[0].sh_size;
	if (!in_file(len, eh->e_shoff, (uint64_t)n * sizeof(Elf64_Shdr)))
		return NULL;
	*count = n;
	return sh;
}

static int parse_symtab(struct module *m, const char *map, size_t len, const struct found *f)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)(const void *)map;
	const Elf64_Shdr *sh;
	size_t nsh = 0;

	if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || (eh->e_type != ET_EXEC && eh->e_type != ET_DYN))
		return -ENOEXEC;
	if (!file_matches(map, len, eh, f))
		return -ESTALE;
	sh = section_headers(map, len, eh, &nsh);
	if (sh == NULL)
		return -ENOEXEC;
	for (size_t i = 0; i < nsh; i++) {
		if (sh[i].sh_type != SHT_SYMTAB)
			continue;
		if (sh[i].sh_link >= nsh || sh[sh[i].sh_link].sh_type != SHT_STRTAB)
			return -ENOEXEC;
		return collect_functions(m, map, len, &sh[i], &sh[sh[i].sh_link]);
	}
	return -ENOENT;   /* stripped */
}

/* Map the object's file read-only and index its functions. The executable is read through
 * /proc/self/exe, which still works when the file was deleted or replaced after exec. */
static void module_read_symtab(struct module *m, const struct found *f)
{
	const char *file = f->is_exe ? "/proc/self/exe" : m->path;
	struct stat st;
	void *map;
	int fd;

	m->symtab_read = true;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
		close(fd);
		return;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return;
	if (parse_symtab(m, map, (size_t)st.st_size, f) != 0 || m->nsyms == 0) {
		lg_mem_free(m->syms);
		m->syms = NULL;
		m->nsyms = 0;
		munmap(map, (size_t)st.st_size);
		return;
	}
	m->map = map;
	m->map_len = (size_t)st.st_size;
}

/* The function holding rel: the greatest start <= rel whose size covers it; a symbol without a
 * size (hand-written assembly) covers everything up to the next one. */
static const struct fn_symbol *module_lookup(const struct module *m, uintptr_t rel)
{
	size_t lo = 0, hi = m->nsyms;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->syms[mid].start <= rel)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* lo is the first start > rel; walk back over the few symbols that may still enclose rel
	 * (aliases at one address, a nested or overlapping symbol). */
	for (size_t i = lo, steps = 0; i > 0 && steps < 8; i--, steps++) {
		const struct fn_symbol *s = &m->syms[i - 1];

		if (s->size == 0 ? i == lo : rel - s->start < s->size)
			return s;
	}
	return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The cache
 * ------------------------------------------------------------------------------------------- */

static struct module *module_get(const struct found *f, const char *path)
{
	struct module *m;

	for (size_t i = 0; i < sym.nmods; i++)
		if (sym.mods[i].base == f->base && strcmp(sym.mods[i].path, path) == 0)
			return &sym.mods[i];
	if (sym.nmods == sym.cap) {
		size_t cap = sym.cap ? sym.cap * 2 : 16;
		struct module *mods = lg_mem_realloc(sym.mods, cap * sizeof(*mods));

		if (mods == NULL)
			return NULL;
		sym.mods = mods;
		sym.cap = cap;
	}
	m = &sym.mods[sym.nmods];
	*m = (struct module){ .path = lg_mem_strdup(path), .base = f->base };
	if (m->path == NULL)
		return NULL;
	sym.nmods++;
	return m;
}

/* A copy of a name that lives until lg_symbol_reset. */
static const char *name_keep(const char *s)
{
	size_t len = strlen(s) + 1;
	struct name_chunk *c = sym.names;

	if (len > NAME_CHUNK) {
		/* Its own chunk, behind the one being filled. */
		c = lg_mem_alloc(sizeof(*c) + len);
		if (c == NULL)
			return NULL;
		c->used = len;
		memcpy(c->data, s, len);
		struct name_chunk **at = sym.names ? &sym.names->next : &sym.names;
		c->next = *at;
		*at = c;
		return c->data;
	}
	/* (A long name's chunk, at the head when it came first, has used > NAME_CHUNK.) */
	if (c == NULL || c->used > NAME_CHUNK || NAME_CHUNK - c->used < len) {
		c = lg_mem_alloc(sizeof(*c) + NAME_CHUNK);
		if (c == NULL)
			return NULL;
		c->next = sym.names;
		c->used = 0;
		sym.names = c;
	}
	memcpy(c->data + c->used, s, len);
	c->used += len;
	return c->data + c->used - len;
}

/* ---------------------------------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------------------------------- */

static const char *module_path(const struct found *f)
{
	if (f->is_vdso)
		return "[vdso]";
	if (f->is_exe)
		return exe_path() != NULL ? exe_path() : "/proc/self/exe";
	return f->name[0] != '\0' ? f->name : NULL;
}

static void name_from_dladdr(uintptr_t addr, struct lg_symbol *out)
{
	Dl_info info;

	/* A report frame is a return address: addr - 1 is inside the call, which may be the last
	 * instruction of a noreturn caller whose next byte already belongs to another function. */
	if (dladdr((void *)(addr - 1), &info) == 0 || info.dli_sname == NULL || info.dli_saddr == NULL)
		return;
	out->fn = name_keep(info.dli_sname);
	if (out->fn != NULL)
		out->fn_offset = addr - (uintptr_t)info.dli_saddr;
}

static void name_from_symtab(uintptr_t addr, struct module *m, const struct found *f,
			     struct lg_symbol *out)
{
	const struct fn_symbol *s;

	if (!m->symtab_read)
		module_read_symtab(m, f);
	/* dlpi_addr is the load bias: 0 for ET_EXEC, whose symbol values are absolute, and the base
	 * of an ET_DYN object (PIE or library), whose values are relative to it. */
	s = m->nsyms ? module_lookup(m, addr - 1 - f->base) : NULL;
	if (s == NULL)
		return;
	out->fn = s->name;
	out->fn_offset = addr - (f->base + s->start);
}

static int symbolize_locked(uintptr_t addr, struct lg_symbol *out)
{
	/* Large (program headers and a path): static, used under the lock. */
	static struct found f;
	const char *path;
	struct module *m;

	f.hit = f.is_exe = f.is_vdso = false;
	f.name[0] = '\0';
	f.phnum = 0;
	f.addr = addr - 1;
	dl_iterate_phdr(find_cb, &f);
	if (!f.hit)
		return -ENOENT;   /* anonymous code: a JIT, a trampoline */
	out->offset = addr - f.base;
	path = module_path(&f);
	m = path != NULL ? module_get(&f, path) : NULL;
	if (m == NULL)
		return 0;
	out->module = m->path;
	if (f.is_vdso)
		m->symtab_read = true;   /* no file behind it; dladdr reads its dynamic symbols */
	name_from_dladdr(addr, out);
	if (out->fn == NULL)
		name_from_symtab(addr, m, &f, out);
	return 0;
}

/* The report lock already serializes reports; this lock only keeps the cache whole if two callers
 * ever meet. fork must not copy it held (the child's own report would wait for ever). No
 * pthread_atfork of its own: one registered here, lazily, would run before the runtime's (prepare
 * handlers run in reverse order of registration) and take this lock while the guardian, holding
 * the report lock, waits for it -- a deadlock seen with a shell forking while a signal report was
 * being written. The runtime's prepare handler takes the report lock, so no report is naming an
 * address during fork, and the child re-initialises the lock (lg_symbol_atfork_child). */
void lg_symbol_atfork_child(void)
{
	pthread_mutex_init(&sym.lock, NULL);
}

int lg_symbolize(uintptr_t addr, struct lg_symbol *out)
{
	int rc;

	*out = (struct lg_symbol){ 0 };
	if (addr == 0)
		return -ENOENT;
	/* Busy: the opens, mmaps and the loader's own allocations are the guard's, not the host's. */
	lg_enter();
	pthread_mutex_lock(&sym.lock);
	rc = symbolize_locked(addr, out);
	pthread_mutex_unlock(&sym.lock);
	lg_leave();
	return rc;
}

void lg_symbol_reset(void)
{
	lg_enter();
	pthread_mutex_lock(&sym.lock);
	for (size_t i = 0; i < sym.nmods; i++) {
		struct module *m = &sym.mods[i];

		if (m->map != NULL)
			munmap(m->map, m->map_len);
		lg_mem_free(m->syms);
		lg_mem_free(m->path);
	}
	lg_mem_free(sym.mods);
	sym.mods = NULL;
	sym.nmods = sym.cap = 0;
	while (sym.names != NULL) {
		struct name_chunk *next = sym.names->next;

		lg_mem_free(sym.names);
		sym.names = next;
	}
	pthread_mutex_unlock(&sym.lock);
	lg_leave();
}
