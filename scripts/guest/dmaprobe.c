// SPDX-License-Identifier: GPL-2.0
/*
 * dmaprobe: the L2 guest's side of the dirty-log check of
 * tests/vm/55-migrate.sh.  Built static on the host by
 * tests/prepare.d/55-migrate.sh and put into the guest's initramfs.
 *
 *	dmaprobe DISK OFFSET SIZE CTL
 *
 * Keeps SIZE bytes of anonymous memory (locked, written once by the CPU
 * with a pattern: zeros, which RAM's first pass sends cheaply as zero
 * pages) and obeys commands that L1 writes into the control
 * disk CTL at byte CMD_OFF (polled with O_DIRECT every 50 ms):
 *
 *	FILL n    read DISK[OFFSET, OFFSET+SIZE) into the memory with O_DIRECT:
 *	          only the device writes these pages (host -> guest DMA), the
 *	          guest's CPU does not touch them afterwards
 *	CHECK n   read the same range again into a small fresh buffer and
 *	          count the 4 KiB pages of the memory that differ from it;
 *	          then write the pattern into the memory again (the next FILL
 *	          starts from pages the CPU wrote before that migration)
 *	QUIT n    exit
 *
 * and answers in CTL at byte STATUS_OFF ("READY 0", "FILLED n",
 * "CHECKED n LOST k PAGES p PATTERN q", q: pages of the disk that equal
 * the pattern, 0 unless the disk region was not initialised).
 *
 * L1 sends FILL after the migration's first pass sent every page of RAM
 * and before it lets the migration converge, and CHECK on the destination:
 * a page the device wrote without logging it was not sent again, so the
 * destination still has the pattern there.  With the dirty log LOST is 0;
 * without it every page of the range is lost.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE		4096
#define CHUNK		(1 << 20)
#define STATUS_OFF	8192
#define CMD_OFF		12288
#define PATTERN		0

static int disk, ctl;
static char *io;	/* PAGE bytes for the control disk, aligned */
static char *chunk;	/* CHUNK bytes for CHECK's fresh reads, aligned */

static void die(const char *what)
{
	printf("L2-PROBE error: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void answer(const char *fmt, ...)
{
	va_list ap;
	int len;

	memset(io, ' ', PAGE);
	va_start(ap, fmt);
	len = vsnprintf(io, 511, fmt, ap);
	va_end(ap);
	io[len] = ' ';
	io[511] = '\n';
	if (pwrite(ctl, io, PAGE, STATUS_OFF) != PAGE)
		die("status write");
	printf("L2-PROBE %.*s\n", len, io);
	fflush(stdout);
}

static void read_range(char *buf, off_t off, size_t len)
{
	ssize_t n;

	while (len) {
		n = pread(disk, buf, len, off);
		if (n <= 0)
			die("disk read");
		buf += n;
		off += n;
		len -= n;
	}
}

int main(int argc, char **argv)
{
	struct timespec tick = { 0, 50 * 1000 * 1000 };
	unsigned long lost, same, done = 0, seq;
	char *mem, *pat, cmd[16];
	size_t size, at, len, p;
	off_t off;

	if (argc != 5) {
		fprintf(stderr, "usage: dmaprobe DISK OFFSET SIZE CTL\n");
		return 2;
	}
	off = strtoll(argv[2], NULL, 0);
	size = strtoull(argv[3], NULL, 0);
	if (!size || size % CHUNK || off % PAGE) {
		fprintf(stderr, "dmaprobe: SIZE a multiple of 1 MiB, OFFSET of 4 KiB\n");
		return 2;
	}
	disk = open(argv[1], O_RDONLY | O_DIRECT);
	ctl = open(argv[4], O_RDWR | O_DIRECT | O_DSYNC);
	if (disk < 0 || ctl < 0)
		die("open");
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	io = mmap(NULL, PAGE + CHUNK + PAGE, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || io == MAP_FAILED)
		die("mmap");
	chunk = io + PAGE;
	pat = chunk + CHUNK;
	memset(pat, PATTERN, PAGE);
	memset(mem, PATTERN, size);
	if (mlock(mem, size))
		die("mlock");
	answer("READY 0");
	for (;;) {
		nanosleep(&tick, NULL);
		if (pread(ctl, io, PAGE, CMD_OFF) != PAGE)
			die("command read");
		io[PAGE - 1] = 0;
		if (sscanf(io, "%15s %lu", cmd, &seq) != 2 || seq <= done)
			continue;
		done = seq;
		if (!strcmp(cmd, "FILL")) {
			for (at = 0; at < size; at += CHUNK)
				read_range(mem + at, off + at, CHUNK);
			answer("FILLED %lu", seq);
		} else if (!strcmp(cmd, "CHECK")) {
			lost = 0;
			same = 0;
			for (at = 0; at < size; at += CHUNK) {
				read_range(chunk, off + at, CHUNK);
				for (p = 0; p < CHUNK; p += PAGE) {
					len = at + p;
					lost += !!memcmp(mem + len, chunk + p, PAGE);
					same += !memcmp(chunk + p, pat, PAGE);
				}
			}
			memset(mem, PATTERN, size);
			answer("CHECKED %lu LOST %lu PAGES %lu PATTERN %lu", seq,
			       lost, (unsigned long)(size / PAGE), same);
		} else if (!strcmp(cmd, "QUIT")) {
			answer("QUIT %lu", seq);
			return 0;
		}
	}
}
