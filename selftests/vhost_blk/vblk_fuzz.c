// SPDX-License-Identifier: GPL-2.0
/*
 * vblk_fuzz - seedable fuzzer for /dev/vhost-blk: the ioctl surface and
 * the ring contents a guest controls.
 *
 *	vblk_fuzz --dev BLOCKDEV [--seed N] [--seconds S] [--mode ioctl|ring|both]
 *
 * ioctl mode: on fresh descriptors, random sequences of every vhost and
 * vhost-blk ioctl with random arguments: missing owner, feature bits,
 * memory tables with zero / many / overlapping / huge / wrapping /
 * unmapped regions, ring sizes 0, not a power of two and huge, unaligned
 * and out-of-table ring addresses, vq indexes out of range, bad / closed /
 * non-eventfd descriptors for KICK/CALL/ERR/LOG_FD and the backend,
 * unknown ioctl numbers; kicks with whatever rings that produced; closes
 * at random points.  Every address handed to the kernel lies in a scratch
 * mapping (or in unmapped / kernel space), never in the fuzzer's own data.
 *
 * ring mode: on a correctly set-up device with a backend, random
 * descriptor chains: random addresses (inside, outside, straddling the
 * memory table), lengths (0, odd, huge), flags, next links (loops), write
 * descriptors before read ones, indirect tables (bad sizes, nested
 * INDIRECT, loops), random request headers.  Each round puts one chain on
 * each of queues 0..14 and valid I/O on queue 15; every fuzzed chain must
 * be answered within a bounded time, by a used entry (any status) or by
 * the queue's error eventfd, and queue 15's valid requests must complete
 * OK with the right data ("the device keeps serving the other queues").
 *
 * At the end a fresh device must serve valid writes and reads.  Exit 0 =
 * all checks passed; last line "FUZZ OK ..." or "FUZZ FAIL ...".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vblk_guest.h"

#define ANSWER_MS	20000
#define SCRATCH		(16UL << 20)

static uint64_t g_seed = 1, rs;
static int g_seconds = 30;
static const char *g_dev;
static int g_bfd = -1;
static uint8_t *scratch;		/* kernel-visible garbage lives here */
static unsigned long n_ioctls, n_rounds, n_chains, n_answered_used,
		     n_answered_err, n_valid, n_opens;
static int failed;

