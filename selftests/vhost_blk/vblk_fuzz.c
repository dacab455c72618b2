// SPDX-License-Identifier: GPL-2.0
/*
 * vblk_fuzz - seedable fuzzer for /dev/vhost-blk: the ioctl surface and
 * the ring contents a guest controls.
 *
 *	vblk_fuzz --dev BLOCKDEV [--slow-dev BLOCKDEV] [--seed N]
 *		  [--seconds S] [--mode ioctl|ring|both] [--jobs N]
 *		  [--sequences N]
 *		  [--batch fuzz|dwz|reuse|bounce|log]
 *
 * ioctl mode: "sequences", each on a fresh descriptor: random sequences
 * of every vhost and vhost-blk ioctl with random arguments: missing owner,
 * feature bits, memory tables with zero / many / overlapping / huge /
 * wrapping / unmapped regions, ring sizes 0, not a power of two and huge,
 * unaligned and out-of-table ring addresses, vq indexes out of range, bad /
 * closed / non-eventfd descriptors for KICK/CALL/ERR/LOG_FD and the
 * backend, unknown ioctl numbers, VHOST_BLK_GET_CAPS; kicks with whatever
 * rings that produced.  Answers checked where they are documented:
 * GET_CAPS (no owner needed, EFAULT on a bad pointer), EPERM without an
 * owner, EINVAL for a read-only value other than 0/1.  One sequence in
 * eight is an EFAULT probe: a correctly set-up device whose ring (desc,
 * avail or used) or dirty log lies in the kernel half, at a non-canonical
 * address or straddles the end of user space must fail SET_BACKEND with
 * EFAULT, and attach once it is fixed; a bad ring or log address given
 * while attached is refused by the core's checks.  Every address handed
 * to the kernel lies in a scratch mapping (or in unmapped / kernel space),
 * never in the fuzzer's own data.
 *
 * ring mode: "sessions", each a correctly set-up device (random ring size,
 * memory layout and feature set, a fast or, with --slow-dev, a slow
 * backend) that lives for many "batches":
 *  - fuzz: random descriptor chains on queues 0..14 (addresses inside,
 *    outside and straddling the memory table, lengths 0 / odd / huge,
 *    flags, loops, write-before-read, indirect tables with bad sizes,
 *    nesting and loops, random headers and discard / write-zeroes
 *    segments) and valid I/O on queue 15 with the right data.  Each fuzzed
 *    chain must be answered within a bound, by a used entry or by the
 *    queue's error eventfd; a chain the device refused stays at the head
 *    of the ring, so the fuzzer then rewrites it into a valid chain, kicks,
 *    and that must be answered by a used entry (the queue is usable again).
 *  - dwz: DISCARD / WRITE_ZEROES around the limits (VHOST_BLK_MAX_DWZ_SEGS,
 *    VHOST_BLK_MAX_DWZ_SECTORS per segment and per request), bad flags,
 *    out of range, empty and torn payloads, with and without the feature
 *    negotiated; the status must be the documented one, and a rejected
 *    request must not have touched the data.
 *  - reuse: the guest republishes heads that are still in flight.  The
 *    device may hold at most vq->num requests per queue (taken from the
 *    ring by VHOST_GET_VRING_BASE, minus used->idx), its used index never
 *    runs ahead of what the guest published, in the exact variant no
 *    head comes back more often than it was published, and everything
 *    published is answered within a bound.
 *  - bounce: large reads and writes at unaligned guest addresses (bounced)
 *    on several queues at once, with bounce_limit_kb changed at random
 *    (module parameter), all OK with the right data within a bound.
 *  - log: VHOST_F_LOG_ALL switched on and off (SET_FEATURES), log bases
 *    moved, SET_VRING_ADDR with and without VHOST_VRING_F_LOG, while
 *    requests are in flight; with VHOST_BLK_CAP_EXACT_LOG, a read's data
 *    page is marked in the log if and only if logging was on when it
 *    completed.
 * After every batch no queue may hold more than vq->num requests.  A
 * session starts, one time in six, with an EFAULT probe (as in ioctl mode)
 * and ends with requests in flight: closed, or detached first (the detach
 * must return within a bound).
 *
 * At the end a fresh device must serve valid writes and reads on all
 * queues.  Exit 0 = all checks passed; last line "FUZZ OK ..." or
 * "FUZZ FAIL ...".  "# rate:" lines give sequences/s and chains/s.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vblk_guest.h"

#define ANSWER_MS	20000
#define DETACH_MS	10000
#define SCRATCH		(16UL << 20)
#define LOG_BYTES	(256UL << 10)
#define SESSION_MEM	(32UL << 20)
#define FUZZ_QS		(VHOST_BLK_MAX_VQS - 1)	/* queues 0..14 */
#define VALID_Q		(VHOST_BLK_MAX_VQS - 1)	/* queue 15 */
#define MAX_DWZ		VHOST_BLK_MAX_DWZ_SECTORS
#define BOUNCE_PARAM	"/sys/module/vhost_blk/parameters/bounce_limit_kb"

static uint64_t g_seed = 1, rs;
static int g_seconds = 30;
static uint8_t *scratch;		/* kernel-visible garbage lives here */
static uint8_t *g_log[2];		/* dirty-log bitmaps */
static uint64_t g_caps;			/* VHOST_BLK_GET_CAPS */
static uint64_t g_task_limit;		/* end of user space */
static char g_bounce_orig[32];		/* bounce_limit_kb at start, "" if none */
static int failed;

struct backend {
	const char *path;
	int fd;
	uint64_t sectors;
	bool discard;			/* queue/discard_max_bytes > 0 */
};

static struct backend g_fast = { .fd = -1 }, g_slow = { .fd = -1 };

static struct stats {
	unsigned long seqs, ioctls, checked, probes, recycled, reset_refused;
	unsigned long sessions, batches, chains, ans_used, ans_err;
	unsigned long valid, dwz, dwz_nothing, reuse_pub, reuse_rounds,
		      cap_checks, max_inflight, bounce, bounce_limits,
		      log_toggles, log_exact, log_ambiguous, detaches, overrun;
} st;

/*
 * Where ioctl mode spends its time (microseconds, summed over the jobs):
 * opening, owning, closing descriptors, EFAULT probes, refilling scratch,
 * then one bucket per kind of fuzzed ioctl (the cases of fuzz_one_ioctl()).
 */
enum {
	T_OPEN, T_OWNER, T_CLOSE, T_PROBE, T_SCRATCH, T_RESET,
	T_CASE, T_NR = T_CASE + 22
};

static const char *const t_name[T_NR] = {
	"open", "SET_OWNER", "close", "EFAULT probes", "scratch refill",
	"reset to fresh",
	"SET_OWNER", "RESET_OWNER", "GET_FEATURES", "SET_FEATURES",
	"SET_MEM_TABLE", "SET_VRING_NUM", "SET_VRING_BASE", "GET_VRING_BASE",
	"SET_VRING_ADDR", "SET_VRING_KICK/CALL/ERR", NULL, NULL, "SET_LOG_BASE",
	"SET_LOG_FD", "SET_BACKEND", NULL, "SET_SERIAL", "SET_READONLY",
	"unknown numbers", "GET_CAPS", "kicks", NULL,
};

static uint64_t t_ioc[T_NR];

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define FAILF(...) do { printf("# FAIL " __VA_ARGS__); failed = 1; } while (0)

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

/* A user address the kernel must refuse: kernel half, non-canonical in
 * both paging modes, or (for an object of size len) straddling the end of
 * user space.  align: the alignment the core demands of it.
 */
static uint64_t bad_uaddr(size_t len, unsigned int align)
{
	switch (rn(3)) {
	case 0: return 0xffff888000000000ULL + 64 * rn(1 << 14);
	case 1: return 0x8000000000000000ULL | ((uint64_t)rn(1 << 20) << 6);
	default: return (g_task_limit - len / 2) & ~(uint64_t)(align - 1);
	}
}

/* A dirty-log base the kernel must refuse for guest memory [lo, hi): the
 * bitmap bytes it would use lie in the kernel half, at a non-canonical
 * address or across the end of user space.
 */
static uint64_t bad_logbase(uint64_t lo, uint64_t hi)
{
	uint64_t first = lo / 4096 / 8, last = (hi - 1) / 4096 / 8;

	if (rn(3))
		return bad_uaddr(8, 8);
	return g_task_limit - first - (last - first) / 2 - 1;
}

/* A user address for the kernel: in scratch, just past it, or garbage
 * that is not mapped in this process (the kernel must refuse it). */
static uint64_t uaddr(void)
{
	switch (rn(7)) {
	case 0: return 0;
	case 1: return 0xffff888000000000ULL + rn(1 << 20);	/* kernel space */
	case 2: return 0x10000 + rn(4096);			/* unmapped, low */
	case 3: return (uint64_t)(uintptr_t)scratch + SCRATCH - rn(64);
	case 4: return bad_uaddr(64 + rn(4096), 1 << rn(5));
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
	case 4: return g_fast.fd;
	default: return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
}

static void close_rfd(int fd, int devfd)
{
	if (fd > 2 && fd != devfd && fd != g_fast.fd && fd != g_slow.fd && fd < 1000)
		close(fd);
}

/*
 * What the ioctls on a descriptor may have changed since it was opened
 * or last reset to fresh (seq_reset()): device-wide settings (D_*), per
 * queue settings (V_*), and g_sticky: an ioctl outside the vocabulary
 * succeeded (endianness, busy polling, extra workers, ...), which the
 * reset cannot undo.  Conservative: an attempt counts, refused or not.
 */
enum {
	D_BACKEND = 1, D_FEATURES = 2, D_LOGFD = 4, D_LOGBASE = 8, D_MEM = 16,
	D_SERIAL = 32, D_RO = 64,
	V_NUM = 1, V_BASE = 2, V_ADDR = 4, V_KICK = 8, V_CALL = 16, V_ERR = 32,
};

static unsigned int g_devdirty;
static uint8_t g_vqdirty[VHOST_BLK_MAX_VQS];
static bool g_sticky;

/* How each ioctl of the vocabulary marks what it may change; 0, 0: nothing. */
static const struct {
	unsigned long cmd;
	unsigned int dev, vq;
} track_tab[] = {
	{ VHOST_SET_FEATURES, D_FEATURES, 0 },
	{ VHOST_SET_MEM_TABLE, D_MEM, 0 },
	{ VHOST_SET_LOG_BASE, D_LOGBASE, 0 },
	{ VHOST_SET_LOG_FD, D_LOGFD, 0 },
	{ VHOST_BLK_SET_SERIAL, D_SERIAL, 0 },
	{ VHOST_BLK_SET_READONLY, D_RO, 0 },
	{ VHOST_BLK_SET_BACKEND, D_BACKEND, 0 },
	{ VHOST_SET_VRING_NUM, 0, V_NUM },
	{ VHOST_SET_VRING_BASE, 0, V_BASE },
	{ VHOST_SET_VRING_ADDR, 0, V_ADDR },
	{ VHOST_SET_VRING_KICK, 0, V_KICK },
	{ VHOST_SET_VRING_CALL, 0, V_CALL },
	{ VHOST_SET_VRING_ERR, 0, V_ERR },
	{ VHOST_SET_OWNER, 0, 0 },
	{ VHOST_RESET_OWNER, 0, 0 },
	{ VHOST_GET_FEATURES, 0, 0 },
	{ VHOST_GET_VRING_BASE, 0, 0 },
	{ VHOST_BLK_GET_CAPS, 0, 0 },
};

static void track(unsigned long cmd, void *arg, int r)
{
	unsigned int i, q;
	int fd;

	for (i = 0; i < ARRAY_SIZE(track_tab); i++)
		if (track_tab[i].cmd == cmd)
			break;
	if (i == ARRAY_SIZE(track_tab)) {
		if (!r)
			g_sticky = true;
		return;
	}
	g_devdirty |= track_tab[i].dev;
	if (cmd == VHOST_BLK_SET_BACKEND) {
		/* attached: the worker may have moved every queue's avail index */
		memcpy(&fd, arg, sizeof(fd));
		if (!r && fd != -1)
			for (q = 0; q < VHOST_BLK_MAX_VQS; q++)
				g_vqdirty[q] |= V_BASE;
	}
	if (!track_tab[i].vq)
		return;
	/* the queue index is the first field of every vring argument */
	memcpy(&q, arg, sizeof(q));
	if (q < VHOST_BLK_MAX_VQS)
		g_vqdirty[q] |= track_tab[i].vq;
}

/* ioctl(): 0 or -errno. */
static int xioctl(int fd, unsigned long cmd, void *arg)
{
	int r;

	st.ioctls++;
	r = ioctl(fd, cmd, arg) < 0 ? -errno : 0;
	track(cmd, arg, r);
	return r;
}
static int g_only = -1;		/* --batch: only this kind of batch */

/* A checked answer. */
static void expect(int got, int want, const char *what)
{
	st.checked++;
	if (got != want)
		FAILF("%s: got %d (%s), documented %d (%s), seed %" PRIu64 "\n",
		      what, got, got ? strerror(-got) : "success", want,
		      want ? strerror(-want) : "success", g_seed);
}

/* ---- ioctl mode ---------------------------------------------------------- */

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
	xioctl(fd, VHOST_SET_MEM_TABLE, m);
	free(m);
}

