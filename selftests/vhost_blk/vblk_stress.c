// SPDX-License-Identifier: GPL-2.0
/*
 * vblk_stress - randomised, seedable stress of /dev/vhost-blk.
 *
 *	vblk_stress --dev BLOCKDEV|FILE [--direct] [--seed N] [--seconds S]
 *		    [--queues Q] [--no-detach] [--ro-toggle] [--verbose]
 *
 * One thread per virtqueue (all 16 by default) drives its queue through
 * the vblk_guest library and owns a disjoint region of the backing device,
 * split in slots; a request occupies one free slot, so in-flight requests
 * never overlap and every completed read can be checked exactly against a
 * per-sector shadow (pattern seed of the last completed write, zeroes
 * after WRITE_ZEROES, unknown after DISCARD).  The run is a sequence of
 * epochs; each opens a fresh device with random features (EVENT_IDX and
 * INDIRECT_DESC on or off), random ring size and per-queue depth, and
 * while the queues run the main thread detaches and re-attaches the
 * backend at random times.  Per request, at random: type (IN, OUT, FLUSH,
 * GET_ID, DISCARD, WRITE_ZEROES, an unknown type, an out-of-range read, a
 * length that is not a multiple of 512), descriptor layout (classic,
 * indirect, header split, status merged with data, unaligned and
 * contiguous pieces, or one of the library's named layouts), batching;
 * per queue, at random: notifications suppressed or enabled
 * (VRING_AVAIL_F_NO_INTERRUPT / used_event), and spurious and double kicks.
 * The backend is a block device or a regular file (--direct: opened
 * O_DIRECT, else a file is served through the page cache).  --ro-toggle:
 * another thread flips VHOST_BLK_SET_READONLY every 0-2 ms; a WRITE,
 * DISCARD or WRITE_ZEROES then either succeeds and lands or fails with
 * IOERR and changes nothing (the shadow keeps the old content), and the
 * run fails unless both happened.
 *
 * Checked: every request completes exactly once (no unknown or duplicate
 * used entries), with a status that is OK, IOERR or UNSUPP and is the one
 * expected for its kind, with the right used.len (data + status for
 * reads and GET_ID, the status byte alone otherwise), and the right data;
 * every wait is bounded (a lost completion or notification fails the run
 * naming the stuck request); at the end the backing device itself is read
 * and compared with the shadow.  The seed of a failing run reproduces its
 * random choices (not the thread interleaving).
 *
 * Exit status 0 when every check passed, 1 otherwise; the last line is
 * "STRESS OK ..." or "STRESS FAIL ...".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vblk_guest.h"

#define SLOT_SECTORS	512		/* 256 KiB slots */
#define MAX_IO_SECTORS	256		/* 128 KiB per request at most */
#define MAX_DEPTH	16
#define WAIT_MS		30000		/* every wait is bounded by this */
#define SH_UNKNOWN	0
#define SH_ZERO		1

enum kind {
	K_READ, K_WRITE, K_FLUSH, K_GETID, K_DISCARD, K_WZ, K_BADTYPE,
	K_OOR, K_BADLEN, K_NR
};
static const char *const kind_name[K_NR] = {
	"READ", "WRITE", "FLUSH", "GET_ID", "DISCARD", "WRITE_ZEROES",
	"BADTYPE", "OUT_OF_RANGE", "BADLEN"
};

static const char serial[VHOST_BLK_SERIAL_BYTES] = "vblk-stress-serial01";

struct qctx;

struct sreq {
	struct vblk_req r;
	struct vblk_layout lay;
	struct qctx *q;
	enum kind kind;
	bool busy;
	int slot;
	uint64_t lba, nsect, seed;
	uint8_t *buf;			/* data (in or out) */
	size_t buflen;
	struct virtio_blk_discard_write_zeroes seg;
	char name[96];
};

struct qctx {
	struct vblk_dev *d;
	struct vblk_vq *vq;
	unsigned int idx, depth;
	uint64_t rng;
	uint64_t base, nsect;		/* region of the backing device */
	uint64_t *shadow;		/* per sector of the region */
	unsigned int nslots;
	bool *slot_busy;
	struct sreq req[MAX_DEPTH];
	unsigned int busy;
	uint64_t wseq;
	/* statistics */
	unsigned long n[K_NR], st_ok, st_ioerr, st_unsupp, irq_toggles,
		      spurious, doubles, verified, ro_rejected, writes_ok;
	int failed;
	char why[256];
};

