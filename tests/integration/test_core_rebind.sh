# With the heap guard off (policy or GUARD_DISABLE=1), the PLT calls to malloc, free, calloc and
# realloc of the objects loaded at start-up go straight to the allocator (libguard/rebind.c).
# The program looks at its own PLT slots and says which object each one calls. Checked: lazy
# binding and binding at load into RELRO (-z now; the page is read-only again after), the heap guard on (no change), a library dlopen'ed later (through
# libguard, and its blocks freed by the program), fork and exec, and a program that defines
# malloc itself (every caller stays bound to its definition), and a slot that another tool made
# read-only (left alone).
. "$(dirname "$0")/lib.sh"
cat > slots.h <<'C'
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
/* The object that the PLT slot of sym in the object whose name ends in obj ("" for the
 * executable) calls: the file name, "-" if there is no such slot. */
struct q { const char *obj, *sym; const char *out; void *slot; };
static int look(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct q *q = arg;
	size_t lo = strlen(info->dlpi_name), lq = strlen(q->obj);
	(void)size;
	if (q->out || lo < lq || strcmp(info->dlpi_name + lo - lq, q->obj) != 0 || (!lq && lo))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		if (info->dlpi_phdr[i].p_type != PT_DYNAMIC)
			continue;
		ElfW(Dyn) *d = (ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
		ElfW(Rela) *rel = NULL; ElfW(Sym) *syms = NULL; const char *str = NULL; size_t n = 0;
		for (; d->d_tag != DT_NULL; d++) {
			ElfW(Addr) v = d->d_un.d_ptr < info->dlpi_addr ? info->dlpi_addr + d->d_un.d_ptr : d->d_un.d_ptr;
			if (d->d_tag == DT_JMPREL) rel = (ElfW(Rela) *)v;
			if (d->d_tag == DT_SYMTAB) syms = (ElfW(Sym) *)v;
			if (d->d_tag == DT_STRTAB) str = (const char *)v;
			if (d->d_tag == DT_PLTRELSZ) n = d->d_un.d_val / sizeof(ElfW(Rela));
		}
		for (size_t k = 0; rel && k < n; k++) {
			if (strcmp(str + syms[ELF64_R_SYM(rel[k].r_info)].st_name, q->sym) != 0)
				continue;
			Dl_info di;
			q->slot = (void *)(info->dlpi_addr + rel[k].r_offset);
			void *target = *(void **)q->slot;
			q->out = dladdr(target, &di) && di.dli_fname ? di.dli_fname : "?";
			const char *slash = strrchr(q->out, '/');
			if (slash)
				q->out = slash + 1;
		}
	}
	return 0;
}
static const char *slot_owner(const char *obj, const char *sym)
{
	struct q q = { obj, sym, NULL, NULL };
	dl_iterate_phdr(look, &q);
	return q.out ? q.out : "-";
}
/* The permissions of the mapping that holds that slot ("r--p"), from /proc/self/maps. */
static const char *slot_perms(const char *obj, const char *sym)
{
	static char perms[8] = "-";
	struct q q = { obj, sym, NULL, NULL };
	unsigned long lo, hi, at;
	char line[512];
	dl_iterate_phdr(look, &q);
	FILE *f = fopen("/proc/self/maps", "r");
	at = (unsigned long)q.slot;
	while (q.slot && f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && at >= lo && at < hi)
			break;
	if (f)
		fclose(f);
	return perms;
}
C
cat > plugin.c <<'C'
#include <stdlib.h>
#include <string.h>
#include "slots.h"
char *plugin_block(size_t n) { char *p = malloc(n); memset(p, 'x', n); return realloc(p, 2 * n); }
const char *plugin_slot(void) { return slot_owner("libplugin.so", "malloc"); }
C
cc -D_GNU_SOURCE -shared -fPIC -I. -o libplugin.so plugin.c -ldl || fail "cannot build libplugin.so"
cat > prog.c <<'C'
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "slots.h"
int main(int argc, char **argv)
{
	/* Call each once first: with lazy binding, the slot is bound (to libguard) only then. */
	void *p = calloc(1, 10);
	p = realloc(p, 100);
	void *volatile m = malloc(10);
	free(m);
	free(p);
	printf("malloc %s\nfree %s\ncalloc %s\nrealloc %s\n", slot_owner("", "malloc"),
	       slot_owner("", "free"), slot_owner("", "calloc"), slot_owner("", "realloc"));
	printf("perms %s\n", slot_perms("", "malloc"));
	void *h = dlopen("./libplugin.so", RTLD_NOW);
	if (!h)
		return 2;
	char *(*block)(size_t) = (char *(*)(size_t))dlsym(h, "plugin_block");
	const char *(*slot)(void) = (const char *(*)(void))dlsym(h, "plugin_slot");
	for (int i = 0; i < 20000; i++) {
		char *b = block(1 + i % 3000);
		if (b[i % 3000] != 'x')
			return 3;
		free(b);   /* made by the plugin, through libguard; freed straight by the allocator */
	}
	printf("plugin %s\n", slot());
	if (argc > 1) {
		pid_t pid = fork();
		if (pid == 0) {
			free(malloc(100));
			execl("/bin/echo", "echo", "exec ok", (char *)NULL);
			_exit(4);
		}
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return 5;
	}
	return 0;
}
C
cc -D_GNU_SOURCE -O1 -I. -o prog prog.c -ldl || fail "cannot build prog"
# Bound at load with its PLT slots in RELRO (read-only once the loader is done).
cc -D_GNU_SOURCE -O1 -I. -Wl,-z,relro,-z,now -o prog_now prog.c -ldl || fail "cannot build prog_now"
cat > off.json <<'J'
{ "version": 1, "heap": { "enabled": false } }
J
expect() {   # expect LABEL FILE fn=owner...
  local label=$1 file=$2; shift 2
  for kv in "$@"; do
    grep -qx "${kv%%=*} ${kv#*=}" "$file" || { cat "$file"; fail "$label: expected '${kv%%=*}' to call ${kv#*=}"; }
  done
}
JE=libjemalloc.so.2
for bind in lazy now; do
  prog=./prog
  if [ $bind = now ]; then prog=./prog_now; fi
  GUARD_POLICY=$T/off.json GUARD_LOG=debug guarded $prog fork >out.off 2>err.off; rc=$?
  [ $rc -eq 0 ] || { cat err.off; fail "heap off ($bind): exit status $rc"; }
  expect "heap off, $bind binding" out.off malloc=$JE free=$JE calloc=$JE realloc=$JE plugin=libguard.so
  grep -q "exec ok" out.off || fail "heap off ($bind): the forked child did not exec"
  # Bound at load (RELRO), the slot's page is read-only again; lazily bound, it stays writable.
  if [ $bind = now ]; then want=r--p; else want=rw-p; fi
  expect "heap off, $bind binding, the slot's page" out.off perms=$want
  grep -q "heap guard off: [1-9][0-9]* PLT slots" err.off || { cat err.off; fail "heap off ($bind): no rebinding said"; }
  GUARD_DISABLE=1 guarded $prog >out.dis 2>&1 || fail "GUARD_DISABLE ($bind): exit status $?"
  expect "GUARD_DISABLE=1, $bind binding" out.dis malloc=$JE free=$JE calloc=$JE realloc=$JE
  # The heap guard on: every call still goes through libguard, which samples.
  guarded $prog >out.on 2>&1 || fail "default policy ($bind): exit status $?"
  expect "default policy, $bind binding" out.on malloc=libguard.so free=libguard.so calloc=libguard.so realloc=libguard.so