/* One random ioctl; *owned tracks whether this fd has an owner. */
static void fuzz_one_ioctl(int fd, bool *owned)
{
	struct vhost_vring_state vs;
	struct vhost_vring_addr a;
	struct vhost_vring_file f;
	struct vhost_blk_serial ser;
	unsigned long cmd;
	uint64_t u64;
	int i, efd, r;
	unsigned int idx = rn(5) == 0 ? (unsigned int)r64() : rn(VHOST_BLK_MAX_VQS);
	unsigned int kind = rn(22);
	uint64_t t0 = now_us();

	switch (kind) {
	case 0:
		if (!xioctl(fd, VHOST_SET_OWNER, NULL))
			*owned = true;
		break;
	case 1:
		if (rn(4) == 0 && !xioctl(fd, VHOST_RESET_OWNER, NULL))
			*owned = false;
		break;
	case 2: xioctl(fd, VHOST_GET_FEATURES, &u64); break;
	case 3:
		u64 = rn(2) ? r64() : (VBLK_OFFERED_FEATURES & rnd());
		xioctl(fd, VHOST_SET_FEATURES, &u64);
		break;
	case 4: fuzz_mem_table(fd); break;
	case 5:
		vs.index = idx;
		vs.num = rn(2) ? (1u << rn(16)) : (unsigned int)r64();
		xioctl(fd, VHOST_SET_VRING_NUM, &vs);
		break;
	case 6:
		vs.index = idx;
		vs.num = (unsigned int)r64();
		xioctl(fd, VHOST_SET_VRING_BASE, &vs);
		break;
	case 7:
		vs.index = idx;
		xioctl(fd, VHOST_GET_VRING_BASE, &vs);
		break;
	case 8:
		a.index = idx;
		a.flags = rn(4) == 0 ? (unsigned int)rnd() : rn(2);
		a.desc_user_addr = uaddr() + (rn(2) ? rn(16) : 0);
		a.avail_user_addr = uaddr() + (rn(2) ? rn(2) : 0);
		a.used_user_addr = uaddr() + (rn(2) ? rn(4) : 0);
		a.log_guest_addr = r64();
		xioctl(fd, VHOST_SET_VRING_ADDR, &a);
		break;
	case 9: case 10: case 11:
		f.index = idx;
		f.fd = rfd(fd);
		xioctl(fd, rn(3) == 0 ? VHOST_SET_VRING_KICK :
		       rn(2) ? VHOST_SET_VRING_CALL : VHOST_SET_VRING_ERR, &f);
		close_rfd(f.fd, fd);
		break;
	case 12:
		u64 = rn(3) ? (uint64_t)(uintptr_t)g_log[rn(2)] : uaddr();
		xioctl(fd, VHOST_SET_LOG_BASE, &u64);
		break;
	case 13:
		i = rfd(fd);
		xioctl(fd, VHOST_SET_LOG_FD, &i);
		close_rfd(i, fd);
		break;
	case 14: case 15:
		i = rn(3) ? g_fast.fd : rfd(fd);
		xioctl(fd, VHOST_BLK_SET_BACKEND, &i);
		close_rfd(i, fd);
		break;
	case 16:
		for (i = 0; i < (int)sizeof(ser.id); i++)
			ser.id[i] = rnd();
		if (rn(8)) {
			r = xioctl(fd, VHOST_BLK_SET_SERIAL, &ser);
			expect(r, *owned ? 0 : -EPERM, "SET_SERIAL");
		} else {
			xioctl(fd, VHOST_BLK_SET_SERIAL, (void *)(uintptr_t)uaddr());
		}
		break;
	case 17:
		i = rn(3) ? (int)rn(2) : (int)rnd();
		r = xioctl(fd, VHOST_BLK_SET_READONLY, &i);
		expect(r, i != 0 && i != 1 ? -EINVAL : *owned ? 0 : -EPERM,
		       "SET_READONLY");
		break;
	case 18:	/* unknown / mangled numbers in both ioctl spaces */
		cmd = _IOC(rn(4), rn(2) ? VHOST_VIRTIO : rn(256), rn(256), rn(64));
		/* owner changes are cases 0 and 1: *owned must stay true */
		if (cmd != VHOST_SET_OWNER && cmd != VHOST_RESET_OWNER)
			xioctl(fd, cmd, scratch + rn(4096));
		break;
	case 19:	/* documented: no owner needed, EFAULT on a bad pointer */
		if (rn(4)) {
			u64 = ~0ULL;
			r = xioctl(fd, VHOST_BLK_GET_CAPS, &u64);
			expect(r, 0, "GET_CAPS");
			if (!r && u64 != g_caps)
				FAILF("GET_CAPS: %#" PRIx64 ", first answer %#" PRIx64 "\n",
				      u64, g_caps);
		} else {
			r = xioctl(fd, VHOST_BLK_GET_CAPS,
				   (void *)(uintptr_t)bad_uaddr(8, 8));
			expect(r, -EFAULT, "GET_CAPS to a bad address");
		}
		break;
	default:	/* kick whatever ring the sequence set up */
		efd = eventfd(0, EFD_NONBLOCK);
		f.index = idx % VHOST_BLK_MAX_VQS;
		f.fd = efd;
		xioctl(fd, VHOST_SET_VRING_KICK, &f);
		u64 = 1;
		if (efd >= 0 && write(efd, &u64, 8) != 8)
			printf("# warning: kick eventfd: %s\n", strerror(errno));
		close(efd);
		break;
	}
	t_ioc[T_CASE + kind] += now_us() - t0;
}

/*
 * Bring an owned descriptor back to the state of a fresh one just after
 * VHOST_SET_OWNER, with ioctls of the vocabulary: backend detached
 * (in-flight requests drained), no features, empty memory table, no log
 * base or log eventfd, zero serial, writable, and every queue the
 * sequence touched at num 1, base 0, no ring or log addresses, no
 * kick/call/err eventfds; only what track() saw the sequence try to
 * change, in this order (detach first: a queue with a backend refuses
 * most changes).  The vhost worker stays.  The one difference
 * from a fresh descriptor: the memory table is empty rather than never
 * set (a state the vocabulary reaches anyway: nregions 0, RESET_OWNER).
 * 0, or the refused ioctl's -errno (the caller then opens a fresh one).
 */
static int seq_reset(int fd, const char **what)
{
	struct vhost_memory m = { .nregions = 0 };
	struct vhost_vring_state num1 = { .num = 1 }, base0 = { .num = 0 };
	struct vhost_vring_addr a = { 0 };
	struct vhost_vring_file f = { .fd = -1 };
	struct vhost_blk_serial ser = { { 0 } };
	uint64_t zero = 0;
	int minus1 = -1, rw = 0, r;
	const struct {
		unsigned int bit;
		unsigned long cmd;
		void *arg;
		const char *name;
	} dev[] = {
		{ D_BACKEND, VHOST_BLK_SET_BACKEND, &minus1, "SET_BACKEND(-1)" },
		{ D_FEATURES, VHOST_SET_FEATURES, &zero, "SET_FEATURES(0)" },
		{ D_LOGFD, VHOST_SET_LOG_FD, &minus1, "SET_LOG_FD(-1)" },
		{ D_LOGBASE, VHOST_SET_LOG_BASE, &zero, "SET_LOG_BASE(0)" },
		{ D_MEM, VHOST_SET_MEM_TABLE, &m, "SET_MEM_TABLE(no regions)" },
		{ D_SERIAL, VHOST_BLK_SET_SERIAL, &ser, "SET_SERIAL(0)" },
		{ D_RO, VHOST_BLK_SET_READONLY, &rw, "SET_READONLY(0)" },
	}, vq[] = {
		{ V_NUM, VHOST_SET_VRING_NUM, &num1, "SET_VRING_NUM(1)" },
		{ V_BASE, VHOST_SET_VRING_BASE, &base0, "SET_VRING_BASE(0)" },
		{ V_ADDR, VHOST_SET_VRING_ADDR, &a, "SET_VRING_ADDR(0)" },
		{ V_KICK, VHOST_SET_VRING_KICK, &f, "SET_VRING_KICK(-1)" },
		{ V_CALL, VHOST_SET_VRING_CALL, &f, "SET_VRING_CALL(-1)" },
		{ V_ERR, VHOST_SET_VRING_ERR, &f, "SET_VRING_ERR(-1)" },
	};
	unsigned int i, q;

	for (i = 0; i < ARRAY_SIZE(dev); i++) {
		if (!(g_devdirty & dev[i].bit))
			continue;
		r = xioctl(fd, dev[i].cmd, dev[i].arg);
		if (r) {
			*what = dev[i].name;
			return r;
		}
	}
	for (q = 0; q < VHOST_BLK_MAX_VQS; q++) {
		num1.index = q;
		base0.index = q;
		a.index = q;
		f.index = q;
		for (i = 0; i < ARRAY_SIZE(vq); i++) {
			if (!(g_vqdirty[q] & vq[i].bit))
				continue;
			r = xioctl(fd, vq[i].cmd, vq[i].arg);
			if (r) {
				*what = vq[i].name;
				return r;
			}
		}
	}
	g_devdirty = 0;
	memset(g_vqdirty, 0, sizeof(g_vqdirty));
	return 0;
}

