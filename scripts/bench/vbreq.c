// SPDX-License-Identifier: GPL-2.0
/*
 * vbreq: a fixed, repeatable request load on /dev/vhost-blk between two
 * markers of scripts/bench/vbcount.c, for counting what one request costs
 * (scripts/bench/trace-cost.sh: the vhost_blk trace events off, on and
 * compiled out; scripts/bench/req-cost.sh: two builds of the module).
 *
 *	vbreq --dev BLOCKDEV [--requests N] [--qd Q] [--queues M]
 *
 * Sets up M queues (default 1; ring of 128, default features, the
 * selftests' guest driver selftests/vhost_blk/vblk_guest.c) on BLOCKDEV,
 * runs a few requests on each to warm up, executes the marker, then N
 * requests in all (N / M per queue, one thread per queue), executes the
 * marker again and prints "vbreq: N requests ok".  Request i of a queue is
 * a 4 KiB write (even i) or a 4 KiB read (odd i) of the 4 KiB at i / 2,
 * walking the first 4 MiB of the device.  Every request must complete with
 * status OK.
 *
 * Queue depth 1 (the default): submit, kick, wait for the call eventfd,
 * one request at a time.  Queue depth Q > 1: keep up to Q requests in the
 * ring; after each round of submissions kick only when the device asks for
 * it (EVENT_IDX), wait for any completion and reap all that are there.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vblk_guest.h"

#define VBREQ_SPAN_SECTORS	((4u << 20) / VBLK_SECTOR)
#define VBREQ_BYTES		4096u
#define VBREQ_WARMUP		16u
#define VBREQ_MAX_QD		64u
#define VBREQ_TIMEOUT_MS	10000

/* One queue's load: n requests, at most qd in flight. */
struct vbreq_queue {
	struct vblk_vq *vq;
	unsigned int n, qd;
	struct vblk_req r[VBREQ_MAX_QD];
	uint8_t *buf;			/* 4 KiB per slot */
	unsigned int done;		/* completed with status OK */
	int err;
	pthread_t thread;
};

static void mark(void)
{
	/* nopl 0x4b4d4256(%rax,%rax,1): vbcount snapshots its counts here */
	__asm__ volatile(".byte 0x0f, 0x1f, 0x84, 0x00, 'V', 'B', 'M', 'K'" ::: "memory");
}

/* Request i: a write (even i) or a read (odd i) of the 4 KiB at i / 2. */
static void prep(struct vblk_req *r, unsigned int i, uint8_t *buf)
{
	uint64_t sector = (uint64_t)(i / 2) * (VBREQ_BYTES / VBLK_SECTOR) %
			  VBREQ_SPAN_SECTORS;

	vblk_req_init(r, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, sector);
	if (i % 2) {
		r->in = buf;
		r->in_len = VBREQ_BYTES;
	} else {
		r->out = buf;
		r->out_len = VBREQ_BYTES;
	}
}

static void failed(const struct vblk_req *r, int err)
{
	fprintf(stderr, "vbreq: request at sector %" PRIu64 ": %s (status %u)\n",
		r->sector, strerror(-err), r->status);
}

/* Reaped (vblk_reap): count it, or record the failure. */
static void reaped(struct vblk_req *r)
{
	struct vbreq_queue *q = r->priv;

	if (r->status == VIRTIO_BLK_S_OK) {
		q->done++;
	} else if (!q->err) {
		q->err = -EIO;
		failed(r, -EIO);
	}
}

/* Queue depth 1: each request submitted, kicked and waited for alone. */
static int run_qd1(struct vbreq_queue *q, unsigned int n)
{
	unsigned int i;
	int err;

	for (i = 0; i < n; i++) {
		prep(&q->r[0], i, q->buf);
		err = vblk_do(q->vq, &q->r[0], VBREQ_TIMEOUT_MS);
		if (!err && q->r[0].status != VIRTIO_BLK_S_OK)
			err = -EIO;
		if (err) {
			failed(&q->r[0], err);
			return err;
		}
	}
	return 0;
}

