/* vfork: the child runs on the parent thread's memory (its stack, its thread-local state, the
 * guard's tables) until it execs or exits, while that thread waits. Its calls -- the dup2s and
 * closes a child makes before exec, as Python's subprocess does -- must not be recorded as the
 * parent's: they would rewrite the parent's fd table.
 *
 * So vfork adds LG_VFORK_BUSY to the calling thread's busy count, which makes every hook pass
 * straight through, and makes the system call itself, as glibc's __vfork does: the return
 * address is kept in a register, not on the stack the child shares. In the parent (or on
 * failure) it takes LG_VFORK_BUSY off again as the call returns; the child keeps it until exec
 * or _exit. No frame of ours is left on the shared stack.
 */
#include "libguard/internal.h"

#include <stddef.h>
#include <unistd.h>

#if defined(__x86_64__)

_Static_assert(offsetof(struct lg_thread, busy) == 0, "hooks/vfork.c stores at this offset");

__asm__(".text\n"
	".globl vfork\n"
	".type vfork, @function\n"
	".p2align 4\n"
	"vfork:\n"
	"	.cfi_startproc\n"
	"	movq lg_tls@gottpoff(%rip), %rdx\n"
	"	addl $0x10000, %fs:(%rdx)\n"         /* lg_tls.busy += LG_VFORK_BUSY */
	"	popq %rdi\n"                         /* the return address, out of the shared stack */
	"	.cfi_adjust_cfa_offset -8\n"
	"	.cfi_register %rip, %rdi\n"
	"	movl $58, %eax\n"                    /* SYS_vfork (clobbers rcx, r11) */
	"	syscall\n"
	"	pushq %rdi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_rel_offset %rip, 0\n"
	"	testl %eax, %eax\n"
	"	je 1f\n"                             /* the child: busy until exec or _exit */
	"	movq lg_tls@gottpoff(%rip), %rdx\n"
	"	subl $0x10000, %fs:(%rdx)\n"         /* the parent, or a failure */
	"	cmpl $-4095, %eax\n"
	"	jae 2f\n"
	"1:	ret\n"
	"2:	negl %eax\n"
	"	pushq %rax\n"                        /* also aligns the stack for the call */
	"	.cfi_adjust_cfa_offset 8\n"
	"	call __errno_location@PLT\n"
	"	popq %rcx\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	movl %ecx, (%rax)\n"
	"	movq $-1, %rax\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size vfork, .-vfork\n");

#endif