static uint64_t g_seed = 1;
static int g_seconds = 30;
static unsigned int g_queues = VHOST_BLK_MAX_VQS;
static bool g_detach = true, g_verbose, g_direct, g_ro_toggle;
static const char *g_dev;
static int g_bfd = -1;
static uint64_t g_capacity;		/* sectors of the backing device */
static volatile int g_stop;
static volatile int g_failed;
static uint64_t *g_shadow;

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("# ");
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static uint64_t rnd(uint64_t *s)
{
	/* splitmix64: good enough, and a seed fully determines the stream */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned int rn(uint64_t *s, unsigned int n)
{
	return n ? rnd(s) % n : 0;
}

static void qfail(struct qctx *q, const char *fmt, ...)
{
	va_list ap;

	if (!q->failed) {
		va_start(ap, fmt);
		vsnprintf(q->why, sizeof(q->why), fmt, ap);
		va_end(ap);
		printf("# FAIL vq %u: %s (seed %" PRIu64 ")\n", q->idx, q->why,
		       g_seed);
		fflush(stdout);
	}
	q->failed = 1;
	g_failed = 1;
}

static bool status_valid(uint8_t s)
{
	return s == VIRTIO_BLK_S_OK || s == VIRTIO_BLK_S_IOERR ||
	       s == VIRTIO_BLK_S_UNSUPP;
}

static const char *st_name(uint8_t s)
{
	switch (s) {
	case VIRTIO_BLK_S_OK: return "OK";
	case VIRTIO_BLK_S_IOERR: return "IOERR";
	case VIRTIO_BLK_S_UNSUPP: return "UNSUPP";
	case VBLK_STATUS_UNSET: return "UNSET(0xff)";
	default: return "INVALID";
	}
}

/* Check a completed read against the shadow. */
static void verify_read(struct qctx *q, struct sreq *s)
{
	static const uint8_t zero[VBLK_SECTOR];
	char why[160];

	for (uint64_t i = 0; i < s->nsect; i++) {
		uint64_t rel = s->lba - q->base + i;
		uint64_t sh = q->shadow[rel];
		const uint8_t *p = s->buf + i * VBLK_SECTOR;

		if (sh == SH_UNKNOWN)
			continue;
		if (sh == SH_ZERO) {
			if (memcmp(p, zero, VBLK_SECTOR))
				qfail(q, "%s: sector %" PRIu64 " should read as zeroes",
				      s->name, s->lba + i);
		} else if (vblk_pattern_check(p, VBLK_SECTOR, s->lba + i, sh,
					      why, sizeof(why)) >= 0) {
			qfail(q, "%s: data: %s", s->name, why);
		}
		q->verified++;
	}
}

static void on_complete(struct vblk_req *r)
{
	struct sreq *s = (struct sreq *)r;	/* r is the first member */
	struct qctx *q = s->q;
	uint8_t st = r->status;
	bool ok_expected = false;

	if (!s->busy) {
		qfail(q, "%s completed while not in flight", s->name);
		return;
	}
	if (!status_valid(st)) {
		qfail(q, "%s: invalid status 0x%02x (%s)", s->name, st, st_name(st));
		goto out;
	}
	if (st == VIRTIO_BLK_S_OK)
		q->st_ok++;
	else if (st == VIRTIO_BLK_S_IOERR)
		q->st_ioerr++;
	else
		q->st_unsupp++;
	if (g_ro_toggle && st == VIRTIO_BLK_S_IOERR &&
	    (s->kind == K_WRITE || s->kind == K_DISCARD || s->kind == K_WZ)) {
		q->ro_rejected++;	/* read-only at the time: nothing written */
		goto out;
	}

	switch (s->kind) {
	case K_READ:
	case K_WRITE:
	case K_FLUSH:
	case K_GETID:
		ok_expected = true;
		break;
	case K_DISCARD:
	case K_WZ:
		if (st == VIRTIO_BLK_S_IOERR)
			qfail(q, "%s: IOERR on an aligned in-range request", s->name);
		break;
	case K_BADTYPE:
		if (st != VIRTIO_BLK_S_UNSUPP)
			qfail(q, "%s: status %s, expected UNSUPP", s->name, st_name(st));
		break;
	case K_OOR:
	case K_BADLEN:
		if (st != VIRTIO_BLK_S_IOERR)
			qfail(q, "%s: status %s, expected IOERR", s->name, st_name(st));
		break;
	default:
		break;
	}
	if (ok_expected && st != VIRTIO_BLK_S_OK)
		qfail(q, "%s: status %s, expected OK", s->name, st_name(st));

	if (st == VIRTIO_BLK_S_OK) {
		uint64_t rel = s->lba - q->base;

		switch (s->kind) {
		case K_READ:
			if (r->used_len != s->buflen + 1)
				qfail(q, "%s: used.len %u, expected %zu", s->name,
				      r->used_len, s->buflen + 1);
			verify_read(q, s);
			break;
		case K_WRITE:
			q->writes_ok++;
			for (uint64_t i = 0; i < s->nsect; i++)
				q->shadow[rel + i] = s->seed;
			break;
		case K_GETID:
			if (r->used_len != sizeof(serial) + 1)
				qfail(q, "%s: used.len %u, expected %zu", s->name,
				      r->used_len, sizeof(serial) + 1);
			if (memcmp(s->buf, serial, sizeof(serial)))
				qfail(q, "%s: GET_ID returned the wrong serial", s->name);
			break;
		case K_DISCARD:
			for (uint64_t i = 0; i < s->nsect; i++)
				q->shadow[rel + i] = SH_UNKNOWN;
			break;
		case K_WZ:
			for (uint64_t i = 0; i < s->nsect; i++)
				q->shadow[rel + i] = SH_ZERO;
			break;
		default:
			break;
		}
		if (s->kind != K_READ && s->kind != K_GETID && r->used_len != 1)
			qfail(q, "%s: used.len %u, expected 1", s->name, r->used_len);
	}
out:
	if (s->slot >= 0)
		q->slot_busy[s->slot] = false;
	s->busy = false;
	q->busy--;
}

/* A random descriptor layout for a request with rdlen/wrlen stream bytes. */
static const struct vblk_layout *pick_layout(struct qctx *q, struct sreq *s,
					     size_t rdlen, size_t wrlen)
{
	struct vblk_layout *l = &s->lay;
	bool indirect = q->d->acked & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);

	if (rn(&q->rng, 10) < 4)
		return NULL;
	if (rn(&q->rng, 4) == 0) {
		*l = vblk_layouts[rn(&q->rng, vblk_nlayouts)].l;
		if (indirect && rn(&q->rng, 2))
			l->flags |= VBLK_L_INDIRECT;
		if (rn(&q->rng, 3) == 0)
			l->offset = rn(&q->rng, 4096);
		return l;
	}
	memset(l, 0, sizeof(*l));
	if (indirect && rn(&q->rng, 2))
		l->flags |= VBLK_L_INDIRECT;
	if (rn(&q->rng, 3) == 0) {
		l->flags |= VBLK_L_CONTIG;
		l->gap = rn(&q->rng, 3) ? 0 : rn(&q->rng, 64);
	}
	l->offset = rn(&q->rng, 2) ? 0 : rn(&q->rng, 4096);
	if (rdlen + wrlen <= 40 && rn(&q->rng, 4) == 0) {
		l->flags |= VBLK_L_BYTES;
		return l;
	}
	l->nrd = rn(&q->rng, 4);
	for (int i = 0; i < l->nrd; i++)
		l->rd[i] = 1 + rn(&q->rng, rn(&q->rng, 2) ? 16 : 4096);
	l->nwr = rn(&q->rng, 4);
	for (int i = 0; i < l->nwr; i++)
		l->wr[i] = rn(&q->rng, 8) == 0 ? 0 : 1 + rn(&q->rng, rn(&q->rng, 2) ? 512 : 8192);
	(void)wrlen;
	return l;
}