done
json_ok reports/*.json

# A program that defines malloc, free, calloc and realloc itself: libguard leaves every caller
# bound to it, here a library the program links.
cat > own.c <<'C'
#include <stdio.h>
#include <stdlib.h>
extern void *__libc_malloc(size_t), *__libc_calloc(size_t, size_t), *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
char *plugin_block(size_t n);
long mine;
void *malloc(size_t n) { mine++; return __libc_malloc(n); }
void free(void *p) { __libc_free(p); }
void *calloc(size_t a, size_t b) { mine++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { mine++; return __libc_realloc(p, n); }
int main(void)
{
	long before = mine;
	for (int i = 0; i < 100; i++)
		free(plugin_block(100));   /* the plugin's PLT slots, bound at start-up */
	printf("own calls %ld\n", mine - before);
	return 0;
}
C
cc -D_GNU_SOURCE -O1 -rdynamic -o own own.c -L. -lplugin -Wl,-rpath,"$T" || fail "cannot build own"
for bind in lazy now; do
  if [ $bind = now ]; then export LD_BIND_NOW=1; fi
  ./own >out.plain 2>&1 || fail "own malloc, without libguard: exit status $?"
  GUARD_POLICY=$T/off.json guarded ./own >out.own 2>&1; rc=$?
  [ $rc -eq 0 ] || { cat out.own; fail "own malloc ($bind binding): exit status $rc"; }
  grep -qx "own calls 200" out.plain || fail "the plugin did not call the program's malloc even without libguard"
  cmp -s out.plain out.own || { cat out.plain out.own; fail "under libguard ($bind binding), the plugin did not call the program's own malloc as often as without it"; }
  unset LD_BIND_NOW