static uint64_t rnd(void)
{
	uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned int rn(unsigned int n)
{
	return n ? rnd() % n : 0;
}

/* An "interesting" 64-bit value. */
static uint64_t r64(void)
{
	static const uint64_t special[] = {
		0, 1, 2, 15, 16, 17, 511, 512, 4095, 4096, 4097, 0x7fffffff,
		0x80000000ULL, 0xffffffffULL, 0x100000000ULL, 0x7fffffffffffffffULL,
		0xffffffffffffffffULL, 0xfffffffffffff000ULL, 0xffff888000000000ULL,
		VBLK_GPA_BASE, VBLK_GPA_BASE - 1, VBLK_GPA_BASE + (32 << 20),
	};

	switch (rn(4)) {
	case 0: return special[rn(sizeof(special) / sizeof(special[0]))];
	case 1: return rn(65536);
	case 2: return (uint64_t)(uintptr_t)scratch + rn(SCRATCH + 8192);
	default: return rnd();
	}
}

/* A user address for the kernel: in scratch, just past it, or garbage
 * that is not mapped in this process (the kernel must refuse it). */
static uint64_t uaddr(void)
{
	switch (rn(6)) {
	case 0: return 0;
	case 1: return 0xffff888000000000ULL + rn(1 << 20);	/* kernel space */
	case 2: return 0x10000 + rn(4096);			/* unmapped, low */
	case 3: return (uint64_t)(uintptr_t)scratch + SCRATCH - rn(64);
	default: return (uint64_t)(uintptr_t)scratch + rn(SCRATCH);
	}
}

static int rfd(int devfd)
{
	switch (rn(7)) {
	case 0: return -1;
	case 1: return 1000 + rn(1000);		/* not open */
	case 2: return devfd;			/* the vhost fd itself */
	case 3: return open("/dev/null", O_RDWR);
	case 4: return g_bfd;
	default: return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
}

static void do_ioctl(int fd, unsigned long cmd, void *arg)
{
	n_ioctls++;
	(void)ioctl(fd, cmd, arg);
}

static void fuzz_mem_table(int fd)
{
	unsigned int nr = rn(8) == 0 ? (unsigned int)r64() : rn(6);
	unsigned int alloc = nr > 64 ? 64 : nr;
	struct vhost_memory *m = calloc(1, sizeof(*m) + alloc * sizeof(m->regions[0]));

	m->nregions = nr;
	for (unsigned int i = 0; i < alloc; i++) {
		struct vhost_memory_region *r = &m->regions[i];

		if (i && rn(3) == 0) {		/* overlap the previous one */
			*r = m->regions[i - 1];
			r->guest_phys_addr += rn(8192);
		} else {
			r->guest_phys_addr = r64();
			r->memory_size = rn(3) ? rn(SCRATCH) : r64();
			r->userspace_addr = uaddr();
		}
		r->flags_padding = rn(8) == 0 ? rnd() : 0;
	}
	do_ioctl(fd, VHOST_SET_MEM_TABLE, m);
	free(m);
}

static void fuzz_one_ioctl(int fd)
{
	struct vhost_vring_state st;
	struct vhost_vring_addr a;
	struct vhost_vring_file f;
	struct vhost_blk_serial ser;
	uint64_t u64;
	int i, efd;
	unsigned int idx = rn(5) == 0 ? (unsigned int)r64() : rn(VHOST_BLK_MAX_VQS);

	switch (rn(20)) {
	case 0: do_ioctl(fd, VHOST_SET_OWNER, NULL); break;
	case 1: if (rn(4) == 0) do_ioctl(fd, VHOST_RESET_OWNER, NULL); break;
	case 2: do_ioctl(fd, VHOST_GET_FEATURES, &u64); break;
	case 3:
		u64 = rn(2) ? r64() : (VBLK_OFFERED_FEATURES & rnd());
		do_ioctl(fd, VHOST_SET_FEATURES, &u64);
		break;
	case 4: fuzz_mem_table(fd); break;
	case 5:
		st.index = idx;
		st.num = rn(2) ? (1u << rn(16)) : (unsigned int)r64();
		do_ioctl(fd, VHOST_SET_VRING_NUM, &st);
		break;
	case 6:
		st.index = idx;
		st.num = (unsigned int)r64();
		do_ioctl(fd, VHOST_SET_VRING_BASE, &st);
		break;
	case 7:
		st.index = idx;
		do_ioctl(fd, VHOST_GET_VRING_BASE, &st);
		break;
	case 8:
		a.index = idx;
		a.flags = rn(4) == 0 ? (unsigned int)rnd() : rn(2);
		a.desc_user_addr = uaddr() + (rn(2) ? rn(16) : 0);
		a.avail_user_addr = uaddr() + (rn(2) ? rn(2) : 0);
		a.used_user_addr = uaddr() + (rn(2) ? rn(4) : 0);
		a.log_guest_addr = r64();
		do_ioctl(fd, VHOST_SET_VRING_ADDR, &a);
		break;
	case 9: case 10: case 11:
		f.index = idx;
		f.fd = rfd(fd);
		do_ioctl(fd, rn(3) == 0 ? VHOST_SET_VRING_KICK :
			 rn(2) ? VHOST_SET_VRING_CALL : VHOST_SET_VRING_ERR, &f);
		if (f.fd > 2 && f.fd != fd && f.fd != g_bfd && f.fd < 1000)
			close(f.fd);
		break;
	case 12:
		u64 = uaddr();
		do_ioctl(fd, VHOST_SET_LOG_BASE, &u64);
		break;
	case 13:
		i = rfd(fd);
		do_ioctl(fd, VHOST_SET_LOG_FD, &i);
		if (i > 2 && i != fd && i != g_bfd && i < 1000)
			close(i);
		break;
	case 14: case 15:
		i = rn(3) ? g_bfd : rfd(fd);
		do_ioctl(fd, VHOST_BLK_SET_BACKEND, &i);
		if (i > 2 && i != fd && i != g_bfd && i < 1000)
			close(i);
		break;
	case 16:
		for (i = 0; i < (int)sizeof(ser.id); i++)
			ser.id[i] = rnd();
		do_ioctl(fd, VHOST_BLK_SET_SERIAL, rn(8) ? (void *)&ser : (void *)(uintptr_t)uaddr());
		break;
	case 17:
		i = rn(3) ? (int)rn(2) : (int)rnd();
		do_ioctl(fd, VHOST_BLK_SET_READONLY, &i);
		break;
	case 18:	/* unknown / mangled numbers in both ioctl spaces */
		do_ioctl(fd, _IOC(rn(4), rn(2) ? VHOST_VIRTIO : rn(256), rn(256), rn(64)),
			 scratch + rn(4096));
		break;
	default:	/* kick whatever ring the sequence set up */
		efd = eventfd(0, EFD_NONBLOCK);
		f.index = idx % VHOST_BLK_MAX_VQS;
		f.fd = efd;
		do_ioctl(fd, VHOST_SET_VRING_KICK, &f);
		u64 = 1;
		if (write(efd, &u64, 8) != 8)
			break;
		close(efd);
		break;
	}
}

static void fuzz_ioctls(uint64_t end)
{
	while (vblk_now_ms() < end) {
		int fd = open(VBLK_DEV_PATH, O_RDWR);
		unsigned int len = 1 + rn(60);

		if (fd < 0) {
			printf("# FAIL open %s: %s\n", VBLK_DEV_PATH, strerror(errno));
			failed = 1;
			return;
		}
		n_opens++;
		/* scratch is what the "guest" rings may point at: random bytes */
		for (size_t i = 0; i < 65536; i += 8)
			*(uint64_t *)(scratch + rn(SCRATCH / 8) * 8) = rnd();
		if (rn(4))
			do_ioctl(fd, VHOST_SET_OWNER, NULL);
		for (unsigned int i = 0; i < len; i++)
			fuzz_one_ioctl(fd);
		close(fd);
	}
}

/* ---- ring contents ---------------------------------------------------- */

/*
 * Fuzzed chains may point anywhere, but "inside the memory table" means
 * inside the arena: the last ARENA bytes of guest memory, reserved each
 * round.  The rings and the buffers of queue 15's valid requests live
 * below it, so a fuzzed chain can make the device write guest memory (as a
 * real guest could) without corrupting what the test checks, and a huge
 * length starting in the arena runs off the end of the table.
 */
#define ARENA (8UL << 20)
static uint64_t g_arena, g_bump;

static uint64_t arena_alloc(size_t len, uint32_t off)
{
	uint64_t a = ((g_bump + 4095) & ~4095ULL) + off;

	if (a + len > g_arena + ARENA)
		return 0;
	g_bump = a + len;
	return a;
}

/* keep in-table addresses in the arena */
static uint64_t clamp(struct vblk_dev *d, uint64_t g)
{
	if (g >= d->o.gpa_base && g < g_arena)
		return g_arena + (g - d->o.gpa_base) % ARENA;
	return g;
}

static uint64_t gaddr(struct vblk_dev *d)
{
	uint64_t base = d->o.gpa_base, size = d->o.mem_size;

	switch (rn(8)) {
	case 0: return clamp(d, r64());			/* anywhere */
	case 1: return base + size - rn(64);		/* straddles the end */
	case 2: return base - 1 - rn(4096);		/* just below */
	default: return g_arena + rn(ARENA);		/* inside */
	}
}

static uint32_t glen(void)
{
	switch (rn(6)) {
	case 0: return 0;
	case 1: return (uint32_t)r64();
	case 2: return 1 + rn(32);
	default: return 16 + rn(8192);
	}
}

static uint16_t gflags(void)
{
	uint16_t f = 0;

	if (rn(2)) f |= VRING_DESC_F_NEXT;
	if (rn(2)) f |= VRING_DESC_F_WRITE;
	if (rn(6) == 0) f |= VRING_DESC_F_INDIRECT;
	if (rn(16) == 0) f |= rnd() & 0xfff8;
	return f;
}

/* Write an indirect table of n entries at gpa (in guest memory). */
static void fill_itable(struct vblk_dev *d, uint64_t gpa, unsigned int n, int depth)
{
	for (unsigned int i = 0; i < n; i++) {
		struct vring_desc e;

		e.addr = gaddr(d);
		e.len = glen();
		e.flags = gflags();
		if (i + 1 < n && rn(4))
			e.flags |= VRING_DESC_F_NEXT;
		e.next = rn(4) == 0 ? (uint16_t)rnd() : (uint16_t)(i + 1 + (rn(8) == 0 ? -2 : 0));
		if ((e.flags & VRING_DESC_F_INDIRECT) && depth < 2 && rn(2)) {
			uint64_t t = arena_alloc(16 * 8, rn(2) ? 0 : rn(16));

			if (t) {
				fill_itable(d, t, 1 + rn(8), depth + 1);
				e.addr = t;
				e.len = 16 * (1 + rn(8)) + (rn(6) == 0 ? rn(16) : 0);
			}
		}
		vblk_write_guest(d, gpa + 16 * i, &e, sizeof(e));
	}
}

/* A header somewhere in guest memory: random type, sometimes a real one. */
static uint64_t header(struct vblk_dev *d)
{
	struct virtio_blk_outhdr h;
	uint64_t g = arena_alloc(16 + 64 + rn(4096), rn(2) ? 0 : rn(4096 - 80));
	static const uint32_t types[] = {
		VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
		VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES,
	};

	if (!g)
		return gaddr(d);
	h.type = rn(4) ? types[rn(6)] : (uint32_t)rnd();
	h.ioprio = rnd();
	h.sector = rn(3) ? rn(1 << 18) : r64();
	vblk_write_guest(d, g, &h, sizeof(h));
	/* discard/write-zeroes segments right after the header */
	for (int i = 0; i < 4; i++) {
		struct virtio_blk_discard_write_zeroes s = {
			.sector = rn(2) ? rn(1 << 18) : r64(),
			.num_sectors = rn(2) ? rn(4096) : (uint32_t)rnd(),
			.flags = rn(4) ? rn(2) : (uint32_t)rnd(),
		};
		vblk_write_guest(d, g + 16 + 16 * i, &s, sizeof(s));
	}
	return g;
}

/* Put one random chain on vq; returns 0 if published. */
static int fuzz_chain(struct vblk_vq *vq, struct vblk_req *r)
{
	struct vblk_dev *d = vq->dev;
	unsigned int n = 1 + rn(6);
	uint16_t idx[8];

	if (vblk_desc_get(vq, n, idx))
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		uint64_t addr = i == 0 && rn(4) ? header(d) : gaddr(d);
		uint32_t len = i == 0 && rn(2) ? 16 + rn(64) : glen();
		uint16_t flags = gflags();
		uint16_t next = i + 1 < n ? idx[i + 1] : (uint16_t)rnd();

		if (i + 1 < n)
			flags |= VRING_DESC_F_NEXT;
		else if (rn(3))
			flags &= ~VRING_DESC_F_NEXT;
		if (i + 1 == n && rn(2))
			flags |= VRING_DESC_F_WRITE;	/* room for a status */
		if (rn(10) == 0)
			next = idx[rn(n)];		/* loop */
		if (flags & VRING_DESC_F_INDIRECT) {
			uint64_t t = arena_alloc(16 * 16, rn(2) ? 0 : rn(16));

			if (t) {
				unsigned int ne = 1 + rn(16);

				fill_itable(d, t, ne, 0);
				addr = rn(6) ? t : gaddr(d);
				len = rn(5) ? 16 * ne : glen();
			}
		}
		vblk_desc_set(vq, idx[i], addr, len, flags, next);
	}
	vblk_req_init(r, 0, 0);
	r->name = "fuzzed chain";
	return vblk_submit_raw(vq, r, idx[0], idx, n);
}

static int valid_io(struct vblk_vq *vq, uint64_t lba, uint64_t seed)
{
	static uint8_t wbuf[8192], rbuf[8192];
	struct vblk_req w, rd;
	char why[160];
	int err;

	vblk_pattern_fill(wbuf, sizeof(wbuf), lba, seed);
	vblk_req_init(&w, VIRTIO_BLK_T_OUT, lba);
	w.out = wbuf;
	w.out_len = sizeof(wbuf);
	w.name = "valid write";
	err = vblk_do(vq, &w, ANSWER_MS);
	if (err || w.status != VIRTIO_BLK_S_OK) {
		printf("# FAIL valid write on vq %u: err %d status %u\n", vq->idx, err, w.status);
		return -1;
	}
	vblk_req_init(&rd, VIRTIO_BLK_T_IN, lba);
	rd.in = rbuf;
	rd.in_len = sizeof(rbuf);
	rd.name = "valid read";
	err = vblk_do(vq, &rd, ANSWER_MS);
	if (err || rd.status != VIRTIO_BLK_S_OK ||
	    vblk_pattern_check(rbuf, sizeof(rbuf), lba, seed, why, sizeof(why)) >= 0) {
		printf("# FAIL valid read on vq %u: err %d status %u %s\n", vq->idx, err,
		       rd.status, err || rd.status ? "" : why);
		return -1;
	}
	n_valid += 2;
	return 0;
}

static void fuzz_rings(uint64_t end)
{
	while (!failed && vblk_now_ms() < end) {
		struct vblk_dev d;
		struct vblk_opts o = VBLK_OPTS_DEFAULT;
		struct vblk_req r[VHOST_BLK_MAX_VQS - 1];
		bool pub[VHOST_BLK_MAX_VQS - 1] = { false };
		int err;

		o.nvqs = VHOST_BLK_MAX_VQS;
		o.qsize = 1u << (3 + rn(5));
		o.regions = 1 + rn(2);
		err = vblk_open(&d, &o);
		if (!err)
			err = vblk_set_backend(&d, g_bfd);
		if (!err) {
			g_arena = g_bump = d.o.gpa_base + d.o.mem_size - ARENA;
			err = vblk_alloc_at(&d, g_arena, ARENA);
		}
		if (err) {
			printf("# FAIL ring round %lu: device setup: %s\n", n_rounds, strerror(-err));
			failed = 1;
			vblk_close(&d);
			return;
		}
		for (unsigned int q = 0; q + 1 < VHOST_BLK_MAX_VQS; q++) {
			vblk_err_count(&d.vq[q], 0);	/* clear */
			if (!fuzz_chain(&d.vq[q], &r[q])) {
				pub[q] = true;
				n_chains++;
				vblk_kick(&d.vq[q], true);
			}
		}
		/* the other queues must keep serving */
		if (valid_io(&d.vq[VHOST_BLK_MAX_VQS - 1], 8 * rn(1 << 14), n_rounds + 3))
			failed = 1;
		for (unsigned int q = 0; q + 1 < VHOST_BLK_MAX_VQS; q++) {
			uint64_t deadline = vblk_now_ms() + ANSWER_MS;
			bool answered = false;

			if (!pub[q])
				continue;
			while (!answered && vblk_now_ms() < deadline) {
				vblk_reap(&d.vq[q]);
				if (r[q].done) {
					answered = true;
					n_answered_used++;
				} else if (vblk_err_count(&d.vq[q], 50)) {
					answered = true;
					n_answered_err++;
				}
			}
			if (d.vq[q].bad_used) {
				printf("# FAIL round %lu vq %u: invalid used entry for a fuzzed chain\n",
				       n_rounds, q);
				failed = 1;
			}
			if (!answered) {
				printf("# FAIL round %lu (seed %" PRIu64 "): vq %u: fuzzed chain neither completed nor signalled the error eventfd within %d ms\n",
				       n_rounds, g_seed, q, ANSWER_MS);
				vblk_dump_inflight(&d.vq[q], stdout);
				failed = 1;
			}
		}
		vblk_close(&d);		/* teardown with whatever is left */
		n_rounds++;
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dev", 1, NULL, 'd' }, { "seed", 1, NULL, 's' },
		{ "seconds", 1, NULL, 't' }, { "mode", 1, NULL, 'm' },
		{ NULL, 0, NULL, 0 }
	};
	const char *mode = "both";
	uint64_t start, end;
	int c;

	while ((c = getopt_long(argc, argv, "d:s:t:m:", lo, NULL)) != -1) {
		switch (c) {
		case 'd': g_dev = optarg; break;
		case 's': g_seed = strtoull(optarg, NULL, 0); break;
		case 't': g_seconds = atoi(optarg); break;
		case 'm': mode = optarg; break;
		default: goto usage;
		}
	}
	if (!g_dev)
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	rs = g_seed;
	g_bfd = open(g_dev, O_RDWR);
	scratch = mmap(NULL, SCRATCH + 8192, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g_bfd < 0 || scratch == MAP_FAILED) {
		printf("FUZZ FAIL setup: %s\n", strerror(errno));
		return 1;
	}
	/* a guard page after scratch: "just past it" is never our memory */
	mprotect(scratch + SCRATCH, 8192, PROT_NONE);
	printf("# vblk_fuzz: seed %" PRIu64 ", %d s, mode %s, backend %s\n", g_seed,
	       g_seconds, mode, g_dev);
	start = vblk_now_ms();
	end = start + 1000ULL * g_seconds;
	if (!strcmp(mode, "ioctl"))
		fuzz_ioctls(end);
	else if (!strcmp(mode, "ring"))
		fuzz_rings(end);
	else {
		fuzz_ioctls(start + (end - start) / 2);
		fuzz_rings(end);
	}
	/* afterwards a fresh device must serve valid requests */
	if (!failed) {
		struct vblk_dev d;
		struct vblk_opts o = VBLK_OPTS_DEFAULT;

		o.nvqs = VHOST_BLK_MAX_VQS;
		if (vblk_open(&d, &o) || vblk_set_backend(&d, g_bfd)) {
			printf("# FAIL: fresh device after fuzzing: setup failed\n");
			failed = 1;
		} else {
			for (unsigned int q = 0; q < VHOST_BLK_MAX_VQS && !failed; q++)
				if (valid_io(&d.vq[q], 64 * q, 1000 + q))
					failed = 1;
		}
		vblk_close(&d);
	}
	printf("# ioctl: %lu opens, %lu ioctls; ring: %lu rounds, %lu chains (%lu answered by a used entry, %lu by the error eventfd); %lu valid requests OK\n",
	       n_opens, n_ioctls, n_rounds, n_chains, n_answered_used, n_answered_err, n_valid);
	if (failed) {
		printf("FUZZ FAIL seed=%" PRIu64 "\n", g_seed);
		return 1;
	}
	printf("FUZZ OK seed=%" PRIu64 " ioctls=%lu chains=%lu\n", g_seed, n_ioctls, n_chains);
	return 0;
usage:
	fprintf(stderr, "usage: vblk_fuzz --dev BLOCKDEV [--seed N] [--seconds S] [--mode ioctl|ring|both]\n");
	return 2;
}