static int pick_slot(struct qctx *q)
{
	unsigned int start = rn(&q->rng, q->nslots);

	for (unsigned int i = 0; i < q->nslots; i++) {
		unsigned int sl = (start + i) % q->nslots;

		if (!q->slot_busy[sl])
			return sl;
	}
	return -1;
}

/* Build and submit one random request.  0, or -ENOSPC (retry later). */
static int submit_one(struct qctx *q)
{
	struct sreq *s = NULL;
	unsigned int k = rn(&q->rng, 100);
	enum kind kind;
	size_t rdlen, wrlen;
	int err;

	for (unsigned int i = 0; i < MAX_DEPTH; i++)
		if (!q->req[i].busy) {
			s = &q->req[i];
			break;
		}
	if (!s)
		return -ENOSPC;

	kind = k < 40 ? K_READ : k < 78 ? K_WRITE : k < 83 ? K_FLUSH :
	       k < 86 ? K_GETID : k < 90 ? K_DISCARD : k < 94 ? K_WZ :
	       k < 96 ? K_BADTYPE : k < 98 ? K_OOR : K_BADLEN;
	memset(&s->r, 0, sizeof(s->r));
	s->kind = kind;
	s->slot = -1;
	s->nsect = 0;
	s->lba = 0;
	s->q = q;
	if (kind == K_READ || kind == K_WRITE || kind == K_DISCARD ||
	    kind == K_WZ) {
		s->slot = pick_slot(q);
		if (s->slot < 0)
			return -ENOSPC;
	}

	switch (kind) {
	case K_READ:
	case K_WRITE: {
		uint64_t off = rn(&q->rng, SLOT_SECTORS);
		uint64_t max = SLOT_SECTORS - off;

		s->nsect = 1 + rn(&q->rng, max < MAX_IO_SECTORS ? max : MAX_IO_SECTORS);
		if (rn(&q->rng, 2))	/* favour small requests */
			s->nsect = 1 + rn(&q->rng, s->nsect < 16 ? s->nsect : 16);
		s->lba = q->base + (uint64_t)s->slot * SLOT_SECTORS + off;
		s->buflen = s->nsect * VBLK_SECTOR;
		vblk_req_init(&s->r, kind == K_READ ? VIRTIO_BLK_T_IN :
			      VIRTIO_BLK_T_OUT, s->lba);
		if (kind == K_WRITE) {
			s->seed = ((uint64_t)q->idx << 48 | ++q->wseq) + 2;
			vblk_pattern_fill(s->buf, s->buflen, s->lba, s->seed);
			s->r.out = s->buf;
			s->r.out_len = s->buflen;
		} else {
			memset(s->buf, 0xa5, s->buflen);
			s->r.in = s->buf;
			s->r.in_len = s->buflen;
		}
		break;
	}
	case K_FLUSH:
		vblk_req_init(&s->r, VIRTIO_BLK_T_FLUSH, 0);
		s->buflen = 0;
		break;
	case K_GETID:
		vblk_req_init(&s->r, VIRTIO_BLK_T_GET_ID, 0);
		s->buflen = VHOST_BLK_SERIAL_BYTES;
		memset(s->buf, 0, s->buflen);
		s->r.in = s->buf;
		s->r.in_len = s->buflen;
		break;
	case K_DISCARD:
	case K_WZ: {
		/* 4 KiB aligned, inside the slot */
		uint64_t off = 8 * rn(&q->rng, SLOT_SECTORS / 8);
		uint64_t max = (SLOT_SECTORS - off) / 8;

		s->nsect = 8 * (1 + rn(&q->rng, max));
		s->lba = q->base + (uint64_t)s->slot * SLOT_SECTORS + off;
		vblk_req_init(&s->r, kind == K_DISCARD ? VIRTIO_BLK_T_DISCARD :
			      VIRTIO_BLK_T_WRITE_ZEROES, 0);
		s->seg.sector = s->lba;
		s->seg.num_sectors = s->nsect;
		s->seg.flags = kind == K_WZ && rn(&q->rng, 2) ?
			       VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
		s->r.out = &s->seg;
		s->r.out_len = sizeof(s->seg);
		s->buflen = 0;
		break;
	}
	case K_BADTYPE:
		vblk_req_init(&s->r, 0x55 + rn(&q->rng, 100), 0);
		s->buflen = 0;
		break;
	case K_OOR:
		vblk_req_init(&s->r, VIRTIO_BLK_T_IN,
			      g_capacity - rn(&q->rng, 2) + rn(&q->rng, 1000));
		s->buflen = 4096;
		s->r.in = s->buf;
		s->r.in_len = s->buflen;
		break;
	case K_BADLEN:
		vblk_req_init(&s->r, VIRTIO_BLK_T_IN, q->base);
		s->buflen = 1 + rn(&q->rng, 511) + 512 * rn(&q->rng, 4);
		s->r.in = s->buf;
		s->r.in_len = s->buflen;
		break;
	default:
		return -EINVAL;
	}
	snprintf(s->name, sizeof(s->name), "q%u#%lu %s lba %" PRIu64 "+%" PRIu64,
		 q->idx, q->vq->submitted, kind_name[kind], s->lba, s->nsect);
	s->r.name = s->name;
	s->r.complete = on_complete;
	rdlen = s->r.hdr_len + s->r.out_len;
	wrlen = s->r.in_len + s->r.status_len;
	s->r.layout = pick_layout(q, s, rdlen, wrlen);
	err = vblk_submit(q->vq, &s->r);
	if (err)
		return err;
	s->busy = true;
	q->busy++;
	if (s->slot >= 0)
		q->slot_busy[s->slot] = true;
	q->n[kind]++;
	return 0;
}