/*
 * EFAULT probe: a device whose queues are set up correctly in scratch,
 * but one ring, or the log, lies outside user space.  SET_BACKEND must
 * fail with EFAULT; fixed, it must succeed; bad addresses given while
 * attached must be refused.
 */
static void efault_probe(int fd, bool *owned)
{
	uint64_t gpa = 0x100000, base = (uint64_t)(uintptr_t)scratch;
	struct {
		struct vhost_memory m;
		struct vhost_memory_region r;
	} mt = { .m.nregions = 1 };
	unsigned int nq = 1 + rn(4), bad_q = rn(nq), num = 8 << rn(3);
	unsigned int kind = rn(5);	/* desc, avail, used, log, log+features */
	/* LOG_ALL acked and rings logged from the start (kind 4: later) */
	bool log = kind == 3 || (kind < 3 && rn(3) == 0);
	uint64_t feat = (1ULL << VIRTIO_F_VERSION_1), u64;
	struct vhost_vring_addr good[4], a;
	int r;

	st.probes++;
	r = xioctl(fd, VHOST_SET_OWNER, NULL);
	expect(r, 0, "probe: SET_OWNER");
	if (r)
		return;
	*owned = true;
	if (log)
		feat |= 1ULL << VHOST_F_LOG_ALL;
	mt.r.guest_phys_addr = gpa;
	mt.r.memory_size = 1 << 20;
	mt.r.userspace_addr = base;
	/* the log must be usable before LOG_ALL is acked */
	r = xioctl(fd, VHOST_SET_MEM_TABLE, &mt);
	expect(r, 0, "probe: SET_MEM_TABLE");
	u64 = (uint64_t)(uintptr_t)g_log[0];
	r = xioctl(fd, VHOST_SET_LOG_BASE, &u64);
	expect(r, 0, "probe: SET_LOG_BASE");
	r = xioctl(fd, VHOST_SET_FEATURES, &feat);
	expect(r, 0, "probe: SET_FEATURES");
	for (unsigned int q = 0; q < nq; q++) {
		struct vhost_vring_state s = { .index = q, .num = num };
		uint64_t off = 16384 * q;

		r = xioctl(fd, VHOST_SET_VRING_NUM, &s);
		expect(r, 0, "probe: SET_VRING_NUM");
		s.num = 0;
		r = xioctl(fd, VHOST_SET_VRING_BASE, &s);
		expect(r, 0, "probe: SET_VRING_BASE");
		good[q] = (struct vhost_vring_addr) {
			.index = q,
			.flags = log ? 1U << VHOST_VRING_F_LOG : 0,
			.desc_user_addr = base + off,
			.avail_user_addr = base + off + 4096,
			.used_user_addr = base + off + 8192,
			.log_guest_addr = gpa + off + 8192,
		};
		r = xioctl(fd, VHOST_SET_VRING_ADDR, &good[q]);
		expect(r, 0, "probe: SET_VRING_ADDR");
	}
	if (failed)
		return;
	a = good[bad_q];
	switch (kind) {
	case 0: a.desc_user_addr = bad_uaddr(16 * num, 16); break;
	case 1: a.avail_user_addr = bad_uaddr(6 + 2 * num, 2); break;
	case 2: a.used_user_addr = bad_uaddr(6 + 8 * num, 4); break;
	default:
		u64 = bad_logbase(gpa, gpa + mt.r.memory_size);
		r = xioctl(fd, VHOST_SET_LOG_BASE, &u64);
		expect(r, 0, "probe: SET_LOG_BASE outside user space, detached");
		break;
	}
	if (kind <= 2) {
		r = xioctl(fd, VHOST_SET_VRING_ADDR, &a);
		expect(r, 0, "probe: SET_VRING_ADDR outside user space, detached");
	}
	if (kind == 4) {
		/*
		 * Logging turned on while detached is checked at attach;
		 * while attached, SET_FEATURES itself refuses.
		 */
		u64 = feat | (1ULL << VHOST_F_LOG_ALL);
		if (rn(2)) {
			r = xioctl(fd, VHOST_SET_FEATURES, &u64);
			expect(r, 0, "probe: SET_FEATURES(LOG_ALL), log outside user space, detached");
		} else {
			r = xioctl(fd, VHOST_BLK_SET_BACKEND, &g_fast.fd);
			expect(r, 0, "probe: SET_BACKEND, LOG_ALL off, log outside user space");
			r = xioctl(fd, VHOST_SET_FEATURES, &u64);
			expect(r, -EFAULT, "probe: SET_FEATURES(LOG_ALL) with the log outside user space, attached");
			return;
		}
	}
	r = xioctl(fd, VHOST_BLK_SET_BACKEND, &g_fast.fd);
	expect(r, -EFAULT, kind <= 2 ? "probe: SET_BACKEND with a ring outside user space" :
	       "probe: SET_BACKEND with LOG_ALL and the dirty log outside user space");
	/* fixed, it attaches */
	if (kind <= 2) {
		r = xioctl(fd, VHOST_SET_VRING_ADDR, &good[bad_q]);
	} else {
		u64 = (uint64_t)(uintptr_t)g_log[1];
		r = xioctl(fd, VHOST_SET_LOG_BASE, &u64);
	}
	expect(r, 0, "probe: restoring the address");
	r = xioctl(fd, VHOST_BLK_SET_BACKEND, &g_fast.fd);
	expect(r, 0, "probe: SET_BACKEND once the addresses are fixed");
	/* while attached, the core checks ring and log addresses */
	a = good[bad_q];
	switch (rn(4)) {
	case 0: a.desc_user_addr = bad_uaddr(16 * num, 16); break;
	case 1: a.avail_user_addr = bad_uaddr(6 + 2 * num, 2); break;
	case 2: a.used_user_addr = bad_uaddr(6 + 8 * num, 4); break;
	default:
		if (!log && kind != 4)
			return;
		u64 = bad_logbase(gpa, gpa + mt.r.memory_size);
		r = xioctl(fd, VHOST_SET_LOG_BASE, &u64);
		expect(r, -EFAULT, "probe: SET_LOG_BASE outside user space, attached");
		return;
	}
	r = xioctl(fd, VHOST_SET_VRING_ADDR, &a);
	expect(r, -EINVAL, "probe: SET_VRING_ADDR outside user space, attached");
}

/*
 * One job of ioctl mode: sequences until end.  A sequence starts on a
 * fresh descriptor, with or without an owner, or with an EFAULT probe.
 * Starting and stopping the vhost worker (SET_OWNER, close) costs most
 * of a sequence's time, so a sequence that would start with SET_OWNER on
 * a fresh descriptor may instead take over the previous sequence's owned
 * descriptor once seq_reset() has brought it back to that state: each
 * owned descriptor serves 1-8 sequences (RECYCLE_MAX), so about one
 * owned sequence in four-and-a-half still starts on a new descriptor.
 */
#define RECYCLE_MAX 8

static unsigned long g_job_seqs;	/* --sequences: this job's share, 0 = no limit */

static void ioctl_job(uint64_t end)
{
	int keep = -1;			/* owned descriptor to recycle */
	unsigned int keep_left = 0;	/* how many more sequences it may serve */

	while (!failed && vblk_now_ms() < end && (!g_job_seqs || st.seqs < g_job_seqs)) {
		uint64_t t0 = now_us(), t1;
		unsigned int len = 1 + rn(60), start = rn(8) ? (rn(4) ? 1 : 0) : 2;
		const char *what = "";
		bool owned = false;
		int fd = -1, r;

		/* start: 0 without owner, 1 with, 2 EFAULT probe */
		if (keep >= 0 && (start != 1 || !keep_left)) {
			close(keep);
			keep = -1;
			t1 = now_us();
			t_ioc[T_CLOSE] += t1 - t0;
			t0 = t1;
		}
		if (keep >= 0) {
			r = seq_reset(keep, &what);
			if (!r) {
				fd = keep;
				owned = true;
				keep_left--;
				st.recycled++;
			} else {
				if (st.reset_refused++ < 3)
					printf("# note: reset to fresh: %s: %s; new descriptor\n",
					       what, strerror(-r));
				close(keep);
			}
			keep = -1;
		}
		t1 = now_us();
		t_ioc[T_RESET] += t1 - t0;
		if (fd < 0) {
			fd = open(VBLK_DEV_PATH, O_RDWR);
			if (fd < 0) {
				FAILF("open %s: %s\n", VBLK_DEV_PATH, strerror(errno));
				return;
			}
			keep_left = rn(RECYCLE_MAX);
			g_devdirty = 0;
			memset(g_vqdirty, 0, sizeof(g_vqdirty));
			g_sticky = false;
		}
		t0 = now_us();
		t_ioc[T_OPEN] += t0 - t1;
		st.seqs++;
		/*
		 * scratch is what the "guest" rings may point at: random bytes,
		 * 16 KiB a sequence, as four runs of 4 KiB at random places
		 * (scattered single words cost more in TLB refills than all
		 * the ioctls of a sequence under TCG).
		 */
		for (int run = 0; run < 4; run++) {
			uint64_t *w = (uint64_t *)(scratch + rn((SCRATCH - 4096) / 8) * 8);

			for (int i = 0; i < 512; i++)
				w[i] = rnd();
		}
		t1 = now_us();
		t_ioc[T_SCRATCH] += t1 - t0;
		if (start == 2) {
			efault_probe(fd, &owned);
			len = rn(10);
			t0 = now_us();
			t_ioc[T_PROBE] += t0 - t1;
		} else {
			if (start == 1 && !owned && !xioctl(fd, VHOST_SET_OWNER, NULL))
				owned = true;
			t0 = now_us();
			t_ioc[T_OWNER] += t0 - t1;
		}
		for (unsigned int i = 0; i < len; i++)
			fuzz_one_ioctl(fd, &owned);
		t0 = now_us();
		if (owned && !g_sticky && keep_left) {
			keep = fd;
		} else {
			close(fd);
			t_ioc[T_CLOSE] += now_us() - t0;
		}
	}
	if (keep >= 0)
		close(keep);
}

/*
 * ioctl mode in g_jobs processes at once (the VM's CPUs are otherwise
 * idle while a vhost worker starts or stops).  Job k draws from seed
 * g_seed + k, so "--jobs 1 --seed N" replays the choices of the job that
 * printed seed N; each has its own descriptors, scratch and log bitmaps
 * (copy on write).  Counters and times are summed in shared memory.
 */
static int g_jobs = 1;
static unsigned long g_max_seqs;	/* --sequences N: stop ioctl mode after N */

struct job_result {
	struct stats st;
	uint64_t t_ioc[T_NR];
	int failed, done;
};

