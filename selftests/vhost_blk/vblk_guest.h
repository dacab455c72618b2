/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vblk_guest - a tiny userspace virtio-blk "guest driver" for /dev/vhost-blk.
 *
 * Used by the vhost-blk kselftests and by the stress / fuzz tools.  The
 * calling process plays both roles QEMU plays in real life: it owns the
 * vhost device (ioctls) and it is the guest (it writes the rings).
 *
 *   Guest memory  anonymous mmap, registered with VHOST_SET_MEM_TABLE at a
 *                 guest-physical base (default VBLK_GPA_BASE) that is NOT
 *                 its user address, optionally as two regions whose user
 *                 halves are swapped (so a buffer contiguous in guest-physical
 *                 space is split in user space).  Everything the device sees
 *                 is a guest-physical address ("gpa").  vblk_alloc() hands
 *                 out guest memory, vblk_h() translates gpa -> pointer.
 *   Rings         split rings (desc/avail/used) in guest memory; their user
 *                 addresses are given to VHOST_SET_VRING_ADDR.
 *   Eventfds      per queue: kick, call, err.
 *
 * Typical use:
 *
 *	struct vblk_dev d;
 *	struct vblk_opts o = VBLK_OPTS_DEFAULT;
 *	if (vblk_open(&d, &o))			   // open+owner+features+mem+rings
 *		fail;
 *	vblk_set_backend(&d, bdev_fd);
 *	struct vblk_req r;
 *	vblk_req_init(&r, VIRTIO_BLK_T_IN, 8);   // read at sector 8
 *	r.in = buf; r.in_len = 4096;
 *	if (vblk_do(&d.vq[0], &r, 5000))	   // submit, kick, bounded wait
 *		fail;				   // stuck request already printed
 *	r.status, r.used_len ...
 *	vblk_close(&d);
 *
 * Requests.  A request is two byte streams, independent of descriptors:
 *   readable  = hdr_len bytes of the 16-byte virtio-blk header (normally 16)
 *               followed by out_len bytes of "out" (OUT data, DISCARD /
 *               WRITE_ZEROES segments, ...);
 *   writable  = in_len bytes of "in" (IN / GET_ID data) followed by
 *               status_len bytes of status (normally 1).
 * A struct vblk_layout says how those streams are cut into descriptors
 * (any lengths, single bytes, status merged with data, header split 3+13),
 * where in guest memory the pieces go (misaligned, contiguous or
 * scattered), whether the chain is indirect, and whether writable pieces
 * come first (a ring-rule violation).  The library copies the readable
 * stream into guest memory at submit time and gathers the writable stream
 * back into r.in / r.status when the used entry is reaped.  A reaped
 * request that has a status byte but used.len 0, or a status other than
 * OK / IOERR / UNSUPP, counts in vq->bad_used.
 *
 * Completions.  A reaped request has done = 1, used_len = used.len,
 * status = last writable byte (filled with VBLK_STATUS_UNSET, 0xff, before
 * submit; writable data bytes with 0xa5, so bytes the device did not write
 * are visible).  Every wait is
 * bounded; a timeout prints the stuck requests (queue, head, type, sector,
 * name) to stderr and returns -ETIMEDOUT.  Interrupt-mode waits are strict:
 * if a used entry is visible but the call eventfd never fired although
 * notifications were enabled, the wait fails with -ENOTRECOVERABLE
 * ("lost notification").  Invalid used entries (unknown id, double
 * completion, used.len larger than the writable bytes) are counted in
 * vq->bad_used and printed.
 *
 * Threads: everything on a struct vblk_vq belongs to one thread at a time;
 * different queues may be driven by different threads (guest-memory
 * allocation is locked).  Device ioctls may come from any thread of the
 * owner process.
 */
#ifndef VBLK_GUEST_H
#define VBLK_GUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/vhost.h>
#include <linux/vhost_blk.h>

#define VBLK_GPA_BASE		0x100000000ULL	/* 4 GiB */
#define VBLK_DEV_PATH		"/dev/vhost-blk"
#define VBLK_STATUS_UNSET	0xff	/* status byte value before completion */
#define VBLK_SECTOR		512

/* Features acked by default (everything the device offers but F_RO and
 * LOG_ALL, which change behaviour and are acked explicitly by tests).
 */