static void *queue_thread(void *arg)
{
	struct qctx *q = arg;
	uint64_t one = 1;

	while (!g_stop && !g_failed) {
		unsigned int batch = 1 + rn(&q->rng, 4);
		unsigned int added = 0;
		int err;

		if (rn(&q->rng, 64) == 0) {
			vblk_vq_set_irq(q->vq, rn(&q->rng, 2));
			q->irq_toggles++;
		}
		while (added < batch && q->busy < q->depth) {
			err = submit_one(q);
			if (err == -ENOSPC)
				break;
			if (err) {
				qfail(q, "submit: %s", strerror(-err));
				break;
			}
			added++;
		}
		if (added) {
			unsigned int k = rn(&q->rng, 40);

			vblk_kick(q->vq, k == 0);
			if (k == 1) {	/* double kick */
				if (write(q->vq->kick_fd, &one, 8) != 8 ||
				    write(q->vq->kick_fd, &one, 8) != 8)
					qfail(q, "kick write: %s", strerror(errno));
				q->doubles++;
			}
		} else if (rn(&q->rng, 20) == 0) {
			if (write(q->vq->kick_fd, &one, 8) != 8)	/* spurious */
				qfail(q, "kick write: %s", strerror(errno));
			q->spurious++;
		}
		if (q->busy && (q->busy >= q->depth || !added || rn(&q->rng, 3) == 0)) {
			err = vblk_wait_any(q->vq, WAIT_MS);
			if (err)
				qfail(q, "wait for a completion: %s (%d in flight, see the stuck list above)",
				      err == -ETIMEDOUT ? "timeout" : err == -ENOTRECOVERABLE ?
				      "lost notification" : strerror(-err), q->busy);
		}
		if (q->vq->bad_used)
			qfail(q, "%lu invalid used entries (unknown id, duplicate or bad len)",
			      q->vq->bad_used);
	}
	/* drain, bounded */
	if (q->busy) {
		int err = vblk_wait_all(q->vq, WAIT_MS);

		if (err)
			qfail(q, "drain: %s with %u in flight",
			      err == -ETIMEDOUT ? "timeout" : "lost notification", q->busy);
	}
	if (q->vq->bad_used)
		qfail(q, "%lu invalid used entries", q->vq->bad_used);
	return NULL;
}