done

# Libraries dlopen'ed with RTLD_DEEPBIND by a constructor that runs before libguard's init: one
# defines malloc and free itself (its slots are bound to them), one is bound lazily and needs a
# library that defines them (the loader would bind its slots there). Neither may be pointed at
# the allocator: blocks from glibc would reach jemalloc.
cat > deepown.c <<'C'
#include <stddef.h>
extern void *__libc_malloc(size_t); extern void __libc_free(void *);
long own_calls;
void *malloc(size_t n) { own_calls++; return __libc_malloc(n); }
void free(void *p) { own_calls++; __libc_free(p); }
void *keep(size_t n) { return malloc(n); }
void drop(void *p) { free(p); }
C
cat > deepdep.c <<'C'
#include <stddef.h>
extern void *__libc_malloc(size_t); extern void __libc_free(void *);
long own_calls;
void *malloc(size_t n) { own_calls++; return __libc_malloc(n); }
void free(void *p) { own_calls++; __libc_free(p); }
C
cat > deepuser.c <<'C'
#include <stdlib.h>
void *keep(size_t n) { return malloc(n); }
void drop(void *p) { free(p); }
C
cat > deepinit.c <<'C'
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
void *blocks[100];
void (*drop_fn)(void *);
long *calls;
__attribute__((constructor)) static void init(void)
{
	const char *lib = getenv("DEEP_LIB");
	void *h = lib ? dlopen(lib, RTLD_LAZY | RTLD_DEEPBIND) : NULL;
	if (!h)
		return;
	void *(*keep)(size_t) = (void *(*)(size_t))dlsym(h, "keep");
	drop_fn = (void (*)(void *))dlsym(h, "drop");
	calls = (long *)dlsym(h, "own_calls");
	for (int i = 0; i < 100; i++)
		blocks[i] = keep(1000 + i);   /* drop is not called yet: its free slot stays lazy */
}
C
cat > deep.c <<'C'
#include <stdio.h>
extern void *blocks[100];
extern void (*drop_fn)(void *);
extern long *calls;
int main(void)
{
	if (!drop_fn || !calls)
		return 2;
	for (int i = 0; i < 100; i++)
		drop_fn(blocks[i]);
	printf("own calls %ld\n", *calls);
	return 0;
}
C
cc -shared -fPIC -o libdeepown.so deepown.c || fail "cannot build libdeepown.so"
cc -shared -fPIC -o libdeepdep.so deepdep.c || fail "cannot build libdeepdep.so"
cc -shared -fPIC -Wl,-z,lazy -o libdeepuser.so deepuser.c -L. -ldeepdep -Wl,-rpath,"$T" || fail "cannot build libdeepuser.so"
cc -shared -fPIC -o libdeepinit.so deepinit.c -ldl || fail "cannot build libdeepinit.so"
cc -o deep deep.c -L. -ldeepinit -Wl,-rpath,"$T" || fail "cannot build deep"
for lib in libdeepown.so libdeepuser.so; do
  DEEP_LIB=$T/$lib ./deep >out.plain 2>&1 || fail "$lib without libguard: exit status $?"
  grep -qx "own calls 200" out.plain || fail "$lib without libguard: $(cat out.plain)"
  for how in GUARD_DISABLE=1 GUARD_POLICY=$T/off.json; do
    env DEEP_LIB=$T/$lib $how LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./deep >out.deep 2>&1; rc=$?
    [ $rc -eq 0 ] || { cat out.deep; fail "$lib dlopen'ed with RTLD_DEEPBIND, $how: exit status $rc"; }
    cmp -s out.plain out.deep || { cat out.deep; fail "$lib dlopen'ed with RTLD_DEEPBIND, $how: its own malloc/free was not kept"; }
  done
