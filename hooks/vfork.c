/* vfork: the child runs on the parent thread's memory (its stack, its thread-local state, the
 * guard's tables) until it execs or exits, while that thread waits. Its calls -- the dup2s and
 * closes a child makes before exec, as Python's subprocess does -- must not be recorded as the
 * parent's: they would rewrite the parent's fd table.
 *
 * So vfork is a jump into glibc's __vfork after two stores in the calling thread's state: its pid
 * (lg_tls.vfork_pid) and LG_VFORK_BUSY added to its busy count, which makes every hook pass
 * straight through, in the child and, for now, in the parent. The parent takes LG_VFORK_BUSY off
 * at its first hook once vfork has returned there: getpid() is its own pid again
 * (lg_vfork_settle). It has to be a jump, not a call: the child returns from vfork on the shared
 * stack, and a frame of ours would be popped and reused under the waiting parent.
 */
#include "libguard/internal.h"

#include <stddef.h>
#include <unistd.h>

#if defined(__x86_64__)

_Static_assert(offsetof(struct lg_thread, busy) == 0 && offsetof(struct lg_thread, vfork_pid) == 4,
	       "hooks/vfork.c stores at these offsets");

__asm__(".text\n"
	".globl vfork\n"
	".type vfork, @function\n"
	"vfork:\n"
	"	movl $39, %eax\n"                    /* SYS_getpid (clobbers rcx, r11: free here) */
	"	syscall\n"
	"	movq lg_tls@gottpoff(%rip), %rdx\n"
	"	movl %eax, %fs:4(%rdx)\n"            /* lg_tls.vfork_pid */
	"	addl $0x10000, %fs:(%rdx)\n"         /* lg_tls.busy += LG_VFORK_BUSY */
	"	jmp __vfork@PLT\n"
	".size vfork, .-vfork\n");

#endif
