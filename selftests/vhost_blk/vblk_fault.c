// SPDX-License-Identifier: GPL-2.0
/*
 * vblk_fault - drive /dev/vhost-blk against a faulty backend (dm-error,
 * dm-flakey, dm-delay) for tests/vm/35-faults.sh.
 *
 *   vblk_fault io DEV FIRST NSECT EXPECT [N]
 *	N (default 64) random 4 KiB reads and writes inside [FIRST,
 *	FIRST+NSECT) sectors on 4 queues; every one must complete, within a
 *	bounded wait, with EXPECT (ok | ioerr | any = OK or IOERR).
 *	Prints "ok=N ioerr=N unsupp=N".
 *   vblk_fault mixed DEV SECONDS
 *	batches of 8 random reads/writes for SECONDS on one device instance
 *	(dm-flakey alternating up/down): every request completes with OK or
 *	IOERR, both are seen, and OK is seen again after an IOERR (the device
 *	serves again once the fault clears).  Prints the counts.
 *   vblk_fault detach DEV N
 *	submit N writes (dm-delay keeps them in flight), wait 300 ms, then
 *	VHOST_BLK_SET_BACKEND(-1): the ioctl must not return before every
 *	request the device had taken is completed; then attach again and
 *	every request must complete OK.  Prints "detach_ms=... done_at_detach=...".
 *   vblk_fault close DEV N
 *	submit N writes, wait 300 ms, close the device with them in flight.
 *	Prints "close_ms=...".
 *   vblk_fault hold DEV N
 *	submit N writes, print "submitted", then sleep forever (the test kills
 *	it with SIGKILL while they are in flight).
 * Exit status 0 = all checks passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vblk_guest.h"

#define WAIT_MS 60000
#define NQ 4

static struct vblk_dev d;
static int bfd = -1;

static int setup(const char *dev)
{
	struct vblk_opts o = VBLK_OPTS_DEFAULT;
	int err;

	o.nvqs = NQ;
	o.mem_size = 64 << 20;
	bfd = open(dev, O_RDWR);
	if (bfd < 0) {
		printf("FAIL open %s: %s\n", dev, strerror(errno));
		return -1;
	}
	err = vblk_open(&d, &o);
	if (!err)
		err = vblk_set_backend(&d, bfd);
	if (err) {
		printf("FAIL device setup: %s\n", strerror(-err));
		return -1;
	}
	return 0;
}

static struct vblk_req *mkreqs(int n, uint64_t first, uint64_t nsect, bool writes_only)
{
	struct vblk_req *r = calloc(n, sizeof(*r));
	uint64_t s = 12345;

	for (int i = 0; i < n; i++) {
		void *buf = vblk_aligned(4096);
		uint64_t lba;
		bool wr;

		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		lba = first + ((s >> 33) % (nsect / 8)) * 8;
		wr = writes_only || ((s >> 20) & 1);
		vblk_req_init(&r[i], wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, lba);
		if (wr) {
			vblk_pattern_fill(buf, 4096, lba, 7);
			r[i].out = buf;
			r[i].out_len = 4096;
		} else {
			r[i].in = buf;
			r[i].in_len = 4096;
		}
		r[i].name = wr ? "fault-write" : "fault-read";
	}
	return r;
}

static int submit_all(struct vblk_req *r, int n)
{
	for (int i = 0; i < n; i++) {
		int err = vblk_submit(&d.vq[i % NQ], &r[i]);

		if (err) {
			printf("FAIL submit %d: %s\n", i, strerror(-err));
			return -1;
		}
	}
	for (int q = 0; q < NQ; q++)
		vblk_kick(&d.vq[q], true);
	return 0;
}

static int wait_all(void)
{
	for (int q = 0; q < NQ; q++) {
		int err = vblk_wait_all(&d.vq[q], WAIT_MS);

		if (err) {
			printf("FAIL vq %d: %s\n", q, err == -ETIMEDOUT ? "timeout" :
			       "lost notification");
			return -1;
		}
		if (d.vq[q].bad_used) {
			printf("FAIL vq %d: %lu bad used entries\n", q, d.vq[q].bad_used);
			return -1;
		}
	}
	return 0;
}

static int count(struct vblk_req *r, int n, int *ok, int *ioerr, int *other)
{
	*ok = *ioerr = *other = 0;
	for (int i = 0; i < n; i++) {
		if (!r[i].done)
			continue;
		if (r[i].status == VIRTIO_BLK_S_OK)
			(*ok)++;
		else if (r[i].status == VIRTIO_BLK_S_IOERR)
			(*ioerr)++;
		else
			(*other)++;
	}
	return *ok + *ioerr + *other;
}

static void msleep(int ms)
{
	usleep(ms * 1000);
}

int main(int argc, char **argv)
{
	int ok, ioerr, other, n, done;
	struct vblk_req *r;
	uint64_t t0;

	if (argc < 4)
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "io") && argc >= 6) {
		uint64_t first = strtoull(argv[3], NULL, 0);
		uint64_t nsect = strtoull(argv[4], NULL, 0);
		const char *expect = argv[5];

		n = argc > 6 ? atoi(argv[6]) : 64;
		if (setup(argv[2]))
			return 1;
		r = mkreqs(n, first, nsect, false);
		if (submit_all(r, n) || wait_all())
			return 1;
		done = count(r, n, &ok, &ioerr, &other);
		printf("ok=%d ioerr=%d other=%d done=%d/%d\n", ok, ioerr, other, done, n);
		if (done != n || other)
			return 1;
		if (!strcmp(expect, "ok"))
			return ok == n ? 0 : 1;
		if (!strcmp(expect, "ioerr"))
			return ioerr == n ? 0 : 1;
		return 0;
	}
	if (!strcmp(argv[1], "mixed")) {
		uint64_t end = vblk_now_ms() + 1000ULL * atoi(argv[3]);
		int tok = 0, tio = 0, tot = 0, recovered = 0, batches = 0;
		bool seen_err = false;

		if (setup(argv[2]))
			return 1;
		while (vblk_now_ms() < end) {
			r = mkreqs(8, 0, 65536, false);
			if (submit_all(r, 8) || wait_all())
				return 1;
			count(r, 8, &ok, &ioerr, &other);
			tok += ok;
			tio += ioerr;
			tot += other;
			if (ioerr)
				seen_err = true;
			if (seen_err && ok == 8 && !ioerr)
				recovered++;
			for (int i = 0; i < 8; i++)
				free(r[i].in ? r[i].in : (void *)r[i].out);
			free(r);
			batches++;
		}
		printf("batches=%d ok=%d ioerr=%d other=%d clean_batches_after_an_error=%d\n",
		       batches, tok, tio, tot, recovered);
		return tot == 0 && tok > 0 && tio > 0 && recovered > 0 ? 0 : 1;
	}
	n = atoi(argv[3]);
	if (setup(argv[2]))
		return 1;
	r = mkreqs(n, 0, 8192, true);
	if (submit_all(r, n))
		return 1;
	msleep(300);
	if (!strcmp(argv[1], "detach")) {
		int err, ok2, io2, ot2;

		t0 = vblk_now_ms();
		err = vblk_set_backend(&d, -1);
		for (int q = 0; q < NQ; q++)
			vblk_reap(&d.vq[q]);
		done = count(r, n, &ok, &ioerr, &other);
		printf("detach_ms=%" PRIu64 " done_at_detach=%d/%d (ok %d ioerr %d other %d) err=%d\n",
		       vblk_now_ms() - t0, done, n, ok, ioerr, other, err);
		if (err || other || ioerr)
			return 1;
		/* the rest (not yet taken by the device) is served after attach */
		err = vblk_set_backend(&d, bfd);
		for (int q = 0; q < NQ; q++)
			vblk_kick(&d.vq[q], true);
		if (err || wait_all())
			return 1;
		done = count(r, n, &ok2, &io2, &ot2);
		printf("after_attach ok=%d ioerr=%d other=%d done=%d/%d\n", ok2, io2, ot2, done, n);
		return ok2 == n && ok > 0 ? 0 : 1;
	}
	if (!strcmp(argv[1], "close")) {
		t0 = vblk_now_ms();
		close(d.fd);
		printf("close_ms=%" PRIu64 "\n", vblk_now_ms() - t0);
		return 0;
	}
	if (!strcmp(argv[1], "hold")) {
		printf("submitted %d\n", n);
		for (;;)
			pause();
	}
usage:
	fprintf(stderr, "usage: vblk_fault io DEV FIRST NSECT ok|ioerr|any [N] | mixed DEV SECONDS | detach|close|hold DEV N\n");
	return 2;
}