#define VBLK_DEFAULT_FEATURES						\
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
	 (1ULL << VIRTIO_RING_F_EVENT_IDX) | (1ULL << VIRTIO_F_ANY_LAYOUT) |   \
	 (1ULL << VIRTIO_F_NOTIFY_ON_EMPTY) | (1ULL << VIRTIO_BLK_F_FLUSH) |   \
	 (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES) | \
	 (1ULL << VIRTIO_BLK_F_MQ))

/* Everything the device is documented to offer. */
#define VBLK_OFFERED_FEATURES						\
	(VBLK_DEFAULT_FEATURES | (1ULL << VHOST_F_LOG_ALL) |		\
	 (1ULL << VIRTIO_BLK_F_RO))

struct vblk_opts {
	size_t mem_size;	/* guest memory bytes (default 32 MiB) */
	uint64_t gpa_base;	/* guest-physical base (default VBLK_GPA_BASE) */
	int regions;		/* 1 or 2 (2 = halves swapped in user space) */
	unsigned int nvqs;	/* queues to set up (default 1, max 16) */
	unsigned int qsize;	/* ring size, power of 2 (default 128) */
	bool set_features;	/* ack .features instead of the default set */
	uint64_t features;
	bool no_start;		/* vblk_open: stop after vblk_dev_init() */
};

#define VBLK_OPTS_DEFAULT { .mem_size = 32 << 20, .nvqs = 1, .qsize = 128 }

struct vblk_req;
struct vblk_dev;

struct vblk_vq {
	struct vblk_dev *dev;
	unsigned int idx, num;
	struct vring_desc *desc;	/* user pointers into guest memory */
	struct vring_avail *avail;
	struct vring_used *used;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	int kick_fd, call_fd, err_fd;
	bool event_idx;			/* VIRTIO_RING_F_EVENT_IDX acked */
	bool irq_enabled;		/* see vblk_vq_set_irq() */
	bool kick_always;		/* ignore the device's kick suppression */
	uint16_t avail_idx;		/* next avail->idx to publish */
	uint16_t kicked_idx;		/* avail idx at the last kick decision */
	uint16_t last_used;		/* next used entry to reap */
	/* descriptor bookkeeping (shadow, the device cannot corrupt it) */
	uint16_t *free_stack;
	unsigned int nfree;
	uint16_t *shadow_next;		/* next of each allocated descriptor */
	uint16_t *chain_len;		/* per head: descriptors in the chain */
	struct vblk_req **inflight;	/* per head */
	unsigned int ninflight;
	/* statistics */
	unsigned long submitted, completed, kicks, calls, bad_used;
};

struct vblk_dev {
	int fd;
	struct vblk_opts o;
	uint8_t *mem;			/* user address of guest memory */
	uint64_t features;		/* offered by the device (GET_FEATURES) */
	uint64_t acked;			/* acked (SET_FEATURES) */
	uint8_t *bitmap;		/* allocator, 64-byte units */
	size_t units, cursor;
	pthread_mutex_t alloc_lock;
	struct vblk_vq vq[VHOST_BLK_MAX_VQS];
};

/* ---- layout of one request -------------------------------------------- */

#define VBLK_MAX_CUTS	256

enum {
	VBLK_L_INDIRECT = 1 << 0, /* chain in an indirect table */
	VBLK_L_CONTIG   = 1 << 1, /* all pieces back to back in memory */
	VBLK_L_WR_FIRST = 1 << 2, /* writable descriptors first (violation) */
	VBLK_L_BYTES    = 1 << 3, /* every byte its own descriptor */
};

/*
 * A NULL layout is the classic one: header | out | in | status, each in its
 * own descriptor (zero-length parts left out), each piece page aligned.
 * With a layout: rd[0..nrd-1] / wr[0..nwr-1] are the lengths of the first
 * descriptors of the readable / writable stream (0 is allowed and makes a
 * zero-length descriptor); whatever is left of the stream after them goes
 * into one more descriptor (none if nothing is left).  So nrd = nwr = 0
 * puts each stream in one descriptor (status merged with data), rd = {3}
 * splits the header 3 + 13-plus-out.  Cuts are truncated at the end of the
 * stream (a cut longer than what is left takes the rest, later cuts are
 * dropped), so one layout serves reads and writes of any size.
 * VBLK_L_BYTES overrides the cuts: one descriptor per byte.
 * offset: byte offset of every piece from a 4 KiB boundary (with
 * VBLK_L_CONTIG: of the first piece only); pieces crossing page boundaries
 * are fine.  gap: bytes left between contiguous pieces (VBLK_L_CONTIG).
 */