done

# A tool that makes the executable's slots read-only before libguard's init (a constructor of a
# library the program needs runs first). They were bound at load (-z now) but lie outside RELRO
# (-z norelro), so only the kernel can say a store there would fault. The slot is left alone,
# and the program runs, its malloc still going through libguard. And the other way round: a tool
# that made a RELRO page writable again (to write it later itself) finds it still writable.
cat > protect.c <<'C'
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "slots.h"
__attribute__((constructor)) static void protect(void)
{
	struct q q = { "", "malloc", NULL, NULL };
	dl_iterate_phdr(look, &q);
	if (!q.slot)
		return;
	uintptr_t page = (uintptr_t)q.slot & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1);
	int prot = getenv("PROTECT_RW") ? PROT_READ | PROT_WRITE : PROT_READ;
	mprotect((void *)page, (size_t)sysconf(_SC_PAGESIZE), prot);
}
C
cat > protected.c <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "slots.h"
/* The program's own data starts on a page of its own: the read-only page holds only the GOT. */
__attribute__((aligned(65536))) int data_page = 1;
int main(void)
{
	for (int i = 0; i < 1000; i++) {
		void *volatile m = malloc(100 + i);
		free(m);
	}
	printf("malloc %s\nperms %s\n", slot_owner("", "malloc"), slot_perms("", "malloc"));
	return 0;
}
C
cc -D_GNU_SOURCE -shared -fPIC -I. -o libprotect.so protect.c -ldl || fail "cannot build libprotect.so"
cc -D_GNU_SOURCE -O1 -I. -Wl,-z,norelro,-z,now -o protected protected.c -Wl,--no-as-needed \
  -L. -lprotect -ldl -Wl,-rpath,"$T" || fail "cannot build protected"
./protected >out.prot 2>&1; rc=$?
[ $rc -eq 0 ] || { cat out.prot; fail "the read-only slot's program, without libguard: exit status $rc"; }
grep -qx "perms r--p" out.prot || { cat out.prot; fail "the tool did not make the slot's page read-only"; }
for how in GUARD_DISABLE=1 GUARD_POLICY=$T/off.json; do
  env $how GUARD_LOG=debug LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./protected >out.prot 2>err.prot; rc=$?
  [ $rc -eq 0 ] || { cat out.prot err.prot; fail "a slot made read-only by another tool, $how: exit status $rc (libguard wrote to it?)"; }
  expect "a read-only slot outside RELRO, $how" out.prot malloc=libguard.so perms=r--p
done
grep -q "some are read-only" err.prot || { cat err.prot; fail "the read-only slot left alone was not said"; }
cc -D_GNU_SOURCE -O1 -I. -Wl,-z,relro,-z,now -o unprotected protected.c -Wl,--no-as-needed \
  -L. -lprotect -ldl -Wl,-rpath,"$T" || fail "cannot build unprotected"
PROTECT_RW=1 GUARD_POLICY=$T/off.json guarded ./unprotected >out.unprot 2>&1 || fail "a RELRO slot made writable by another tool: exit status $?"
expect "a RELRO slot made writable by another tool" out.unprot malloc=$JE perms=rw-p

# LD_BIND_NOT: the loader never writes a slot, and neither does libguard.
GUARD_POLICY=$T/off.json LD_BIND_NOT=1 guarded ./prog >out.bindnot 2>&1 || fail "LD_BIND_NOT: exit status $?"
grep -q "^malloc $JE" out.bindnot && { cat out.bindnot; fail "LD_BIND_NOT: a slot was rebound"; }
echo "ok: heap off calls the allocator straight from the PLT; heap on, later dlopens and a program's own malloc are left alone"
