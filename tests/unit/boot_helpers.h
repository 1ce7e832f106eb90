/* Booting the runtime from a policy given as text, for the unit tests that drive a guard directly
 * (test_fd.c, test_net.c, test_lock.c, test_thread.c). lg_init reads a file, as GUARD_POLICY
 * names one, so the text goes through a temporary file.
 */
#ifndef LG_TESTS_BOOT_HELPERS_H
#define LG_TESTS_BOOT_HELPERS_H

#include "libguard/internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* 0 once the runtime is READY under policy_text, else -1: a cmocka group setup's convention. The
 * caller adds the checks that show its own section of the policy took effect. */
static inline int boot_policy(const char *policy_text)
{
	char path[] = "/tmp/lg-test-boot-XXXXXX";
	size_t len = strlen(policy_text);
	int fd = mkstemp(path);

	if (fd < 0)
		return -1;
	if (write(fd, policy_text, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	close(fd);
	int rc = lg_init(path);
	unlink(path);
	return rc == 0 && lg_state() == LG_READY ? 0 : -1;
}

#endif
