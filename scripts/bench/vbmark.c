// SPDX-License-Identifier: GPL-2.0
/*
 * vbmark: execute the marker instruction scripts/bench/vbcount.c snapshots
 * on, then exit.  No libc: built with -nostdlib -static so the same small
 * binary runs in the L1 VM and in the L2 guest's initramfs.
 */
void _start(void)
{
	__asm__ volatile(".byte 0x0f, 0x1f, 0x84, 0x00, 'V', 'B', 'M', 'K'\n\t"
			 "mov $60, %%eax\n\t"	/* exit(0) */
			 "xor %%edi, %%edi\n\t"
			 "syscall" : : : "memory");
	__builtin_unreachable();
}
