#!/bin/bash
# Heap guard, issue 3: no deadlock when threads allocate (and get sampled) while others fork
# (children allocate, then exit or exec) and dlopen/dlclose a library in a loop (the loader lock:
# unwinding takes it through dl_iterate_phdr). Default sampling and every allocation sampled; each
# run is bounded by a timeout, and a hang fails the test.
. "$(dirname "$0")/lib.sh"

cat > plugin.c <<'EOF'
#include <stdlib.h>
static void *kept;
/* Allocates while the loader lock is held (constructors run under it), frees in the destructor. */
__attribute__((constructor)) static void plugin_init(void) { kept = malloc(4096); }
__attribute__((destructor)) static void plugin_fini(void) { free(kept); }
int plugin_value(void) { return kept != NULL; }
EOF
cc -shared -fPIC -O1 -o plugin.so plugin.c || fail "cannot build plugin"

build_c stress -ldl <<'EOF'
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static atomic_int stop;
static atomic_long bad_children, forks, opens;
static const char *plugin;
static void *allocator(void *arg)
{
	unsigned seed = (unsigned)(size_t)arg;
	void *slots[256] = { 0 };
	while (!atomic_load(&stop)) {
		for (int i = 0; i < 1000; i++) {
			unsigned k = rand_r(&seed) % 256;
			size_t size = 16 + rand_r(&seed) % 8192;
			switch (rand_r(&seed) % 4) {
			case 0: free(slots[k]); slots[k] = malloc(size); break;
			case 1: free(slots[k]); slots[k] = calloc(1, size); break;
			case 2: { void *q = realloc(slots[k], size); if (q) slots[k] = q; break; }
			default: free(slots[k]); slots[k] = NULL; break;
			}
			if (slots[k])
				memset(slots[k], 1, 16);
		}
	}
	for (int k = 0; k < 256; k++)
		free(slots[k]);
	return NULL;
}
static void *forker(void *arg)
{
	(void)arg;
	for (int n = 0; !atomic_load(&stop); n++) {
		pid_t pid = fork();
		if (pid == 0) {
			/* The child: its heap is a copy; allocate and free in it, then leave. */
			for (int i = 0; i < 1000; i++)
				free(malloc(16 + i));
			char *keep = malloc(100);
			keep[0] = 1;
			if (n % 2)
				execl("/bin/true", "true", (char *)NULL);
			_exit(0);
		}
		int status;
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			atomic_fetch_add(&bad_children, 1);
		atomic_fetch_add(&forks, 1);
	}
	return NULL;
}
static void *opener(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		void *h = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			fprintf(stderr, "dlopen: %s\n", dlerror());
			exit(3);
		}
		int (*fn)(void) = (int (*)(void))dlsym(h, "plugin_value");
		if (!fn || fn() != 1)
			exit(4);
		dlclose(h);
		atomic_fetch_add(&opens, 1);
	}
	return NULL;
}
int main(int argc, char **argv)
{
	pthread_t t[5];
	plugin = argv[1];
	(void)argc;
	pthread_create(&t[0], NULL, allocator, (void *)1);
	pthread_create(&t[1], NULL, allocator, (void *)2);
	pthread_create(&t[2], NULL, allocator, (void *)3);
	pthread_create(&t[3], NULL, forker, NULL);
	pthread_create(&t[4], NULL, opener, NULL);
	struct timespec run = { 2, 0 };
	nanosleep(&run, NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < 5; i++)
		pthread_join(t[i], NULL);
	printf("forks %ld opens %ld bad %ld\n", forks, opens, bad_children);
	return bad_children ? 5 : 0;
}
EOF

for rate in 524288 1; do
  printf '{ "version": 1, "heap": { "sample_bytes": %s } }\n' $rate > policy.json
  rm -rf reports; mkdir reports
  out=$(timeout -k 2 30 env GUARD_POLICY=$T/policy.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports \
        ./stress "$T/plugin.so"); rc=$?
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && fail "stress hung (sample_bytes $rate)"
  [ $rc -eq 0 ] || fail "stress exited with $rc (sample_bytes $rate): $out"
  echo "sample_bytes $rate: $out"
  set -- $out
  [ "$2" -gt 5 ] && [ "$4" -gt 5 ] || fail "too few forks or dlopens to mean anything: $out"
  [ "$(ls reports/guard-stress-*.json | wc -l)" -eq 1 ] || fail "no report from the parent"
  [ "$(ls reports/guard-true-*.json | wc -l)" -ge 1 ] || fail "no report from an exec'd child"
  json_ok reports/guard-stress-*.json "$(ls reports/guard-true-*.json | head -1)"
done
echo ok