static int run_batched(struct vbreq_queue *q, unsigned int n)
{
	unsigned int next = 0, s, target = q->done + n;
	int err;

	while (q->done < target && !q->err) {
		for (s = 0; s < q->qd && next < n; s++) {
			struct vblk_req *r = &q->r[s];

			if (r->inflight)
				continue;
			prep(r, next, q->buf + (size_t)s * VBREQ_BYTES);
			r->priv = q;
			r->complete = reaped;
			err = vblk_submit(q->vq, r);
			if (err) {
				failed(r, err);
				return err;
			}
			next++;
		}
		vblk_kick(q->vq, false);
		err = vblk_wait_any(q->vq, VBREQ_TIMEOUT_MS);
		if (err)
			return err;
	}
	return q->err;
}

static int run(struct vbreq_queue *q, unsigned int n)
{
	return q->qd == 1 ? run_qd1(q, n) : run_batched(q, n);
}

static void *queue_thread(void *arg)
{
	struct vbreq_queue *q = arg;

	q->err = run(q, q->n);
	return NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: vbreq --dev BLOCKDEV [--requests N] [--qd Q (1-%u)] [--queues M (1-%u, divides N)]\n",
		VBREQ_MAX_QD, VHOST_BLK_MAX_VQS);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dev", 1, NULL, 'd' }, { "requests", 1, NULL, 'n' },
		{ "qd", 1, NULL, 'q' }, { "queues", 1, NULL, 'm' }, { 0 }
	};
	static struct vbreq_queue qs[VHOST_BLK_MAX_VQS];
	struct vblk_opts o = VBLK_OPTS_DEFAULT;
	unsigned int n = 2000, qd = 1, nq = 1, i;
	const char *dev = NULL;
	struct vblk_dev d;
	int c, bfd, err;
	bool bad = false;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'd')
			dev = optarg;
		else if (c == 'n')
			n = strtoul(optarg, NULL, 0);
		else if (c == 'q')
			qd = strtoul(optarg, NULL, 0);
		else if (c == 'm')
			nq = strtoul(optarg, NULL, 0);
		else
			bad = true;
	}
	if (bad || !dev || !n || optind < argc || !qd || qd > VBREQ_MAX_QD ||
	    !nq || nq > VHOST_BLK_MAX_VQS || n % nq)
		return usage();
	bfd = open(dev, O_RDWR);
	if (bfd < 0) {
		fprintf(stderr, "vbreq: %s: %s\n", dev, strerror(errno));
		return 1;
	}
	o.nvqs = nq;
	err = vblk_open(&d, &o);
	if (!err)
		err = vblk_set_backend(&d, bfd);
	if (err) {
		fprintf(stderr, "vbreq: device setup: %s\n", strerror(-err));
		return 1;
	}
	for (i = 0; i < nq && !err; i++) {
		qs[i].vq = &d.vq[i];
		qs[i].n = n / nq;
		qs[i].qd = qd;
		qs[i].buf = aligned_alloc(4096, (size_t)qd * VBREQ_BYTES);
		if (!qs[i].buf)
			return 1;
		memset(qs[i].buf, 0x5a, (size_t)qd * VBREQ_BYTES);
		err = run(&qs[i], VBREQ_WARMUP);
	}
	mark();
	if (nq == 1) {
		err = run(&qs[0], n);
	} else {
		for (i = 0; i < nq; i++) {
			err = -pthread_create(&qs[i].thread, NULL, queue_thread,
					      &qs[i]);
			if (err) {
				fprintf(stderr, "vbreq: pthread_create: %s\n",
					strerror(-err));
				break;
			}
		}
		while (i--) {
			pthread_join(qs[i].thread, NULL);
			if (!err)
				err = qs[i].err;
		}
	}
	mark();
	vblk_close(&d);
	close(bfd);
	if (err)
		return 1;
	printf("vbreq: %u requests ok (queue depth %u, %u queue%s)\n", n, qd,
	       nq, nq == 1 ? "" : "s");
	return 0;
}