static void fuzz_ioctls(uint64_t end)
{
	struct job_result *res;
	pid_t pid[64];
	int k, status, left;
	uint64_t deadline;

	if (g_jobs == 1) {
		g_job_seqs = g_max_seqs;
		ioctl_job(end);
		return;
	}
	res = mmap(NULL, g_jobs * sizeof(*res), PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED) {
		FAILF("ioctl jobs: mmap: %s\n", strerror(errno));
		return;
	}
	fflush(stdout);
	for (k = 0; k < g_jobs; k++) {
		pid[k] = fork();
		if (pid[k] < 0) {
			FAILF("ioctl job %d: fork: %s\n", k, strerror(errno));
			break;
		}
		if (pid[k] == 0) {
			g_seed += k;
			rs = g_seed;
			g_job_seqs = g_max_seqs / g_jobs + ((unsigned long)k < g_max_seqs % g_jobs);
			if (!g_max_seqs || g_job_seqs)
				ioctl_job(end);
			res[k].st = st;
			memcpy(res[k].t_ioc, t_ioc, sizeof(t_ioc));
			res[k].failed = failed;
			res[k].done = 1;
			fflush(stdout);
			_exit(failed);
		}
	}
	/* bounded: a job stuck in the kernel is reported, not waited for */
	deadline = vblk_now_ms() + ANSWER_MS + 60000;
	if (end > vblk_now_ms())
		deadline += end - vblk_now_ms();
	for (left = k; left > 0 && vblk_now_ms() < deadline; ) {
		pid_t p = waitpid(-1, &status, WNOHANG);

		if (p > 0)
			left--;
		else
			usleep(100000);
	}
	for (int j = 0; j < k; j++) {
		if (!res[j].done) {
			FAILF("ioctl job %d (seed %" PRIu64 ") hung in a device call or died\n",
			      j, g_seed + j);
			kill(pid[j], SIGKILL);
			continue;
		}
		if (res[j].failed)
			failed = 1;
		st.seqs += res[j].st.seqs;
		st.ioctls += res[j].st.ioctls;
		st.checked += res[j].st.checked;
		st.probes += res[j].st.probes;
		st.recycled += res[j].st.recycled;
		st.reset_refused += res[j].st.reset_refused;
		for (int i = 0; i < T_NR; i++)
			t_ioc[i] += res[j].t_ioc[i];
	}
	while (waitpid(-1, &status, WNOHANG) > 0)
		;
	munmap(res, g_jobs * sizeof(*res));
}

/* ---- ring mode: helpers ---------------------------------------------------- */

/*
 * Fuzzed chains may point anywhere, but "inside the memory table" means
 * inside the arena: the last ARENA bytes of guest memory, reserved per
 * session.  Rings, checked requests and the repair area live below it, so
 * a fuzzed chain can make the device write guest memory (as a real guest
 * could) without corrupting what the test checks.
 *
 * On the backend, fuzzed headers and segments stay in the lower half
 * ("fuzz region"); the upper half is 16 slices, one per queue, for
 * checked requests.
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

struct sess {
	struct vblk_dev d;
	struct backend *be;
	uint64_t acked;			/* features acked now */
	int logsel;			/* which g_log is the log base */
	uint64_t repair_hdr;		/* a FLUSH header */
	uint64_t repair_st;		/* 32 writable bytes per queue */
	uint64_t fz;			/* sectors of the fuzz region */
	uint64_t slice;			/* sectors per queue slice */
};