struct vblk_layout {
	unsigned int flags;
	int nrd, nwr;
	uint32_t rd[VBLK_MAX_CUTS];
	uint32_t wr[VBLK_MAX_CUTS];
	uint32_t offset;
	uint32_t gap;
};

/*
 * Named layouts, each a way a driver may cut a request that the device
 * must accept: split header, one byte per header descriptor, status
 * merged with data, odd and zero-length cuts, misaligned and
 * page-crossing pieces, contiguous pieces with gaps.  The kselftests run
 * each once; vblk_stress picks among them at random.
 */
struct vblk_named_layout {
	const char *name;
	struct vblk_layout l;
};

extern const struct vblk_named_layout vblk_layouts[];
extern const unsigned int vblk_nlayouts;

struct vblk_seg {			/* one descriptor as built */
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct vblk_req {
	/* ---- set by the caller (vblk_req_init() fills defaults) ---- */
	uint32_t type;
	uint32_t ioprio;		/* header "reserved" field */
	uint64_t sector;
	unsigned int hdr_len;		/* readable header bytes, default 16 */
	const void *out;		/* readable payload after the header */
	size_t out_len;
	void *in;			/* writable payload before the status */
	size_t in_len;
	unsigned int status_len;	/* default 1; 0 = no status byte */
	const struct vblk_layout *layout; /* NULL = classic */
	const char *name;		/* printed when stuck; may be NULL */
	void (*complete)(struct vblk_req *r); /* called when reaped */
	void *priv;			/* for the caller */
	uint64_t priv2;			/* for the caller */
	/* ---- results ---- */
	bool done;
	uint32_t used_len;
	uint8_t status;
	/* ---- library private ---- */
	struct vblk_vq *vq;
	uint16_t head;
	bool inflight;
	struct vblk_seg *segs;
	unsigned int nsegs;
	uint64_t *allocs;		/* gpa of each allocation made */
	size_t *alloc_lens;
	unsigned int nallocs;
	uint64_t itable_gpa;		/* indirect table, 0 if none */
	bool raw;
};

/* ---- device ------------------------------------------------------------ */

/* Open /dev/vhost-blk, mmap guest memory, carve rings: no ioctls yet.
 * Returns 0 or -errno (printed).
 */
int vblk_dev_init(struct vblk_dev *d, const struct vblk_opts *o);
/* SET_OWNER, GET/SET_FEATURES, SET_MEM_TABLE, then vblk_vq_setup() for
 * vq 0..nvqs-1.  Returns 0 or -errno of the first failing ioctl.
 */
int vblk_dev_start(struct vblk_dev *d);
/* vblk_dev_init() + (unless o->no_start) vblk_dev_start(). */
int vblk_open(struct vblk_dev *d, const struct vblk_opts *o);
/* Close the fd, unmap memory, free everything (safe on partial init). */
void vblk_close(struct vblk_dev *d);
/* VHOST_SET_MEM_TABLE with the layout from the options. */
int vblk_set_mem_table(struct vblk_dev *d);
/* SET_VRING_NUM/BASE(0)/ADDR/KICK/CALL/ERR for one queue; resets the
 * queue's shadow state (all in-flight requests are forgotten).
 */
int vblk_vq_setup(struct vblk_dev *d, unsigned int idx);

/* Device-specific ioctls; 0 or -errno. */
int vblk_set_backend(struct vblk_dev *d, int fd);
int vblk_set_serial(struct vblk_dev *d, const void *id, size_t len);
int vblk_set_readonly(struct vblk_dev *d, int ro);
/* ioctl() wrapper: 0 or -errno. */
int vblk_ioctl(struct vblk_dev *d, unsigned long cmd, void *arg);

/* ---- guest memory -------------------------------------------------------- */

/* Allocate len bytes of guest memory at gpa % 4096 == off (off < 4096).
 * Returns the gpa or 0 if out of memory.  Never crosses a region edge.
 */
uint64_t vblk_alloc(struct vblk_dev *d, size_t len, uint32_t off);
/* Reserve exactly [gpa, gpa+len) (may cross the region edge): 0 or -EBUSY. */
int vblk_alloc_at(struct vblk_dev *d, uint64_t gpa, size_t len);
void vblk_free(struct vblk_dev *d, uint64_t gpa, size_t len);
/* gpa -> user pointer (NULL if outside guest memory).  Valid for bytes up
 * to the end of the containing region only.
 */
void *vblk_h(struct vblk_dev *d, uint64_t gpa);
/* Copy to/from guest memory, crossing regions; -EFAULT if outside. */
int vblk_write_guest(struct vblk_dev *d, uint64_t gpa, const void *src, size_t len);
int vblk_read_guest(struct vblk_dev *d, uint64_t gpa, void *dst, size_t len);

/* ---- requests ---------------------------------------------------------- */

void vblk_req_init(struct vblk_req *r, uint32_t type, uint64_t sector);
/* Build the chain and place it in the avail ring (avail->idx published),
 * no kick.  0, -ENOSPC (no descriptors / memory), -EINVAL (bad layout).
 */
int vblk_submit(struct vblk_vq *vq, struct vblk_req *r);
/* Kick if the device asked for it (or always with kick_always / force).
 * Returns 1 if kicked.
 */
int vblk_kick(struct vblk_vq *vq, bool force);
/* Reap all used entries now; returns the number reaped. */
int vblk_reap(struct vblk_vq *vq);
/* Wait until r is done: 0, -ETIMEDOUT, -ENOTRECOVERABLE (lost call). */
int vblk_wait_req(struct vblk_vq *vq, struct vblk_req *r, int timeout_ms);
/* Wait until nothing is in flight on vq. */
int vblk_wait_all(struct vblk_vq *vq, int timeout_ms);
/* Wait for at least one completion (any request). */
int vblk_wait_any(struct vblk_vq *vq, int timeout_ms);
/* submit + kick(force) + wait_req. */
int vblk_do(struct vblk_vq *vq, struct vblk_req *r, int timeout_ms);
/* Release a request that will never complete: frees its descriptors and
 * guest memory.  Only once the device can no longer write there (queue
 * re-set-up, RESET_OWNER, close).
 */
void vblk_req_abandon(struct vblk_vq *vq, struct vblk_req *r);
/* Print in-flight requests of vq to f ("# "-prefixed lines). */
void vblk_dump_inflight(struct vblk_vq *vq, FILE *f);

/* Enable / disable used-buffer notifications (VRING_AVAIL_F_NO_INTERRUPT,
 * or used_event with EVENT_IDX).  Waits poll the used ring when disabled.
 */
void vblk_vq_set_irq(struct vblk_vq *vq, bool enable);

/* ---- raw descriptor access (ring-rule violation tests, fuzzers) -------- */

/* Take n free descriptor indices (not chained); -ENOSPC if not enough. */
int vblk_desc_get(struct vblk_vq *vq, unsigned int n, uint16_t *idx);
/* Write descriptor i exactly as given. */
void vblk_desc_set(struct vblk_vq *vq, uint16_t i, uint64_t addr, uint32_t len,
		   uint16_t flags, uint16_t next);
/* Publish head in the avail ring as request r (r->raw = true; no data is
 * gathered on completion).  chain: the descriptors to free on completion
 * (copied).  Returns 0.
 */
int vblk_submit_raw(struct vblk_vq *vq, struct vblk_req *r, uint16_t head,
		    const uint16_t *chain, unsigned int n);

/* ---- eventfds ---------------------------------------------------------- */

/* Read the error eventfd: its counter (0 if not signalled); waits up to
 * timeout_ms (0 = don't wait).
 */
uint64_t vblk_err_count(struct vblk_vq *vq, int timeout_ms);
/* Same for the call eventfd (consumes it). */
uint64_t vblk_call_count(struct vblk_vq *vq, int timeout_ms);

/* ---- data patterns ------------------------------------------------------ */

/* Stamp each 512-byte sector: lba, seed, then bytes derived from both. */
void vblk_pattern_fill(void *buf, size_t len, uint64_t lba, uint64_t seed);
/* Check a buffer filled by vblk_pattern_fill(lba, seed).  Returns -1 if
 * all good, else the index of the first bad sector and a description of
 * what was found in why (e.g. "sector 3: has lba 7 seed 2, torn at 100").
 */
long vblk_pattern_check(const void *buf, size_t len, uint64_t lba, uint64_t seed,
			char *why, size_t whylen);

/* ---- misc ---------------------------------------------------------------- */

/* Monotonic milliseconds. */
uint64_t vblk_now_ms(void);
/* Aligned (4096) malloc for O_DIRECT, zeroed; free with free(). */
void *vblk_aligned(size_t len);

#endif /* VBLK_GUEST_H */