static void msleep(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

struct ro_toggler {
	struct vblk_dev *d;
	uint64_t rng;
	unsigned long flips;
};

/* --ro-toggle: flip SET_READONLY every 0-2 ms until the epoch ends. */
static void *ro_thread(void *arg)
{
	struct ro_toggler *t = arg;
	int ro = 0;

	while (!g_stop && !g_failed) {
		struct timespec ts = { 0, (long)rn(&t->rng, 2000) * 1000 };

		ro = !ro;
		if (!vblk_set_readonly(t->d, ro))
			t->flips++;
		nanosleep(&ts, NULL);
	}
	vblk_set_readonly(t->d, 0);
	return NULL;
}

/* Read the backing device directly and compare with the shadow. */
static int verify_backend(void)
{
	int fd = open(g_dev, O_RDONLY | O_DIRECT);
	uint8_t *buf = vblk_aligned(SLOT_SECTORS * VBLK_SECTOR);
	static const uint8_t zero[VBLK_SECTOR];
	uint64_t per = g_capacity / g_queues, checked = 0;
	int bad = 0;
	char why[160];

	if (fd < 0 || !buf) {
		printf("# FAIL: open %s O_DIRECT: %s\n", g_dev, strerror(errno));
		return -1;
	}
	for (uint64_t lba = 0; lba + SLOT_SECTORS <= per * g_queues && bad < 5;
	     lba += SLOT_SECTORS) {
		if (pread(fd, buf, SLOT_SECTORS * VBLK_SECTOR,
			  lba * VBLK_SECTOR) != SLOT_SECTORS * VBLK_SECTOR) {
			printf("# FAIL: pread %s at %" PRIu64 ": %s\n", g_dev, lba,
			       strerror(errno));
			bad++;
			break;
		}
		for (unsigned int i = 0; i < SLOT_SECTORS; i++) {
			uint64_t sh = g_shadow[lba + i];
			const uint8_t *p = buf + i * VBLK_SECTOR;

			if (sh == SH_UNKNOWN)
				continue;
			checked++;
			if (sh == SH_ZERO ? memcmp(p, zero, VBLK_SECTOR) != 0 :
			    vblk_pattern_check(p, VBLK_SECTOR, lba + i, sh, why,
					       sizeof(why)) >= 0) {
				printf("# FAIL: backing device sector %" PRIu64 " differs from what the guest saw completed%s%s\n",
				       lba + i, sh == SH_ZERO ? " (zeroes)" : ": ",
				       sh == SH_ZERO ? "" : why);
				bad++;
			}
		}
	}
	close(fd);
	free(buf);
	say("backing device: %" PRIu64 " sectors compared with the shadow, %d bad\n",
	    checked, bad);
	return bad ? -1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: vblk_stress --dev BLOCKDEV|FILE [--direct] [--seed N] "
		"[--seconds S] [--queues Q] [--no-detach] [--ro-toggle] [--verbose]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dev", 1, NULL, 'd' }, { "seed", 1, NULL, 's' },
		{ "seconds", 1, NULL, 't' }, { "queues", 1, NULL, 'q' },
		{ "no-detach", 0, NULL, 'n' }, { "verbose", 0, NULL, 'v' },
		{ "direct", 0, NULL, 'D' }, { "ro-toggle", 0, NULL, 'r' },
		{ NULL, 0, NULL, 0 }
	};
	static struct qctx qs[VHOST_BLK_MAX_VQS];
	unsigned long tot[K_NR] = { 0 }, ok = 0, ioerr = 0, unsupp = 0,
		      toggles = 0, spurious = 0, doubles = 0, verified = 0,
		      detaches = 0, epochs = 0, kicks = 0, calls = 0, flips = 0,
		      ro_rejected = 0, writes_ok = 0;
	uint64_t mrng, deadline, bytes;
	struct stat st;
	int c;

	while ((c = getopt_long(argc, argv, "d:s:t:q:nvDr", lo, NULL)) != -1) {
		switch (c) {
		case 'd': g_dev = optarg; break;
		case 's': g_seed = strtoull(optarg, NULL, 0); break;
		case 't': g_seconds = atoi(optarg); break;
		case 'q': g_queues = atoi(optarg); break;
		case 'n': g_detach = false; break;
		case 'v': g_verbose = true; break;
		case 'D': g_direct = true; break;
		case 'r': g_ro_toggle = true; break;
		default: usage();
		}
	}
	if (!g_dev || g_queues < 1 || g_queues > VHOST_BLK_MAX_VQS)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	g_bfd = open(g_dev, O_RDWR | (g_direct ? O_DIRECT : 0));
	if (g_bfd < 0 || fstat(g_bfd, &st)) {
		printf("STRESS FAIL: %s: %s\n", g_dev, strerror(errno));
		return 1;
	}
	bytes = st.st_size;
	if (!S_ISREG(st.st_mode) && ioctl(g_bfd, BLKGETSIZE64, &bytes)) {
		printf("STRESS FAIL: %s: %s\n", g_dev, strerror(errno));
		return 1;
	}
	g_capacity = bytes / VBLK_SECTOR;
	if (g_capacity / g_queues < 2 * SLOT_SECTORS) {
		printf("STRESS FAIL: %s too small\n", g_dev);
		return 1;
	}
	g_shadow = calloc(g_capacity, sizeof(*g_shadow));
	for (unsigned int i = 0; i < g_queues; i++) {
		struct qctx *q = &qs[i];

		q->idx = i;
		q->nsect = (g_capacity / g_queues) / SLOT_SECTORS * SLOT_SECTORS;
		q->base = (uint64_t)i * (g_capacity / g_queues);
		q->shadow = g_shadow + q->base;
		q->nslots = q->nsect / SLOT_SECTORS;
		q->slot_busy = calloc(q->nslots, sizeof(bool));
		for (unsigned int j = 0; j < MAX_DEPTH; j++)
			q->req[j].buf = vblk_aligned(MAX_IO_SECTORS * VBLK_SECTOR + 4096);
	}
	say("vblk_stress: seed %" PRIu64 ", %d s, %u queues, backend %s%s (%" PRIu64 " sectors), detach %s, read-only toggling %s\n",
	    g_seed, g_seconds, g_queues, g_dev, g_direct ? " O_DIRECT" : "",
	    g_capacity, g_detach ? "on" : "off", g_ro_toggle ? "on" : "off");

	mrng = g_seed;
	deadline = vblk_now_ms() + (uint64_t)g_seconds * 1000;
	while (!g_failed && vblk_now_ms() < deadline) {
		struct vblk_dev d;
		struct vblk_opts o = VBLK_OPTS_DEFAULT;
		static const unsigned int qsizes[] = { 16, 64, 128, 256 };
		pthread_t th[VHOST_BLK_MAX_VQS], rth;
		struct ro_toggler tog = { .d = &d, .rng = g_seed ^ epochs };
		uint64_t end;
		int err;

		o.mem_size = 192 << 20;
		o.nvqs = g_queues;
		o.qsize = qsizes[rn(&mrng, 4)];
		o.regions = 1 + rn(&mrng, 2);
		o.set_features = true;
		o.features = VBLK_DEFAULT_FEATURES;
		if (rn(&mrng, 2))
			o.features &= ~(1ULL << VIRTIO_RING_F_EVENT_IDX);
		if (rn(&mrng, 3) == 0)
			o.features &= ~(1ULL << VIRTIO_RING_F_INDIRECT_DESC);
		err = vblk_open(&d, &o);
		if (!err)
			err = vblk_set_serial(&d, serial, sizeof(serial));
		if (!err)
			err = vblk_set_backend(&d, g_bfd);
		if (err) {
			printf("# FAIL: epoch %lu: device setup: %s\n", epochs,
			       strerror(-err));
			g_failed = 1;
			vblk_close(&d);
			break;
		}
		say("epoch %lu: qsize %u, %d region(s), EVENT_IDX %s, INDIRECT %s\n",
		    epochs, o.qsize, o.regions,
		    d.acked & (1ULL << VIRTIO_RING_F_EVENT_IDX) ? "on" : "off",
		    d.acked & (1ULL << VIRTIO_RING_F_INDIRECT_DESC) ? "on" : "off");
		g_stop = 0;
		for (unsigned int i = 0; i < g_queues; i++) {
			struct qctx *q = &qs[i];

			q->d = &d;
			q->vq = &d.vq[i];
			q->rng = g_seed ^ (0x1000003ULL * (epochs + 1)) ^ ((uint64_t)i << 32);
			q->depth = 1 + rn(&mrng, MAX_DEPTH);
			if (q->depth > o.qsize / 4)
				q->depth = o.qsize / 4;
			q->busy = 0;
			vblk_vq_set_irq(q->vq, rn(&mrng, 4) != 0);
			pthread_create(&th[i], NULL, queue_thread, q);
		}
		if (g_ro_toggle)
			pthread_create(&rth, NULL, ro_thread, &tog);
		end = vblk_now_ms() + 2000 + rn(&mrng, 4000);
		if (end > deadline)
			end = deadline;
		while (!g_failed && vblk_now_ms() < end) {
			msleep(100 + rn(&mrng, 600));
			if (!g_detach || rn(&mrng, 2))
				continue;
			/* detach with I/O in flight, leave the queues without a
			 * backend for a moment, attach again */
			err = vblk_set_backend(&d, -1);
			if (!err) {
				msleep(rn(&mrng, 50));
				err = vblk_set_backend(&d, g_bfd);
			}
			if (err) {
				printf("# FAIL: detach/attach cycle: %s\n", strerror(-err));
				g_failed = 1;
			}
			detaches++;
		}
		g_stop = 1;
		for (unsigned int i = 0; i < g_queues; i++) {
			pthread_join(th[i], NULL);
			kicks += d.vq[i].kicks;
			calls += d.vq[i].calls;
		}
		if (g_ro_toggle) {
			pthread_join(rth, NULL);
			flips += tog.flips;
		}
		vblk_close(&d);
		epochs++;
	}

	for (unsigned int i = 0; i < g_queues; i++) {
		struct qctx *q = &qs[i];

		for (int k = 0; k < K_NR; k++)
			tot[k] += q->n[k];
		ok += q->st_ok;
		ioerr += q->st_ioerr;
		unsupp += q->st_unsupp;
		toggles += q->irq_toggles;
		spurious += q->spurious;
		doubles += q->doubles;
		verified += q->verified;
		ro_rejected += q->ro_rejected;
		writes_ok += q->writes_ok;
	}
	{
		unsigned long all = 0;

		for (int k = 0; k < K_NR; k++)
			all += tot[k];
		say("requests %lu: read %lu write %lu flush %lu get_id %lu discard %lu write_zeroes %lu badtype %lu out_of_range %lu badlen %lu\n",
		    all, tot[K_READ], tot[K_WRITE], tot[K_FLUSH], tot[K_GETID],
		    tot[K_DISCARD], tot[K_WZ], tot[K_BADTYPE], tot[K_OOR], tot[K_BADLEN]);
		say("statuses: OK %lu IOERR %lu UNSUPP %lu; sectors verified on read %lu\n",
		    ok, ioerr, unsupp, verified);
		say("epochs %lu, detach/attach cycles %lu, irq toggles %lu, spurious kicks %lu, double kicks %lu, kicks %lu\n",
		    epochs, detaches, toggles, spurious, doubles, kicks);
		if (getenv("VHOST_BLK_STRESS_STACK_TRACER_OFF")) {
			/* the runtime stack figure is about the stress I/O, not
			 * about the direct reads of the check below */
			FILE *f = fopen("/proc/sys/kernel/stack_tracer_enabled", "w");

			if (f) {
				fputs("0\n", f);
				fclose(f);
			}
		}
		if (g_ro_toggle) {
			say("read-only flips %lu, writes rejected %lu, writes done %lu\n",
			    flips, ro_rejected, writes_ok);
			if (!g_failed && (!ro_rejected || !writes_ok)) {
				printf("# FAIL: read-only toggling: %s\n", !ro_rejected ?
				       "no write ever hit read-only" :
				       "no write ever succeeded");
				g_failed = 1;
			}
		}
		if (!g_failed && verify_backend())
			g_failed = 1;
		if (!g_failed && ok + ioerr + unsupp != all) {
			printf("# FAIL: %lu requests submitted, %lu completed\n", all,
			       ok + ioerr + unsupp);
			g_failed = 1;
		}
		if (g_failed) {
			printf("STRESS FAIL seed=%" PRIu64 "\n", g_seed);
			return 1;
		}
		printf("STRESS OK seed=%" PRIu64 " requests=%lu epochs=%lu detaches=%lu\n",
		       g_seed, all, epochs, detaches);
	}
	(void)calls;
	(void)g_verbose;
	return 0;
}