static uint64_t slice_lba(struct sess *s, unsigned int q)
{
	return s->be->sectors / 2 + q * s->slice;
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

/* A fuzzed sector: in the fuzz region with room for 4 MiB, or anything. */
static uint64_t fsector(struct sess *s)
{
	return rn(3) ? rn(s->fz - 8192) : r64();
}

/* A header somewhere in guest memory: random type, sometimes a real one. */
static uint64_t header(struct sess *s)
{
	struct vblk_dev *d = &s->d;
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
	h.sector = fsector(s);
	vblk_write_guest(d, g, &h, sizeof(h));
	/* discard/write-zeroes segments right after the header */
	for (int i = 0; i < 4; i++) {
		struct virtio_blk_discard_write_zeroes sg = {
			.sector = rn(2) ? rn(s->fz - 4096) : r64(),
			.num_sectors = rn(2) ? rn(4096) : (uint32_t)rnd(),
			.flags = rn(4) ? rn(2) : (uint32_t)rnd(),
		};
		/* never into the checked slices */
		if (sg.sector < s->fz && sg.sector + sg.num_sectors > s->fz)
			sg.num_sectors = s->fz - sg.sector;
		vblk_write_guest(d, g + 16 + 16 * i, &sg, sizeof(sg));
	}
	return g;
}

struct fchain {
	struct vblk_req r;
	uint16_t idx[8];
	unsigned int n, repairs;
};

/* Put one random chain on vq; returns 0 if published. */
static int fuzz_chain(struct sess *s, struct vblk_vq *vq, struct fchain *fc)
{
	struct vblk_dev *d = &s->d;
	unsigned int n = 1 + rn(6);
	uint16_t *idx = fc->idx;

	if (vblk_desc_get(vq, n, idx))
		return -1;
	fc->n = n;
	fc->repairs = 0;
	for (unsigned int i = 0; i < n; i++) {
		uint64_t addr = i == 0 && rn(4) ? header(s) : gaddr(d);
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
	vblk_req_init(&fc->r, 0, 0);
	fc->r.name = "fuzzed chain";
	return vblk_submit_raw(vq, &fc->r, idx[0], idx, n);
}

/* Rewrite a refused chain into a valid one (same descriptors). */
static void repair_chain(struct sess *s, struct vblk_vq *vq, struct fchain *fc)
{
	uint64_t stg = s->repair_st + 32 * vq->idx;

	if (fc->n >= 2) {
		vblk_desc_set(vq, fc->idx[1], stg, 1, VRING_DESC_F_WRITE, 0);
		vblk_desc_set(vq, fc->idx[0], s->repair_hdr, 16, VRING_DESC_F_NEXT,
			      fc->idx[1]);
	} else {
		/* no header at all: answered with IOERR */
		vblk_desc_set(vq, fc->idx[0], stg, 17, VRING_DESC_F_WRITE, 0);
	}
	fc->repairs++;
}

static uint16_t last_avail(struct sess *s, unsigned int q)
{
	struct vhost_vring_state vs = { .index = q };

	if (xioctl(s->d.fd, VHOST_GET_VRING_BASE, &vs))
		FAILF("GET_VRING_BASE vq %u: %s\n", q, strerror(errno));
	return vs.num;
}

static uint16_t used_idx(struct vblk_vq *vq)
{
	return __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);
}

/*
 * The in-flight cap: requests the device took off the ring
 * (last_avail_idx) minus those it returned (used->idx).  Read in that
 * order, the difference can only under-estimate.  Also, the device never
 * returns more than the guest published.
 */
static void check_cap(struct sess *s, unsigned int q, const char *when)
{
	struct vblk_vq *vq = &s->d.vq[q];
	uint16_t a = last_avail(s, q), u = used_idx(vq);
	uint16_t inflight = a - u;

	st.cap_checks++;
	if ((uint16_t)(vq->avail_idx - u) > 4 * vq->num) {
		FAILF("%s: vq %u: used->idx %u is ahead of the %u entries published (seed %" PRIu64 ")\n",
		      when, q, u, vq->avail_idx, g_seed);
		return;
	}
	if (inflight > st.max_inflight && inflight <= 4 * vq->num)
		st.max_inflight = inflight;
	if (inflight > vq->num)
		FAILF("%s: vq %u: %u requests in flight (taken %u, returned %u), ring size %u (seed %" PRIu64 ")\n",
		      when, q, inflight, a, u, vq->num, g_seed);
}

static int valid_io(struct sess *s, unsigned int q, uint64_t seed)
{
	static uint8_t wbuf[8192], rbuf[8192];
	static struct vblk_layout lay;
	struct vblk_vq *vq = &s->d.vq[q];
	uint64_t lba = slice_lba(s, q) + 8 * rn(s->slice / 8 - 2);
	struct vblk_req w, rd;
	char why[160];
	int err;

	/* sometimes unaligned in guest memory: bounced */
	memset(&lay, 0, sizeof(lay));
	lay.nrd = 1;
	lay.rd[0] = 16;
	lay.nwr = 1;
	lay.wr[0] = sizeof(rbuf);
	lay.offset = 1 + rn(4095);
	vblk_pattern_fill(wbuf, sizeof(wbuf), lba, seed);
	vblk_req_init(&w, VIRTIO_BLK_T_OUT, lba);
	w.out = wbuf;
	w.out_len = sizeof(wbuf);
	w.name = "valid write";
	w.layout = rn(3) ? NULL : &lay;
	err = vblk_do(vq, &w, ANSWER_MS);
	if (err || w.status != VIRTIO_BLK_S_OK) {
		FAILF("valid write on vq %u: err %d status %u\n", q, err, w.status);
		return -1;
	}
	vblk_req_init(&rd, VIRTIO_BLK_T_IN, lba);
	rd.in = rbuf;
	rd.in_len = sizeof(rbuf);
	rd.name = "valid read";
	rd.layout = rn(3) ? NULL : &lay;
	err = vblk_do(vq, &rd, ANSWER_MS);
	if (err || rd.status != VIRTIO_BLK_S_OK ||
	    vblk_pattern_check(rbuf, sizeof(rbuf), lba, seed, why, sizeof(why)) >= 0) {
		FAILF("valid read on vq %u: err %d status %u %s\n", q, err,
		      rd.status, err || rd.status ? "" : why);
		return -1;
	}
	st.valid += 2;
	return 0;
}

/* ---- ring mode: batches ------------------------------------------------ */

/*
 * A refused chain (error eventfd) stays at the head of the ring: rewrite
 * it into a valid one.  Returns false if the queue has nothing of ours
 * blocked, or on failure.
 */
static bool repair_blocked(struct sess *s, struct vblk_vq *vq, struct fchain *fc,
			   unsigned int n, unsigned long batch)
{
	for (int tries = 0; tries < 50; tries++) {
		uint16_t a = last_avail(s, vq->idx), head;
		struct fchain *b = NULL;

		vblk_reap(vq);
		if (a == vq->avail_idx)
			return false;	/* nothing blocked: a consumed chain's error */
		head = vq->avail->ring[a % vq->num];
		for (unsigned int i = 0; i < n; i++)
			if (!fc[i].r.done && fc[i].idx[0] == head)
				b = &fc[i];
		usleep(200);
		if (last_avail(s, vq->idx) != a)
			continue;	/* the device is still taking chains */
		if (!b)
			return false;
		if (b->repairs >= 3) {
			FAILF("batch %lu: vq %u head %u: rewritten into a valid chain %u times, still refused\n",
			      batch, vq->idx, head, b->repairs);
			return false;
		}
		if (!b->repairs)
			st.ans_err++;
		repair_chain(s, vq, b);
		return true;
	}
	return false;
}

/*
 * Wait until every fuzzed chain on queues 0..14 is answered by a used
 * entry, repairing refused ones; bounded per queue since its last
 * progress.
 */
static void answer_all(struct sess *s, struct fchain (*fc)[4], unsigned int *nfc,
		       unsigned long batch)
{
	uint64_t deadline[FUZZ_QS];
	unsigned int left;

	for (unsigned int q = 0; q < FUZZ_QS; q++)
		deadline[q] = vblk_now_ms() + ANSWER_MS;
	do {
		bool progress = false;

		left = 0;
		for (unsigned int q = 0; q < FUZZ_QS && !failed; q++) {
			struct vblk_vq *vq = &s->d.vq[q];
			unsigned int done = 0;

			if (!nfc[q])
				continue;
			if (vblk_reap(vq))
				progress = true;
			for (unsigned int i = 0; i < nfc[q]; i++)
				done += fc[q][i].r.done;
			if (done == nfc[q]) {
				for (unsigned int i = 0; i < nfc[q]; i++)
					if (!fc[q][i].repairs)
						st.ans_used++;
				nfc[q] = 0;
				if (vq->bad_used) {
					FAILF("batch %lu vq %u: invalid used entry for a fuzzed chain\n",
					      batch, q);
					vq->bad_used = 0;
				}
				continue;
			}
			left++;
			if (vblk_err_count(vq, 0)) {
				if (repair_blocked(s, vq, fc[q], nfc[q], batch))
					deadline[q] = vblk_now_ms() + ANSWER_MS;
				vblk_kick(vq, true);
				progress = true;
			} else if (vblk_now_ms() > deadline[q]) {
				FAILF("batch %lu (seed %" PRIu64 "): vq %u: %u fuzzed chain(s) neither completed nor refused within %d ms\n",
				      batch, g_seed, q, nfc[q] - done, ANSWER_MS);
				vblk_dump_inflight(vq, stdout);
				return;
			}
		}
		if (left && !progress)
			usleep(300);
	} while (left && !failed);
}

static struct fchain g_fc[FUZZ_QS][4];
static unsigned int g_nfc[FUZZ_QS];
static bool g_fc_pending;

/* Fuzzed chains on queues 0..14, kicked, not waited for. */
static void fuzz_publish(struct sess *s)
{
	struct fchain (*fc)[4] = g_fc;
	unsigned int *nfc = g_nfc;

	if (g_fc_pending)
		return;
	g_fc_pending = true;
	for (unsigned int q = 0; q < FUZZ_QS; q++) {
		nfc[q] = 0;
		unsigned int k = rn(4) ? 1 : 1 + rn(4);

		vblk_err_count(&s->d.vq[q], 0);	/* clear */
		for (unsigned int i = 0; i < k; i++) {
			if (fuzz_chain(s, &s->d.vq[q], &fc[q][nfc[q]]))
				break;
			nfc[q]++;
			st.chains++;
		}
		if (nfc[q])
			vblk_kick(&s->d.vq[q], true);
	}
}

/* Valid I/O on queue 15 meanwhile, then every fuzzed chain answered. */
static void fuzz_answer(struct sess *s, unsigned long batch)
{
	valid_io(s, VALID_Q, batch + 3);
	if (g_fc_pending && !failed)
		answer_all(s, g_fc, g_nfc, batch);
	g_fc_pending = false;
}

static void batch_fuzz(struct sess *s, unsigned long batch)
{
	fuzz_publish(s);
	fuzz_answer(s, batch);
}

/* ---- discard / write zeroes ---- */

#define SEG_MAX 300

struct dwz {
	struct vblk_req r;
	struct virtio_blk_discard_write_zeroes seg[SEG_MAX];
	unsigned int ok, ioerr, unsupp;	/* allowed answers */
	const char *what;
	uint64_t keep_lba;		/* pattern that must survive, 0 = none */
};

static void dwz_build(struct sess *s, unsigned int q, struct dwz *w)
{
	bool discard = rn(2);
	uint64_t feat = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
	uint64_t base = rn(s->fz - MAX_DWZ - 8192), total = 0, cap = s->be->sectors;
	unsigned int nseg = 1 + rn(4), len, j;
	bool limit = false, flags = false, wz_unmap = false;

	memset(w->seg, 0, sizeof(w->seg));
	w->keep_lba = 0;
	for (unsigned int i = 0; i < nseg; i++) {
		w->seg[i].sector = base + 8 * rn(1024);
		w->seg[i].num_sectors = rn(64);
	}
	j = rn(nseg);
	switch (rn(10)) {
	case 0:
		w->what = "one segment of exactly MAX_DWZ_SECTORS";
		nseg = 1;
		w->seg[0].num_sectors = MAX_DWZ;
		break;
	case 1:
		w->what = "a segment over MAX_DWZ_SECTORS";
		w->seg[j].num_sectors = MAX_DWZ + 1 + (rn(4) ? 0 : rnd() % (1u << 30));
		break;
	case 2:
		w->what = "segments summing to exactly MAX_DWZ_SECTORS";
		nseg = 2;
		w->seg[0].num_sectors = MAX_DWZ / 2;
		w->seg[1].num_sectors = MAX_DWZ / 2;
		w->seg[1].sector = base + MAX_DWZ / 2;
		break;
	case 3:
		w->what = "segments summing to more than MAX_DWZ_SECTORS";
		nseg = 2 + rn(3);
		for (unsigned int i = 0; i < nseg; i++)
			w->seg[i].num_sectors = MAX_DWZ / nseg + 1;
		break;
	case 4:
		w->what = "MAX_DWZ_SEGS or one more segments";
		nseg = VHOST_BLK_MAX_DWZ_SEGS + rn(2);
		for (unsigned int i = 0; i < nseg; i++) {
			w->seg[i].sector = base + i;
			w->seg[i].num_sectors = rn(2);
		}
		break;
	case 5:
		w->what = "a segment past the end of the device";
		w->seg[j].sector = cap - rn(8);
		w->seg[j].num_sectors = 9 + rn(64);
		break;
	case 6:
		w->what = "unknown flags";
		w->seg[j].flags = 2 + (rnd() & ~1U);
		break;
	case 7:
		w->what = "the UNMAP flag";
		w->seg[j].flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		break;
	default:
		w->what = "small segments";
		break;
	}
	/* sometimes a first segment over a pattern in the queue's slice,
	 * which must survive a rejected request
	 */
	if (rn(3) == 0 && nseg < SEG_MAX) {
		memmove(&w->seg[1], &w->seg[0], nseg * sizeof(w->seg[0]));
		nseg++;
		w->keep_lba = slice_lba(s, q) + 8 * rn(s->slice / 8 - 2);
		w->seg[0].sector = w->keep_lba;
		w->seg[0].num_sectors = 16;
		w->seg[0].flags = 0;
	}
	len = 16 * nseg;
	switch (rn(12)) {
	case 0: len = 0; w->what = "no segment"; break;
	case 1: len = 16 * nseg - 1 - rn(15); w->what = "a torn segment"; break;
	}
	/* what the request breaks, from its payload */
	if (!len || len % 16 || len / 16 > VHOST_BLK_MAX_DWZ_SEGS)
		limit = true;
	for (unsigned int i = 0; !limit && i < len / 16; i++) {
		const struct virtio_blk_discard_write_zeroes *g = &w->seg[i];

		if (discard ? g->flags : g->flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
			flags = true;
		if (!discard && (g->flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			wz_unmap = true;
		total += g->num_sectors;
		if (g->num_sectors > MAX_DWZ || g->sector > cap ||
		    g->num_sectors > cap - g->sector)
			limit = true;
	}
	if (total > MAX_DWZ)
		limit = true;
	vblk_req_init(&w->r, discard ? VIRTIO_BLK_T_DISCARD : VIRTIO_BLK_T_WRITE_ZEROES,
		      rn(8) ? 0 : rnd());
	w->r.out = w->seg;
	w->r.out_len = len;
	w->r.name = w->what;
	/* the documented answers */
	w->ok = w->ioerr = w->unsupp = 0;
	if (!(s->acked & (1ULL << feat))) {
		w->unsupp = 1;			/* feature not negotiated */
	} else if (discard && !s->be->discard) {
		w->unsupp = 1;			/* backend cannot discard */
		w->ioerr = limit;		/* either check may come first */
	} else {
		w->ioerr = limit;
		w->unsupp = flags;
		w->ok = !limit && !flags;
		if (wz_unmap && !(s->acked & (1ULL << VIRTIO_BLK_F_DISCARD)))
			w->unsupp = 1;		/* UNMAP without DISCARD negotiated */
	}
	if (w->ok)
		w->keep_lba = 0;		/* it may zero the pattern */
}

static void batch_dwz(struct sess *s, unsigned long batch)
{
	static struct dwz w[FUZZ_QS];
	static uint8_t pat[8192], back[8192];
	unsigned int nq = 1 + rn(5), q0 = rn(FUZZ_QS);
	char why[160];

	for (unsigned int i = 0; i < nq; i++) {
		unsigned int q = (q0 + i) % FUZZ_QS;
		struct vblk_vq *vq = &s->d.vq[q];
		struct vblk_req pw;

		dwz_build(s, q, &w[i]);
		if (w[i].keep_lba) {
			vblk_pattern_fill(pat, sizeof(pat), w[i].keep_lba, batch);
			vblk_req_init(&pw, VIRTIO_BLK_T_OUT, w[i].keep_lba);
			pw.out = pat;
			pw.out_len = sizeof(pat);
			if (vblk_do(vq, &pw, ANSWER_MS) || pw.status) {
				FAILF("dwz: pattern write vq %u failed (status %u)\n", q, pw.status);
				return;
			}
		}
		if (vblk_submit(vq, &w[i].r)) {
			w[i].r.done = true;
			w[i].r.status = 0xee;	/* not submitted */
			continue;
		}
		vblk_kick(vq, true);
	}
	for (unsigned int i = 0; i < nq && !failed; i++) {
		unsigned int q = (q0 + i) % FUZZ_QS;
		struct vblk_vq *vq = &s->d.vq[q];
		uint8_t stt = w[i].r.status;
		struct vblk_req rd;

		if (stt == 0xee)
			continue;
		if (vblk_wait_req(vq, &w[i].r, ANSWER_MS)) {
			FAILF("dwz (%s) on vq %u: no answer (seed %" PRIu64 ")\n",
			      w[i].what, q, g_seed);
			return;
		}
		st.dwz++;
		stt = w[i].r.status;
		if (!((stt == VIRTIO_BLK_S_OK && w[i].ok) ||
		      (stt == VIRTIO_BLK_S_IOERR && w[i].ioerr) ||
		      (stt == VIRTIO_BLK_S_UNSUPP && w[i].unsupp)) || w[i].r.used_len != 1)
			FAILF("%s %s (%zu payload bytes, features %#" PRIx64 ", backend discard %d) on vq %u: status %u used.len %u; documented: %s%s%s (seed %" PRIu64 ")\n",
			      w[i].r.type == VIRTIO_BLK_T_DISCARD ? "DISCARD" : "WRITE_ZEROES",
			      w[i].what, w[i].r.out_len, s->acked, s->be->discard, q, stt,
			      w[i].r.used_len, w[i].ok ? "OK " : "",
			      w[i].ioerr ? "IOERR " : "", w[i].unsupp ? "UNSUPP" : "", g_seed);
		if (!w[i].keep_lba || stt == VIRTIO_BLK_S_OK)
			continue;
		/* refused: nothing done */
		vblk_req_init(&rd, VIRTIO_BLK_T_IN, w[i].keep_lba);
		rd.in = back;
		rd.in_len = sizeof(back);
		if (vblk_do(vq, &rd, ANSWER_MS) || rd.status) {
			FAILF("dwz: read back vq %u failed\n", q);
			return;
		}
		vblk_pattern_fill(pat, sizeof(pat), w[i].keep_lba, batch);
		if (vblk_pattern_check(back, sizeof(back), w[i].keep_lba, batch, why, sizeof(why)) >= 0)
			FAILF("%s answered %u but changed the data: %s (seed %" PRIu64 ")\n",
			      w[i].what, stt, why, g_seed);
		st.dwz_nothing++;
	}
}

/* ---- head reuse ---- */

/*
 * Republish heads that are still in flight.  cap: keep the ring full
 * against what the device took (up to 3 rings' worth unreturned) and check
 * the in-flight cap; exact: never more than a ring's worth unreaped, check
 * every used entry against what was published per head.
 */
static void batch_reuse(struct sess *s)
{
	unsigned int q = rn(FUZZ_QS), k, pubs[8] = { 0 }, used[8] = { 0 };
	struct vblk_vq *vq = &s->d.vq[q];
	struct vblk_dev *d = &s->d;
	bool exact = rn(2);
	uint16_t heads[8], desc[24];
	uint64_t hdr, data, stt, deadline;
	unsigned int target = (2 + rn(3)) * vq->num, total = 0;
	struct virtio_blk_outhdr h = { .type = VIRTIO_BLK_T_IN };

	k = vq->num / 3 < 4 ? vq->num / 3 : 4;
	if (k < 1 || vq->ninflight || vblk_desc_get(vq, 3 * k, desc))
		return;
	hdr = vblk_alloc(d, 16, 0);
	data = vblk_alloc(d, 4096, 0);
	stt = vblk_alloc(d, 8, 0);
	if (!hdr || !data || !stt)
		goto out;
	h.sector = slice_lba(s, q);
	vblk_write_guest(d, hdr, &h, sizeof(h));
	for (unsigned int i = 0; i < k; i++) {
		heads[i] = desc[3 * i];
		vblk_desc_set(vq, desc[3 * i], hdr, 16, VRING_DESC_F_NEXT, desc[3 * i + 1]);
		vblk_desc_set(vq, desc[3 * i + 1], data, 4096,
			      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, desc[3 * i + 2]);
		vblk_desc_set(vq, desc[3 * i + 2], stt + i, 1, VRING_DESC_F_WRITE, 0);
	}
	st.reuse_rounds++;
	deadline = vblk_now_ms() + ANSWER_MS;
	for (;;) {
		uint16_t a = last_avail(s, q), u = used_idx(vq);
		bool more = total < target;

		if (failed)
			goto out;
		if ((uint16_t)(a - u) > vq->num || (uint16_t)(vq->avail_idx - u) > 4 * vq->num) {
			check_cap(s, q, "head reuse");
			goto out;
		}
		if ((uint16_t)(a - u) > st.max_inflight)
			st.max_inflight = (uint16_t)(a - u);
		st.cap_checks++;
		if (exact) {
			/* reap, checking each entry against the publications */
			while (vq->last_used != used_idx(vq)) {
				struct vring_used_elem e = vq->used->ring[vq->last_used % vq->num];
				unsigned int i;

				vq->last_used++;
				for (i = 0; i < k && heads[i] != e.id; i++)
					;
				if (i == k || ++used[i] > pubs[i]) {
					FAILF("head reuse: vq %u: used entry id %u (%s) returned more often than published (seed %" PRIu64 ")\n",
					      q, e.id, i == k ? "never published" : "", g_seed);
					goto out;
				}
				if (e.len != 4097)
					FAILF("head reuse: vq %u head %u: used.len %u, a 4096-byte read answers 4097\n",
					      q, e.id, e.len);
			}
		} else {
			vq->last_used = u;
		}
		if (!more && u == vq->avail_idx)
			break;
		if (vblk_now_ms() > deadline) {
			FAILF("head reuse (%s) vq %u: stuck: published %u, taken %u, returned %u after %d ms (seed %" PRIu64 ")\n",
			      exact ? "exact" : "cap", q, vq->avail_idx, a, u, ANSWER_MS, g_seed);
			goto out;
		}
		/* publish: never over what the ring holds for the device */
		while (more && (uint16_t)(vq->avail_idx - a) < vq->num &&
		       (uint16_t)(vq->avail_idx - (exact ? vq->last_used : u)) <
		       (exact ? vq->num : 3 * vq->num)) {
			unsigned int i = rn(k);

			vq->avail->ring[vq->avail_idx % vq->num] = heads[i];
			vq->avail_idx++;
			__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
			pubs[i]++;
			total++;
			st.reuse_pub++;
			more = total < target;
			deadline = vblk_now_ms() + ANSWER_MS;
		}
		vblk_kick(vq, true);
		usleep(500);
	}
	if (exact)
		for (unsigned int i = 0; i < k; i++)
			if (used[i] != pubs[i])
				FAILF("head reuse: vq %u head %u published %u times, returned %u times\n",
				      q, heads[i], pubs[i], used[i]);
out:
	vq->last_used = used_idx(vq);
	vq->kicked_idx = vq->avail_idx;
	vblk_call_count(vq, 0);
	if (!failed) {
		/* nothing of ours left in flight: give the descriptors back */
		for (unsigned int i = 0; i < 3 * k; i++)
			vq->free_stack[vq->nfree++] = desc[i];
		if (hdr)
			vblk_free(d, hdr, 16);
		if (data)
			vblk_free(d, data, 4096);
		if (stt)
			vblk_free(d, stt, 8);
	}
}

/* ---- bounce budget ---- */

static void set_bounce_limit(void)
{
	static const unsigned int kb[] = { 0, 1024, 4096, 6144, 8192, 16384, 65536 };
	char v[32];
	int fd;

	if (!g_bounce_orig[0])
		return;
	fd = open(BOUNCE_PARAM, O_WRONLY);
	if (fd < 0)
		return;
	snprintf(v, sizeof(v), "%u", kb[rn(sizeof(kb) / sizeof(kb[0]))]);
	if (write(fd, v, strlen(v)) < 0)
		FAILF("writing %s to %s: %s\n", v, BOUNCE_PARAM, strerror(errno));
	close(fd);
	st.bounce_limits++;
}

static void batch_bounce(struct sess *s, unsigned long batch)
{
	static struct vblk_req r[FUZZ_QS];
	static uint8_t *buf[FUZZ_QS];
	static struct vblk_layout lay[FUZZ_QS];
	static size_t blen[FUZZ_QS];
	unsigned int nq = 2 + rn(3), q0 = rn(FUZZ_QS);
	size_t max = s->slice * 512 < (4U << 20) ? s->slice * 512 : (4U << 20);
	char why[160];

	for (int pass = 0; pass < 2 && !failed; pass++) {
		bool write = pass == 0;

		for (unsigned int i = 0; i < nq; i++) {
			unsigned int q = (q0 + i) % FUZZ_QS;
			size_t len = rn(8) ? 512 * (1 + rn(max / 512 / 16)) : max;
			uint64_t lba = slice_lba(s, q);

			if (write) {
				free(buf[i]);
				buf[i] = malloc(max);
				memset(&lay[i], 0, sizeof(lay[i]));
				lay[i].nrd = 1;
				lay[i].rd[0] = 16;
				lay[i].nwr = 1;
				lay[i].wr[0] = len;
				lay[i].offset = 1 + rn(511) + 512 * rn(8);
				blen[i] = len;
				vblk_pattern_fill(buf[i], len, lba, batch);
				vblk_req_init(&r[i], VIRTIO_BLK_T_OUT, lba);
				r[i].out = buf[i];
				r[i].out_len = len;
			} else {
				len = blen[i];
				vblk_req_init(&r[i], VIRTIO_BLK_T_IN, lba);
				memset(buf[i], 0, len);
				r[i].in = buf[i];
				r[i].in_len = len;
			}
			r[i].layout = &lay[i];
			r[i].name = write ? "bounced write" : "bounced read";
			if (vblk_submit(&s->d.vq[q], &r[i])) {
				r[i].done = true;
				r[i].status = 0xee;	/* no guest memory: skipped */
				continue;
			}
			vblk_kick(&s->d.vq[q], true);
			if (rn(6) == 0)
				set_bounce_limit();
		}
		for (unsigned int i = 0; i < nq && !failed; i++) {
			unsigned int q = (q0 + i) % FUZZ_QS;
			uint64_t lba = slice_lba(s, q);

			if (r[i].status == 0xee)
				continue;
			if (vblk_wait_req(&s->d.vq[q], &r[i], ANSWER_MS)) {
				FAILF("%s of %zu bytes on vq %u: no answer within %d ms (bounce budget, seed %" PRIu64 ")\n",
				      r[i].name, blen[i], q, ANSWER_MS, g_seed);
				return;
			}
			st.bounce++;
			if (r[i].status != VIRTIO_BLK_S_OK) {
				FAILF("%s of %zu bytes at offset %u on vq %u: status %u\n",
				      r[i].name, blen[i], lay[i].offset, q, r[i].status);
				continue;
			}
			if (!write && vblk_pattern_check(buf[i], blen[i], lba, batch,
							 why, sizeof(why)) >= 0)
				FAILF("bounced read on vq %u: %s\n", q, why);
		}
	}
}

/* ---- dirty log ---- */

static int set_features(struct sess *s, uint64_t f)
{
	int r = xioctl(s->d.fd, VHOST_SET_FEATURES, &f);

	if (!r)
		s->acked = f;
	return r;
}

static void set_vring_log(struct sess *s, unsigned int q, bool log)
{
	struct vblk_vq *vq = &s->d.vq[q];
	struct vhost_vring_addr a = {
		.index = q,
		.flags = log ? 1U << VHOST_VRING_F_LOG : 0,
		.desc_user_addr = (uintptr_t)vq->desc,
		.avail_user_addr = (uintptr_t)vq->avail,
		.used_user_addr = (uintptr_t)vq->used,
		.log_guest_addr = vq->used_gpa,
	};

	expect(xioctl(s->d.fd, VHOST_SET_VRING_ADDR, &a), 0,
	       "SET_VRING_ADDR (same rings, log flag toggled) while attached");
}

static bool log_bit(uint8_t *log, uint64_t gpa)
{
	uint64_t pfn = gpa / 4096;

	return __atomic_load_n(&log[pfn / 8], __ATOMIC_ACQUIRE) & (1u << (pfn % 8));
}

static void log_clear(uint8_t *log, uint64_t gpa)
{
	uint64_t pfn = gpa / 4096;

	__atomic_fetch_and(&log[pfn / 8], (uint8_t)~(1u << (pfn % 8)), __ATOMIC_RELEASE);
}

static void batch_log(struct sess *s, unsigned long batch)
{
	const uint64_t LOG = 1ULL << VHOST_F_LOG_ALL;
	struct vblk_vq *vx = &s->d.vq[VALID_Q];	/* the exactly checked read */
	bool exact = (g_caps & VHOST_BLK_CAP_EXACT_LOG) && rn(3);
	uint64_t data, hdr, stt;
	struct virtio_blk_outhdr h = { .type = VIRTIO_BLK_T_IN };
	bool before, want;
	uint16_t u0, u1, u2, idx[3];
	struct vblk_req rx;
	uint8_t *log;
	int r;

	/* other traffic in flight: fuzzed chains on queues 0..14 */
	if (rn(3))
		fuzz_publish(s);
	if (!exact) {
		/* move the log, flip per-ring flags, toggle LOG_ALL */
		if (rn(3) == 0) {
			uint64_t b = (uint64_t)(uintptr_t)g_log[s->logsel ^ 1];

			r = xioctl(s->d.fd, VHOST_SET_LOG_BASE, &b);
			expect(r, 0, "SET_LOG_BASE (valid) while attached");
			if (!r)
				s->logsel ^= 1;
		}
		if (rn(4) == 0) {
			int efd = rn(2) ? eventfd(0, EFD_NONBLOCK) : -1;

			xioctl(s->d.fd, VHOST_SET_LOG_FD, &efd);
			if (efd >= 0)
				close(efd);
		}
		for (unsigned int q = 0; q < VHOST_BLK_MAX_VQS; q++)
			if (rn(4) == 0)
				set_vring_log(s, q, rn(2));
		expect(set_features(s, s->acked ^ LOG), 0,
		       "SET_FEATURES toggling LOG_ALL while attached");
		st.log_toggles++;
		fuzz_answer(s, batch);
		return;
	}
	/*
	 * Exact: one 4 KiB read on queue 15 into a page of its own, logging
	 * switched while it is in flight.  Whether it completed before the
	 * switch is known from used->idx read before and after the ioctl:
	 * completion (status, log, used->idx) and the switch of this queue's
	 * features both hold the vq mutex.
	 */
	vblk_reap(vx);
	data = vblk_alloc(&s->d, 4096, 0);
	hdr = vblk_alloc(&s->d, 16, 0);
	stt = vblk_alloc(&s->d, 1, 0);
	if (vx->ninflight || !data || !hdr || !stt || vblk_desc_get(vx, 3, idx))
		goto out;
	log = g_log[s->logsel];
	log_clear(log, data);
	h.sector = slice_lba(s, VALID_Q);
	vblk_write_guest(&s->d, hdr, &h, sizeof(h));
	vblk_desc_set(vx, idx[0], hdr, 16, VRING_DESC_F_NEXT, idx[1]);
	vblk_desc_set(vx, idx[1], data, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, idx[2]);
	vblk_desc_set(vx, idx[2], stt, 1, VRING_DESC_F_WRITE, 0);
	vblk_req_init(&rx, VIRTIO_BLK_T_IN, h.sector);
	rx.name = "logged read";
	before = s->acked & LOG;
	u0 = used_idx(vx);
	vblk_submit_raw(vx, &rx, idx[0], idx, 3);
	vblk_kick(vx, true);
	if (rn(2))
		usleep(rn(3000));
	u1 = used_idx(vx);
	r = set_features(s, s->acked ^ LOG);
	expect(r, 0, "SET_FEATURES toggling LOG_ALL with a request in flight");
	u2 = used_idx(vx);
	st.log_toggles++;
	if (vblk_wait_req(vx, &rx, ANSWER_MS)) {
		FAILF("logged read on vq %u: no answer (seed %" PRIu64 ")\n", VALID_Q, g_seed);
		goto out;
	}
	if (rx.used_len != 4097)
		FAILF("logged read on vq %u: used.len %u, documented 4097\n", VALID_Q, rx.used_len);
	if (u1 != u2) {
		st.log_ambiguous++;	/* completed during the switch */
		goto out;
	}
	want = u1 != u0 ? before : !before;
	if (log_bit(log, data) != want)
		FAILF("dirty log: a read that completed %s logging was switched %s has its data page %s (seed %" PRIu64 ")\n",
		      u1 != u0 ? "before" : "after", before ? "off" : "on",
		      log_bit(log, data) ? "marked" : "not marked", g_seed);
	st.log_exact++;
out:
	if (data)
		vblk_free(&s->d, data, 4096);
	if (hdr)
		vblk_free(&s->d, hdr, 16);
	if (stt)
		vblk_free(&s->d, stt, 1);
	fuzz_answer(s, batch);
}

/* ---- sessions ---------------------------------------------------------- */

static void backend_open(struct backend *b, const char *path)
{
	char p[128];
	struct stat sb;
	FILE *f;
	unsigned long long v = 0;

	b->path = path;
	b->fd = open(path, O_RDWR);
	if (b->fd < 0 || ioctl(b->fd, BLKGETSIZE64, &b->sectors) || fstat(b->fd, &sb)) {
		printf("FUZZ FAIL setup: backend %s: %s\n", path, strerror(errno));
		exit(1);
	}
	b->sectors /= 512;
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/queue/discard_max_bytes",
		 major(sb.st_rdev), minor(sb.st_rdev));
	f = fopen(p, "r");
	if (f && fscanf(f, "%llu", &v) == 1)
		b->discard = v > 0;
	if (f)
		fclose(f);
	/* a fuzz region for the largest write-zeroes, 4 MiB slices */
	if (b->sectors < 2 * 16 * 8192 || b->sectors / 2 < MAX_DWZ + 8192 + 1) {
		printf("FUZZ FAIL setup: backend %s: %" PRIu64 " sectors, need %u\n",
		       path, b->sectors, 2 * 16 * 8192);
		exit(1);
	}
}

/* Before attaching: a bad ring or log address must make it fail. */
static int session_probe(struct sess *s)
{
	unsigned int q = rn(VHOST_BLK_MAX_VQS), kind = rn(s->acked & (1ULL << VHOST_F_LOG_ALL) ? 4 : 3);
	struct vblk_vq *vq = &s->d.vq[q];
	struct vhost_vring_addr a = {
		.index = q,
		.flags = s->acked & (1ULL << VHOST_F_LOG_ALL) ? 1U << VHOST_VRING_F_LOG : 0,
		.desc_user_addr = (uintptr_t)vq->desc,
		.avail_user_addr = (uintptr_t)vq->avail,
		.used_user_addr = (uintptr_t)vq->used,
		.log_guest_addr = vq->used_gpa,
	};
	uint64_t b;
	int r;

	st.probes++;
	switch (kind) {
	case 0: a.desc_user_addr = bad_uaddr(16 * vq->num, 16); break;
	case 1: a.avail_user_addr = bad_uaddr(6 + 2 * vq->num, 2); break;
	case 2: a.used_user_addr = bad_uaddr(6 + 8 * vq->num, 4); break;
	default:
		b = bad_logbase(s->d.o.gpa_base, s->d.o.gpa_base + s->d.o.mem_size);
		expect(xioctl(s->d.fd, VHOST_SET_LOG_BASE, &b), 0,
		       "session probe: SET_LOG_BASE outside user space, detached");
		break;
	}
	if (kind <= 2)
		expect(xioctl(s->d.fd, VHOST_SET_VRING_ADDR, &a), 0,
		       "session probe: SET_VRING_ADDR outside user space, detached");
	r = xioctl(s->d.fd, VHOST_BLK_SET_BACKEND, &s->be->fd);
	expect(r, -EFAULT, kind <= 2 ? "session probe: SET_BACKEND with a ring outside user space" :
	       "session probe: SET_BACKEND with the log outside user space");
	if (kind <= 2)
		return vblk_vq_setup(&s->d, q);
	b = (uint64_t)(uintptr_t)g_log[s->logsel];
	return xioctl(s->d.fd, VHOST_SET_LOG_BASE, &b);
}

static const char *const kind_name[] = {
	"setup", "fuzz", "dwz", "reuse", "bounce", "log", "teardown",
};
static uint64_t t_kind[7];

static void ring_session(uint64_t end)
{
	static struct sess s;
	struct vblk_opts o = VBLK_OPTS_DEFAULT;
	uint64_t f = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_ANY_LAYOUT) |
		     (1ULL << VIRTIO_F_NOTIFY_ON_EMPTY) | (1ULL << VIRTIO_BLK_F_MQ), b, t0;
	unsigned int nb;
	int err;

	memset(&s, 0, sizeof(s));
	s.be = g_slow.fd >= 0 && rn(g_only >= 0 ? 2 : 4) == 0 ? &g_slow : &g_fast;
	if (rn(4)) f |= 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
	if (rn(2)) f |= 1ULL << VIRTIO_RING_F_EVENT_IDX;
	if (rn(4)) f |= 1ULL << VIRTIO_BLK_F_FLUSH;
	if (rn(4)) f |= 1ULL << VIRTIO_BLK_F_DISCARD;
	if (rn(4)) f |= 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	o.nvqs = VHOST_BLK_MAX_VQS;
	o.qsize = 1u << (3 + rn(5));
	o.regions = 1 + rn(2);
	o.mem_size = SESSION_MEM;
	o.set_features = true;
	o.features = f;
	s.acked = f;
	s.fz = s.be->sectors / 2;
	s.slice = s.be->sectors / 2 / VHOST_BLK_MAX_VQS;
	t0 = vblk_now_ms();
	err = vblk_open(&s.d, &o);
	b = (uint64_t)(uintptr_t)g_log[0];
	if (!err)
		err = vblk_ioctl(&s.d, VHOST_SET_LOG_BASE, &b);
	/* logging on from the start: once the log is usable */
	if (!err && rn(3) == 0) {
		err = set_features(&s, f | (1ULL << VHOST_F_LOG_ALL));
		for (unsigned int q = 0; q < VHOST_BLK_MAX_VQS && !err; q++)
			set_vring_log(&s, q, true);
	}
	if (!err && rn(6) == 0 && g_only < 0)
		err = session_probe(&s);
	if (!err)
		err = vblk_set_backend(&s.d, s.be->fd);
	if (!err) {
		g_arena = g_bump = s.d.o.gpa_base + s.d.o.mem_size - ARENA;
		err = vblk_alloc_at(&s.d, g_arena, ARENA);
	}
	if (!err) {
		struct virtio_blk_outhdr h = { .type = VIRTIO_BLK_T_FLUSH };

		s.repair_hdr = vblk_alloc(&s.d, 16, 0);
		s.repair_st = vblk_alloc(&s.d, 32 * VHOST_BLK_MAX_VQS, 0);
		if (!s.repair_hdr || !s.repair_st)
			err = -ENOMEM;
		else
			vblk_write_guest(&s.d, s.repair_hdr, &h, sizeof(h));
	}
	if (err) {
		FAILF("session %lu: device setup: %s\n", st.sessions, strerror(-err));
		vblk_close(&s.d);
		return;
	}
	st.sessions++;
	if (rn(3) == 0)
		set_bounce_limit();
	nb = s.be == &g_slow ? 2 + rn(8) : 10 + rn(60);
	t_kind[0] += vblk_now_ms() - t0;
	for (unsigned int i = 0; i < nb && !failed && vblk_now_ms() < end; i++) {
		unsigned long batch = st.batches++;
		unsigned int k = rn(100), kind;

		if (g_only >= 0)
			k = (unsigned int[]){ 0, 60, 75, 85, 95 }[g_only];
		t0 = vblk_now_ms();
		for (unsigned int q = 0; q < VHOST_BLK_MAX_VQS; q++)
			vblk_vq_set_irq(&s.d.vq[q], rn(4) != 0);
		if (k < 55)
			batch_fuzz(&s, batch), kind = 1;
		else if (k < 70)
			batch_dwz(&s, batch), kind = 2;
		else if (k < 82)
			batch_reuse(&s), kind = 3;
		else if (k < 85)
			batch_bounce(&s, batch), kind = 4;
		else
			batch_log(&s, batch), kind = 5;
		for (unsigned int q = 0; q < VHOST_BLK_MAX_VQS && !failed; q++)
			check_cap(&s, q, "after a batch");
		t_kind[kind] += vblk_now_ms() - t0;
	}
	t0 = vblk_now_ms();
	/* the end: with requests in flight */
	if (!failed) {
		fuzz_publish(&s);
		if (rn(3) == 0) {
			uint64_t t0 = vblk_now_ms();
			int fd = -1;

			expect(xioctl(s.d.fd, VHOST_BLK_SET_BACKEND, &fd), 0,
			       "detach with requests in flight");
			if (vblk_now_ms() - t0 > DETACH_MS)
				FAILF("detach with requests in flight took %" PRIu64 " ms\n",
				      vblk_now_ms() - t0);
			st.detaches++;
		}
	}
	vblk_close(&s.d);		/* teardown with whatever is left */
	g_fc_pending = false;
	t_kind[6] += vblk_now_ms() - t0;
}

static void fuzz_rings(uint64_t end)
{
	while (!failed && vblk_now_ms() < end)
		ring_session(end);
}

/* The end of user space: 4- or 5-level paging. */
static uint64_t task_limit(void)
{
	void *p = mmap((void *)(1ULL << 48), 4096, PROT_READ,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED)
		return (1ULL << 47) - 4096;
	munmap(p, 4096);
	return (1ULL << 56) - 4096;
}

static void restore_bounce(void)
{
	int fd;

	if (!g_bounce_orig[0])
		return;
	fd = open(BOUNCE_PARAM, O_WRONLY);
	if (fd < 0 || write(fd, g_bounce_orig, strlen(g_bounce_orig)) < 0)
		printf("# warning: could not restore %s\n", BOUNCE_PARAM);
	if (fd >= 0)
		close(fd);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dev", 1, NULL, 'd' }, { "slow-dev", 1, NULL, 'S' },
		{ "seed", 1, NULL, 's' }, { "seconds", 1, NULL, 't' },
		{ "mode", 1, NULL, 'm' }, { "batch", 1, NULL, 'b' },
		{ "jobs", 1, NULL, 'j' }, { "sequences", 1, NULL, 'n' },
		{ NULL, 0, NULL, 0 }
	};
	const char *mode = "both", *dev = NULL, *slow = NULL;
	uint64_t start, mid, end, t_ioctl = 0, t_ring = 0;
	int c, fd;

	while ((c = getopt_long(argc, argv, "d:S:s:t:m:b:j:n:", lo, NULL)) != -1) {
		switch (c) {
		case 'd': dev = optarg; break;
		case 'S': slow = optarg; break;
		case 's': g_seed = strtoull(optarg, NULL, 0); break;
		case 't': g_seconds = atoi(optarg); break;
		case 'm': mode = optarg; break;
		case 'n':
			g_max_seqs = strtoul(optarg, NULL, 0);
			break;
		case 'j':
			g_jobs = atoi(optarg);
			if (g_jobs < 1 || g_jobs > 64)
				goto usage;
			break;
		case 'b':
			for (g_only = 0; g_only < 5; g_only++)
				if (!strcmp(optarg, kind_name[g_only + 1]))
					break;
			if (g_only == 5)
				goto usage;
			break;
		default: goto usage;
		}
	}
	if (!dev || (strcmp(mode, "ioctl") && strcmp(mode, "ring") && strcmp(mode, "both")))
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	rs = g_seed;

	backend_open(&g_fast, dev);
	if (slow)
		backend_open(&g_slow, slow);
	scratch = mmap(NULL, SCRATCH + 8192, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 2; i++)
		g_log[i] = mmap(NULL, LOG_BYTES, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (scratch == MAP_FAILED || g_log[0] == MAP_FAILED || g_log[1] == MAP_FAILED) {
		printf("FUZZ FAIL setup: %s\n", strerror(errno));
		return 1;
	}
	/* a guard page after scratch: "just past it" is never our memory */
	mprotect(scratch + SCRATCH, 8192, PROT_NONE);
	g_task_limit = task_limit();
	/* documented: no owner needed */
	fd = open(VBLK_DEV_PATH, O_RDWR);
	if (fd < 0 || (ioctl(fd, VHOST_BLK_GET_CAPS, &g_caps) && errno != ENOTTY)) {
		printf("FUZZ FAIL VHOST_BLK_GET_CAPS on a fresh descriptor: %s\n", strerror(errno));
		return 1;
	}
	/* an older module: no capabilities (ioctl mode still expects it) */
	if (errno == ENOTTY)
		g_caps = 0;
	close(fd);
	fd = open(BOUNCE_PARAM, O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, g_bounce_orig, sizeof(g_bounce_orig) - 1);

		g_bounce_orig[n > 0 ? n : 0] = 0;
		close(fd);
	}
	printf("# vblk_fuzz: seed %" PRIu64 ", %d s, mode %s, %d ioctl job%s, backend %s (discard %d)%s%s, caps %#" PRIx64 ", user space ends at %#" PRIx64 ", bounce_limit_kb %s\n",
	       g_seed, g_seconds, mode, g_jobs, g_jobs > 1 ? "s" : "", dev, g_fast.discard, slow ? ", slow backend " : "",
	       slow ? slow : "", g_caps, g_task_limit,
	       g_bounce_orig[0] ? strtok(g_bounce_orig, "\n") : "n/a");
	start = vblk_now_ms();
	end = start + 1000ULL * g_seconds;
	mid = !strcmp(mode, "both") ? start + (end - start) / 2 : end;
	if (strcmp(mode, "ring")) {
		fuzz_ioctls(mid);
		t_ioctl = vblk_now_ms() - start;
	}
	if (strcmp(mode, "ioctl")) {
		uint64_t t = vblk_now_ms();

		fuzz_rings(end);
		t_ring = vblk_now_ms() - t;
	}
	restore_bounce();
	/* afterwards a fresh device must serve valid requests */
	if (!failed) {
		static struct sess s;
		struct vblk_opts o = VBLK_OPTS_DEFAULT;

		memset(&s, 0, sizeof(s));
		s.be = &g_fast;
		s.slice = g_fast.sectors / 2 / VHOST_BLK_MAX_VQS;
		o.nvqs = VHOST_BLK_MAX_VQS;
		if (vblk_open(&s.d, &o) || vblk_set_backend(&s.d, g_fast.fd)) {
			FAILF("fresh device after fuzzing: setup failed\n");
		} else {
			for (unsigned int q = 0; q < VHOST_BLK_MAX_VQS && !failed; q++)
				valid_io(&s, q, 1000 + q);
		}
		vblk_close(&s.d);
	}
	printf("# ioctl: %lu sequences (%lu on a descriptor reset to fresh, %lu resets refused), %lu ioctls, %lu EFAULT probes, %lu answers checked\n",
	       st.seqs, st.recycled, st.reset_refused, st.ioctls, st.probes, st.checked);
	printf("# ring: %lu sessions, %lu batches, %lu fuzzed chains (%lu answered by a used entry, %lu refused and then served once rewritten); %lu valid requests OK\n",
	       st.sessions, st.batches, st.chains, st.ans_used, st.ans_err, st.valid);
	printf("# ring: %lu DISCARD/WRITE_ZEROES checked (%lu rejected ones left the data alone); head reuse: %lu rounds, %lu republished heads; in-flight cap checked %lu times, most seen %lu; %lu bounced requests, %lu bounce_limit_kb changes; %lu LOG_ALL toggles, %lu exact log checks (%lu skipped as ambiguous); %lu detaches in flight\n",
	       st.dwz, st.dwz_nothing, st.reuse_rounds, st.reuse_pub, st.cap_checks,
	       st.max_inflight, st.bounce, st.bounce_limits, st.log_toggles, st.log_exact,
	       st.log_ambiguous, st.detaches);
	if (t_ioctl) {
		printf("# ioctl time (s, %d job%s):", g_jobs, g_jobs > 1 ? "s" : "");
		for (int i = 0; i < T_NR; i++) {
			uint64_t t = t_ioc[i];

			if (!t_name[i])
				continue;
			for (int j = i + 1; j < T_NR && !t_name[j]; j++)
				t += t_ioc[j];
			printf("%s %s %.1f", i == T_CASE ? "; ioctls:" : i ? "," : "",
			       t_name[i], t / 1e6);
		}
		printf("\n");
	}
	if (t_ioctl)
		printf("# rate: ioctl: %lu sequences in %.1f s = %.1f sequences/s (%.0f ioctls/s)\n",
		       st.seqs, t_ioctl / 1000.0, st.seqs * 1000.0 / t_ioctl,
		       st.ioctls * 1000.0 / t_ioctl);
	if (t_ring) {
		printf("# ring time:");
		for (int i = 0; i < 7; i++)
			printf(" %s %.1f s", kind_name[i], t_kind[i] / 1000.0);
		printf("\n");
	}
	if (t_ring)
		printf("# rate: ring: %lu fuzzed chains in %.1f s = %.1f chains/s (%lu sessions, %lu batches)\n",
		       st.chains, t_ring / 1000.0, st.chains * 1000.0 / t_ring,
		       st.sessions, st.batches);
	if (failed) {
		printf("FUZZ FAIL seed=%" PRIu64 "\n", g_seed);
		return 1;
	}
	printf("FUZZ OK seed=%" PRIu64 " sequences=%lu ioctls=%lu chains=%lu\n", g_seed,
	       st.seqs, st.ioctls, st.chains);
	return 0;
usage:
	fprintf(stderr, "usage: vblk_fuzz --dev BLOCKDEV [--slow-dev BLOCKDEV] [--seed N] [--seconds S] [--mode ioctl|ring|both] [--jobs N] [--sequences N] [--batch fuzz|dwz|reuse|bounce|log]\n");
	return 2;
}
