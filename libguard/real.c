/* The real functions behind the hooks (see real.h). */
#include "libguard/internal.h"

#include <dlfcn.h>
#include <errno.h>

struct lg_real_table lg_real;
_Atomic int lg_real_ready;
static _Atomic int real_resolving;

enum { REQUIRED = 1, OPTIONAL = 0 };

int lg_real_init(void)
{
	static int missing;
	int expected = 0;

	if (atomic_load_explicit(&lg_real_ready, memory_order_acquire))
		return missing;
	/* One resolver; a hook re-entered from inside dlsym (or another thread arriving meanwhile)
	 * returns at once and its caller falls back (raw syscall or ENOSYS). */
	if (!atomic_compare_exchange_strong(&real_resolving, &expected, 1))
		return 0;
	lg_enter();
	int saved = errno;
#define LG_REAL_RESOLVE(req, ret, name, params)                                                    \
	do {                                                                                       \
		void *sym = dlsym(RTLD_NEXT, #name);                                               \
		if (!sym && req == REQUIRED)                                                       \
			missing++;                                                                 \
		*(void **)&lg_real.name = sym;                                                     \
	} while (0);
	LG_REAL_FUNCS(LG_REAL_RESOLVE)
#undef LG_REAL_RESOLVE
	errno = saved;
	lg_leave();
	atomic_store_explicit(&lg_real_ready, 1, memory_order_release);
	return missing;
}
