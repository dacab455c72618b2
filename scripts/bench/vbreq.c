// SPDX-License-Identifier: GPL-2.0
/*
 * vbreq: a fixed, repeatable request load on /dev/vhost-blk between two
 * markers of scripts/bench/vbcount.c, for counting what one request costs
 * (scripts/bench/trace-cost.sh: the vhost_blk trace events off, on and
 * compiled out).
 *
 *	vbreq --dev BLOCKDEV [--requests N]
 *
 * Sets up one queue (ring of 128, default features, the selftests' guest
 * driver selftests/vhost_blk/vblk_guest.c) on BLOCKDEV, runs a few
 * requests to warm up, executes the marker, then N requests one at a
 * time (queue depth 1: submit, kick, wait for the call eventfd),
 * alternating a 4 KiB write and a 4 KiB read of the same sectors, walking
 * the first 4 MiB of the device, executes the marker again and prints
 * "vbreq: N requests ok".  Every request must complete with status OK.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vblk_guest.h"

#define VBREQ_SPAN_SECTORS	((4u << 20) / VBLK_SECTOR)
#define VBREQ_BYTES		4096u
#define VBREQ_WARMUP		16u

static void mark(void)
{
	/* nopl 0x4b4d4256(%rax,%rax,1): vbcount snapshots its counts here */
	__asm__ volatile(".byte 0x0f, 0x1f, 0x84, 0x00, 'V', 'B', 'M', 'K'" ::: "memory");
}

/* Request i: a write (even i) or a read (odd i) of the 4 KiB at i / 2. */
static int one(struct vblk_vq *vq, unsigned int i, uint8_t *buf)
{
	uint64_t sector = (uint64_t)(i / 2) * (VBREQ_BYTES / VBLK_SECTOR) %
			  VBREQ_SPAN_SECTORS;
	struct vblk_req r;
	int err;

	vblk_req_init(&r, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, sector);
	if (i % 2) {
		r.in = buf;
		r.in_len = VBREQ_BYTES;
	} else {
		r.out = buf;
		r.out_len = VBREQ_BYTES;
	}
	err = vblk_do(vq, &r, 10000);
	if (!err && r.status != VIRTIO_BLK_S_OK)
		err = -EIO;
	if (err)
		fprintf(stderr, "vbreq: request %u (sector %" PRIu64 "): %s (status %u)\n",
			i, sector, strerror(-err), r.status);
	return err;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dev", 1, NULL, 'd' }, { "requests", 1, NULL, 'n' }, { 0 }
	};
	struct vblk_opts o = VBLK_OPTS_DEFAULT;
	const char *dev = NULL;
	unsigned int n = 2000, i;
	struct vblk_dev d;
	uint8_t *buf;
	int c, bfd, err;
	bool bad = false;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'd')
			dev = optarg;
		else if (c == 'n')
			n = strtoul(optarg, NULL, 0);
		else
			bad = true;
	}
	if (bad || !dev || !n || optind < argc) {
		fprintf(stderr, "usage: vbreq --dev BLOCKDEV [--requests N]\n");
		return 2;
	}
	bfd = open(dev, O_RDWR);
	if (bfd < 0) {
		fprintf(stderr, "vbreq: %s: %s\n", dev, strerror(errno));
		return 1;
	}
	buf = aligned_alloc(4096, VBREQ_BYTES);
	if (!buf)
		return 1;
	memset(buf, 0x5a, VBREQ_BYTES);
	err = vblk_open(&d, &o);
	if (!err)
		err = vblk_set_backend(&d, bfd);
	if (err) {
		fprintf(stderr, "vbreq: device setup: %s\n", strerror(-err));
		return 1;
	}
	for (i = 0; i < VBREQ_WARMUP && !err; i++)
		err = one(&d.vq[0], i, buf);
	mark();
	for (i = 0; i < n && !err; i++)
		err = one(&d.vq[0], i, buf);
	mark();
	vblk_close(&d);
	close(bfd);
	if (err)
		return 1;
	printf("vbreq: %u requests ok\n", n);
	return 0;
}
