// SPDX-License-Identifier: GPL-2.0
/*
 * vhost-blk: an in-kernel virtio-blk data plane.
 *
 * Each open of /dev/vhost-blk is one virtio-blk device.  The vhost worker
 * pops requests from the guest's split rings, turns them into bios on the
 * attached block device and submits them.  Bio completion only records the
 * result and hands the request back to the worker, which writes the status
 * byte, fills the used ring and signals the guest.
 *
 * Contexts, see Documentation/vhost-blk.rst ("Design"):
 *  - eventfd wake-up (vCPU exit path): vhost core only, queues handle_kick.
 *  - vhost worker: everything that touches guest memory or the rings.
 *  - bio end_io (irq/softirq): vhost_blk_bio_end_io(), records and queues.
 *
 * The barrier comments name the steps of the Promela model in
 * tests/model/vhost_blk.pml: K kick, E bio end_io, Q and W work queueing,
 * C completion; Documentation/robustness.rst has the step table.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/llist.h>
#include <linux/memcontrol.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uio.h>
#include <linux/vhost.h>
#include <linux/virtio_blk.h>
#include <linux/workqueue.h>
#include <linux/vhost_blk.h>

#include "vhost.h"
#include "blk_compat.h"

#define CREATE_TRACE_POINTS
#include "blk_trace.h"

#define VHOST_BLK_FEATURES (VHOST_FEATURES |				\
			    BIT_ULL(VIRTIO_BLK_F_FLUSH) |		\
			    BIT_ULL(VIRTIO_BLK_F_DISCARD) |		\
			    BIT_ULL(VIRTIO_BLK_F_WRITE_ZEROES) |	\
			    BIT_ULL(VIRTIO_BLK_F_RO) |			\
			    BIT_ULL(VIRTIO_BLK_F_MQ))

/* Iovecs per chain; also the size of vq->heads, the used-entry batch. */
#define VHOST_BLK_IOV_LIMIT	UIO_MAXIOV
/* Requests and bytes one kick (or one completion run) may take. */
#define VHOST_BLK_WEIGHT	256
#define VHOST_BLK_BYTE_WEIGHT	(16U << 20)
/* Dirty-log entries kept in the request itself; more are allocated. */
#define VHOST_BLK_INLINE_LOG	4
/* Pages of the bio kept in the request itself (a 4 KiB I/O needs 1-2). */
#define VHOST_BLK_INLINE_VECS	4
/* Wait before retrying a request that could not get memory. */
#define VHOST_BLK_RETRY_JIFFIES	(HZ / 50)
/*
 * Memory of one request: charged to the owner's memory cgroup, and it may
 * fail rather than invoke the OOM killer or warn, because the request is
 * then simply retried (see vhost_blk_handle_kick()).
 */
#define VHOST_BLK_REQ_GFP	(GFP_KERNEL_ACCOUNT | __GFP_NORETRY | __GFP_NOWARN)

#define VHOST_BLK_HDR_BYTES	sizeof(struct virtio_blk_outhdr)
#define VHOST_BLK_SEG_BYTES	sizeof(struct virtio_blk_discard_write_zeroes)

/* Numbers the opens of /dev/vhost-blk for trace events. */
static atomic_t vhost_blk_ids = ATOMIC_INIT(0);

static unsigned int bounce_limit_kb = 16384;
module_param(bounce_limit_kb, uint, 0644);
MODULE_PARM_DESC(bounce_limit_kb,
		 "Bounce-buffer memory per device in KiB (at least 4096; default 16384)");

/*
 * A block device, or a regular file.  For a file, bdev is NULL and
 * align_bdev the block device of its filesystem (NULL if it has none);
 * the capacity is the file size at attach, rounded down to lbs.
 */
struct vhost_blk_backend {
	struct file *file;
	struct block_device *bdev;
	struct block_device *align_bdev;
	u64 nr_sectors;
	unsigned int lbs;
	bool ro;
	/* A file opened with O_DIRECT. */
	bool direct;
};

/* Runs file-backend work that may block: buffered I/O, fsync, fallocate. */
static struct workqueue_struct *vhost_blk_wq;

/* <debugfs>/vhost-blk/<id>/stats, one directory per open device. */
static struct dentry *vhost_blk_debugfs;

/* Request types counted apart, in the order of enum vhost_blk_stat. */
static const u32 vhost_blk_stat_type[] = {
	VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
	VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES,
};

/* Counters of a queue, only changed by its worker under vq.mutex. */
enum vhost_blk_stat {
	VHOST_BLK_STAT_IN, VHOST_BLK_STAT_OUT, VHOST_BLK_STAT_FLUSH,
	VHOST_BLK_STAT_GET_ID, VHOST_BLK_STAT_DISCARD,
	VHOST_BLK_STAT_WRITE_ZEROES, VHOST_BLK_STAT_OTHER,
	VHOST_BLK_STAT_READ_BYTES, VHOST_BLK_STAT_WRITE_BYTES,
	VHOST_BLK_STAT_BOUNCED_BYTES,
	VHOST_BLK_STAT_IOERR, VHOST_BLK_STAT_UNSUPP,
	/* Kick handler stopped: a ring's worth of requests in flight. */
	VHOST_BLK_STAT_RING_FULL,
	/* Chains given back: over the bounce budget, or out of memory. */
	VHOST_BLK_STAT_BOUNCE_WAITS, VHOST_BLK_STAT_NOMEM_RETRIES,
	/* Completion runs, those stopped by the weight, the largest one. */
	VHOST_BLK_STAT_COMPLETION_RUNS, VHOST_BLK_STAT_COMPLETION_DEFERRED,
	VHOST_BLK_STAT_COMPLETION_MAX,
	VHOST_BLK_NR_STATS
};

static const char *const vhost_blk_stat_name[VHOST_BLK_NR_STATS] = {
	"requests_in", "requests_out", "requests_flush", "requests_get_id",
	"requests_discard", "requests_write_zeroes", "requests_other",
	"read_bytes", "write_bytes", "bounced_bytes",
	"errors_ioerr", "errors_unsupp",
	"waits_ring_full", "waits_bounce", "retries_nomem",
	"completion_runs", "completion_deferred", "completion_max_batch",
};

struct vhost_blk;
struct vhost_blk_req;

struct vhost_blk_vq {
	struct vhost_virtqueue vq;
	struct vhost_blk *blk;
	/* Requests whose bios have all ended, waiting for the worker. */
	struct llist_head done;
	/* Taken off @done but not returned yet (completion weight). */
	struct llist_node *completing;
	struct vhost_work complete_work;
	/*
	 * One request per ring entry, allocated at attach: at most vq->num
	 * requests are in flight.  The free ones are a stack (linked by
	 * next_free), used under vq.mutex.
	 */
	struct vhost_blk_req *reqs;
	struct vhost_blk_req *free_reqs;
	/* The kick handler stopped because no request was free. */
	bool starved;
	/* Retries a request that could not get memory. */
	struct timer_list retry;
	/*
	 * Requests started whose bios have not all ended, plus one, the
	 * queue's own count, which only vhost_blk_drain() drops: so a
	 * completion takes @lock only to drop the count to zero, for the
	 * drain (vhost_blk_inflight_put()).
	 */
	atomic_t inflight;
	/* Held to drop inflight to zero and to read it for the drain. */
	spinlock_t lock;
	u64 stats[VHOST_BLK_NR_STATS];
};

struct vhost_blk {
	struct vhost_dev dev;
	/* Names the device in trace events, fdinfo and debugfs. */
	u32 id;
	/* Process that opened the device, shown in debugfs. */
	pid_t tgid;
	struct dentry *debugfs;
	/*
	 * The owner's memory cgroup, taken at attach: the worker and
	 * vhost_blk_wq charge the memory of requests to it.
	 */
	struct mem_cgroup *memcg;
	/* Attached backend; changed under dev.mutex and every vq mutex. */
	struct vhost_blk_backend *backend;
	/* Protects serial. */
	spinlock_t lock;
	wait_queue_head_t idle_wait;
	u8 serial[VHOST_BLK_SERIAL_BYTES];
	bool readonly;
	/* Bounce memory held by requests, and the queues waiting for some. */
	spinlock_t bounce_lock;
	size_t bounce_bytes;
	unsigned long bounce_waiters;
	struct vhost_blk_vq vqs[VHOST_BLK_MAX_VQS];
};

struct vhost_blk_req {
	/* The next request of bvq->free_reqs while unused. */
	struct vhost_blk_req *next_free;
	struct llist_node node;
	struct vhost_blk_vq *bvq;
	u16 head;
	/* VIRTIO_BLK_S_*; bios may lower it to an error until published. */
	u8 status;
	bool zero_copy;
	/* Bios still in flight, plus one while submission is running. */
	atomic_t pending;
	/* used.len reported to the guest when the request succeeds. */
	u32 len;
	/* VIRTIO_BLK_T_* and sector of the header, for trace events. */
	u32 type;
	u64 sector;
	/* ktime_get_ns() at start, only while vhost_blk_req_done is traced. */
	u64 start_ns;
	/* All device-writable bytes: the length of the dirty log entries. */
	u64 in_len;
	u8 __user *status_ptr;
	/*
	 * Ended bios holding pinned guest pages; the worker releases them
	 * (dirtying the pages of reads, which may sleep).
	 */
	spinlock_t lock;
	struct bio_list bios;
	/* Bounce buffer, when guest buffers are not aligned for the device. */
	struct page **pages;
	unsigned int nr_pages;
	u32 data_len;
	/* Bytes of bounce memory charged to the device. */
	size_t bounce;
	/* Guest buffers of a bounced read, copied back on completion. */
	struct iovec *iov;
	unsigned int iov_cnt;
	/* File backends: the I/O, bounce pages as bio_vecs, blocking work. */
	struct kiocb iocb;
	struct bio_vec *bvec;
	struct vhost_blk_backend *be;
	struct virtio_blk_discard_write_zeroes *segs;
	unsigned int nr_segs;
	struct work_struct work;
	/*
	 * The device-writable guest ranges (guest-physical), kept for every
	 * request so it can be logged at completion whenever logging is on
	 * by then; points to inline_log or to an allocation.
	 */
	struct vhost_log *log;
	unsigned int log_num;
	struct vhost_log inline_log[VHOST_BLK_INLINE_LOG];
	/*
	 * The first bio of a zero-copy request whose pages fit in
	 * inline_vecs: bio_init() instead of an allocation from fs_bio_set,
	 * bio_uninit() instead of bio_put() (vhost_blk_bio_free()).  Last:
	 * struct bio ends with a flexible array.
	 */
	struct bio_vec inline_vecs[VHOST_BLK_INLINE_VECS];
	struct bio bio;
};

static size_t vhost_blk_bounce_limit(void)
{
	return max_t(size_t, (size_t)READ_ONCE(bounce_limit_kb) << 10,
		     VHOST_BLK_MAX_DATA_BYTES);
}

/*
 * Charge @bytes of bounce memory to the device.  Over the limit, the queue
 * is recorded as waiting and kicked again when bounce memory is released.
 */
static bool vhost_blk_bounce_get(struct vhost_blk_vq *bvq, size_t bytes)
{
	struct vhost_blk *blk = bvq->blk;
	bool ok;

	spin_lock(&blk->bounce_lock);
	ok = blk->bounce_bytes + bytes <= vhost_blk_bounce_limit();
	if (ok)
		blk->bounce_bytes += bytes;
	else
		__set_bit(bvq - blk->vqs, &blk->bounce_waiters);
	spin_unlock(&blk->bounce_lock);
	return ok;
}

static void vhost_blk_bounce_put(struct vhost_blk *blk, size_t bytes)
{
	unsigned long waiters;
	unsigned int i;

	spin_lock(&blk->bounce_lock);
	blk->bounce_bytes -= bytes;
	waiters = blk->bounce_waiters;
	blk->bounce_waiters = 0;
	spin_unlock(&blk->bounce_lock);

	for_each_set_bit(i, &waiters, VHOST_BLK_MAX_VQS)
		vhost_poll_queue(&blk->vqs[i].vq.poll);
}

/* A bio of the request is no longer needed: the embedded one is reused. */
static void vhost_blk_bio_free(struct vhost_blk_req *req, struct bio *bio)
{
	if (bio == &req->bio)
		bio_uninit(bio);
	else
		bio_put(bio);
}

/* Put an unused request back in its queue's pool (vq.mutex held). */
static void vhost_blk_req_free(struct vhost_blk_req *req)
{
	req->next_free = req->bvq->free_reqs;
	req->bvq->free_reqs = req;
}

/* Release what a request holds and put it back in its queue's pool. */
static void vhost_blk_req_release(struct vhost_blk_req *req)
{
	struct vhost_blk_vq *bvq = req->bvq;
	struct bio *bio;
	unsigned int i;

	while ((bio = bio_list_pop(&req->bios))) {
		bio_release_pages(bio, !op_is_write(bio_op(bio)));
		vhost_blk_bio_free(req, bio);
	}

	for (i = 0; i < req->nr_pages; i++)
		__free_page(req->pages[i]);
	kvfree(req->pages);
	kvfree(req->bvec);
	kfree(req->segs);
	kfree(req->iov);
	if (req->log != req->inline_log)
		kfree(req->log);
	if (req->bounce)
		vhost_blk_bounce_put(bvq->blk, req->bounce);
	vhost_blk_req_free(req);
}

/*
 * A request, or the queue's own count, is no longer in flight (any
 * context).  A drop that leaves the count above zero is one atomic and
 * touches the device no more.  Only the drop to zero (once the drain has
 * dropped the queue's own count) takes bvq->lock, and wakes the drain
 * under it: vhost_blk_vq_idle() reads the count under the same lock, so
 * once it sees zero this function no longer touches the device.
 */
static void vhost_blk_inflight_put(struct vhost_blk_vq *bvq)
{
	unsigned long flags;

	if (atomic_add_unless(&bvq->inflight, -1, 1))
		return;
	spin_lock_irqsave(&bvq->lock, flags);
	if (atomic_dec_and_test(&bvq->inflight))
		wake_up(&bvq->blk->idle_wait);
	spin_unlock_irqrestore(&bvq->lock, flags);
}

/*
 * The last bio of a request has ended (any context, usually irq), or the
 * worker dropped the last reference of a request it just submitted.
 * Publish the request to the worker and account it as no longer in flight.
 * @wake is false only on the worker inside the kick handler, which returns
 * every published request itself (see vhost_blk_handle_req()).
 */
static void vhost_blk_req_done(struct vhost_blk_req *req, bool wake)
{
	struct vhost_blk_vq *bvq = req->bvq;

	/*
	 * E4: llist_add() is a full barrier (cmpxchg): req->status, written
	 * by every bio of the request before its atomic_dec_and_test() (E2),
	 * is visible before the request is.  Pairs with llist_del_all() in
	 * vhost_blk_complete() (C1).
	 *
	 * E5/Q1: queueing the work does test_and_set_bit(VHOST_WORK_QUEUED),
	 * fully ordered after the llist_add.  The worker clears the bit (W2)
	 * before running the work, whose first step is the fully ordered
	 * llist_del_all() (C1): either that xchg sees this request or this
	 * test_and_set_bit sees the cleared bit and queues the work again.
	 * If queueing fails (owner killed), teardown releases the request.
	 */
	llist_add(&req->node, &bvq->done);
	if (wake)
		vhost_blk_queue_work(&bvq->vq, &bvq->complete_work);
	vhost_blk_inflight_put(bvq);
}

static void vhost_blk_req_put(struct vhost_blk_req *req)
{
	/*
	 * E2: fully ordered, so the status stores of every other bio happen
	 * before the last put, which then publishes the request (E4).
	 */
	if (atomic_dec_and_test(&req->pending))
		vhost_blk_req_done(req, true);
}

/* Bio completion, usually in irq context: record, hand over, nothing more. */
static void vhost_blk_bio_end_io(struct bio *bio)
{
	struct vhost_blk_req *req = bio->bi_private;
	unsigned long flags;

	if (unlikely(bio->bi_status))
		WRITE_ONCE(req->status, bio->bi_status == BLK_STS_NOTSUPP ?
			   VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);

	if (req->zero_copy) {
		spin_lock_irqsave(&req->lock, flags);
		bio_list_add(&req->bios, bio);
		spin_unlock_irqrestore(&req->lock, flags);
	} else {
		bio_put(bio);
	}

	vhost_blk_req_put(req);
}

static void vhost_blk_submit(struct vhost_blk_req *req, struct bio *bio)
{
	bio->bi_private = req;
	bio->bi_end_io = vhost_blk_bio_end_io;
	atomic_inc(&req->pending);
	submit_bio(bio);
}

/*
 * Read-only does not depend on what the guest acked: the backend
 * descriptor, the block device and SET_READONLY decide it too.
 */
static bool vhost_blk_is_ro(struct vhost_blk_vq *bvq,
			    struct vhost_blk_backend *be)
{
	return be->ro || READ_ONCE(bvq->blk->readonly) ||
	       (be->bdev && bdev_read_only(be->bdev)) ||
	       vhost_has_feature(&bvq->vq, VIRTIO_BLK_F_RO);
}

/* A sector range the backend can serve, aligned to its logical blocks. */
static bool vhost_blk_range_ok(struct vhost_blk_backend *be, u64 sector,
			       u64 nr_sects)
{
	u64 capacity = be->bdev ? bdev_nr_sectors(be->bdev) : be->nr_sectors;
	u64 mask = (be->lbs >> SECTOR_SHIFT) - 1;

	return sector <= capacity && nr_sects <= capacity - sector &&
	       !((sector | nr_sects) & mask);
}

/* Guest buffers can be handed to the backend as they are (zero copy). */
static bool vhost_blk_iter_aligned(struct vhost_blk_backend *be,
				   struct iov_iter *iter)
{
	if (be->bdev)
		return bdev_iter_is_aligned(be->bdev, iter);
	return be->direct && be->align_bdev &&
	       bdev_iter_is_aligned(be->align_bdev, iter);
}

/* Zero-copy: pin the guest pages and point the bios at them. */
static int vhost_blk_map_iter(struct vhost_blk_req *req, struct block_device *bdev,
			      blk_opf_t opf, sector_t sector, struct iov_iter *iter)
{
	struct bio *bio = NULL;
	int nr, ret;

	req->zero_copy = true;
	while (iov_iter_count(iter)) {
		nr = bio_iov_vecs_to_alloc(iter, BIO_MAX_VECS);
		if (!bio && nr <= ARRAY_SIZE(req->inline_vecs)) {
			/* Free: the request's last bio_uninit() was its release. */
			bio = &req->bio;
			bio_init(bio, bdev, req->inline_vecs,
				 ARRAY_SIZE(req->inline_vecs), opf);
		} else {
			bio = bio_alloc(bdev, nr, opf, GFP_KERNEL);
		}
		bio->bi_iter.bi_sector = sector;
		ret = bio_iov_iter_get_pages(bio, iter);
		if (unlikely(ret)) {
			vhost_blk_bio_free(req, bio);
			return ret;
		}
		sector += bio_sectors(bio);
		vhost_blk_submit(req, bio);
	}
	return 0;
}

/*
 * Bounce: guest buffers are not aligned for the device.  Everything that
 * can fail for lack of memory happens before the first bio is submitted,
 * so the request can be given back and retried.
 */
static int vhost_blk_bounce_alloc(struct vhost_blk_req *req, bool write,
				  struct iov_iter *iter)
{
	unsigned int i, nr = DIV_ROUND_UP(req->data_len, PAGE_SIZE);
	u32 left = req->data_len;

	if (!vhost_blk_bounce_get(req->bvq, (size_t)nr << PAGE_SHIFT))
		return -EAGAIN;
	req->bounce = (size_t)nr << PAGE_SHIFT;

	req->pages = kvcalloc(nr, sizeof(*req->pages), VHOST_BLK_REQ_GFP);
	if (!req->pages)
		return -ENOMEM;
	for (i = 0; i < nr; i++) {
		req->pages[i] = alloc_page(VHOST_BLK_REQ_GFP);
		if (!req->pages[i])
			return -ENOMEM;
		req->nr_pages++;
	}

	for (i = 0; write && i < nr; i++) {
		u32 len = min_t(u32, left, PAGE_SIZE);

		if (copy_page_from_iter(req->pages[i], 0, len, iter) != len)
			return VIRTIO_BLK_S_IOERR;
		left -= len;
	}
	return VIRTIO_BLK_S_OK;
}

static int vhost_blk_bounce_iter(struct vhost_blk_req *req,
				 struct block_device *bdev, blk_opf_t opf,
				 sector_t sector, struct iov_iter *iter)
{
	unsigned int i, nr = DIV_ROUND_UP(req->data_len, PAGE_SIZE);
	u32 left;
	struct bio *bio = NULL;
	int ret;

	ret = vhost_blk_bounce_alloc(req, op_is_write(opf), iter);
	if (ret != VIRTIO_BLK_S_OK)
		return ret;

	for (i = 0, left = req->data_len; i < nr; i++) {
		u32 len = min_t(u32, left, PAGE_SIZE);

		if (!bio) {
			bio = bio_alloc(bdev, min_t(unsigned int, nr - i,
						    BIO_MAX_VECS),
					opf, GFP_KERNEL);
			bio->bi_iter.bi_sector = sector;
		}
		__bio_add_page(bio, req->pages[i], len, 0);
		sector += len >> SECTOR_SHIFT;
		left -= len;
		if (bio->bi_vcnt == bio->bi_max_vecs || !left) {
			vhost_blk_submit(req, bio);
			bio = NULL;
		}
	}
	return VIRTIO_BLK_S_OK;
}

/* The last step of a file backend's request (any context). */
static void vhost_blk_file_done(struct vhost_blk_req *req, long ret,
				long expected)
{
	if (ret != expected)
		WRITE_ONCE(req->status, ret == -EOPNOTSUPP ?
			   VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
	vhost_blk_req_put(req);
}

/* Asynchronous direct I/O on a file completed (usually irq context). */
static void vhost_blk_iocb_complete(struct kiocb *iocb, long ret)
{
	struct vhost_blk_req *req = container_of(iocb, struct vhost_blk_req,
						 iocb);

	if (iocb->ki_flags & IOCB_WRITE)
		kiocb_end_write(iocb);
	vhost_blk_file_done(req, ret, req->data_len);
}

/* An iterator over the request's bounce pages. */
static int vhost_blk_bvec_iter(struct vhost_blk_req *req, bool write,
			       struct iov_iter *iter)
{
	u32 left = req->data_len;
	unsigned int i;

	req->bvec = kvcalloc(req->nr_pages, sizeof(*req->bvec),
			     VHOST_BLK_REQ_GFP);
	if (!req->bvec)
		return -ENOMEM;
	for (i = 0; i < req->nr_pages; i++) {
		u32 len = min_t(u32, left, PAGE_SIZE);

		bvec_set_page(&req->bvec[i], req->pages[i], len, 0);
		left -= len;
	}
	iov_iter_bvec(iter, write ? ITER_SOURCE : ITER_DEST, req->bvec,
		      req->nr_pages, req->data_len);
	return 0;
}

/*
 * File work that may block, on vhost_blk_wq: buffered reads and writes
 * (on the bounce pages), fsync, fallocate.  The worker never waits for it.
 */
static void vhost_blk_file_work(struct work_struct *work)
{
	struct vhost_blk_req *req = container_of(work, struct vhost_blk_req,
						 work);
	struct mem_cgroup *old = set_active_memcg(req->bvq->blk->memcg);
	struct file *file = req->be->file;
	struct iov_iter iter;
	long ret = 0, expected = 0;
	unsigned int i;
	loff_t pos;

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		pos = req->sector << SECTOR_SHIFT;
		expected = req->data_len;
		iov_iter_bvec(&iter, req->type == VIRTIO_BLK_T_OUT ?
			      ITER_SOURCE : ITER_DEST, req->bvec, req->nr_pages,
			      req->data_len);
		if (req->type == VIRTIO_BLK_T_OUT)
			ret = vfs_iter_write(file, &iter, &pos,
					     req->iocb.ki_flags & IOCB_DSYNC ?
					     RWF_DSYNC : 0);
		else
			ret = vfs_iter_read(file, &iter, &pos, 0);
		break;
	case VIRTIO_BLK_T_FLUSH:
		ret = vfs_fsync(file, 0);
		break;
	default:	/* DISCARD, WRITE_ZEROES: checked segments */
		for (i = 0; i < req->nr_segs && !ret; i++) {
			struct virtio_blk_discard_write_zeroes *seg = &req->segs[i];
			u32 flags = le32_to_cpu(seg->flags);
			int mode = FALLOC_FL_KEEP_SIZE;

			if (req->type == VIRTIO_BLK_T_DISCARD ||
			    flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
				mode |= FALLOC_FL_PUNCH_HOLE;
			else
				mode |= FALLOC_FL_ZERO_RANGE;
			if (!seg->num_sectors)
				continue;
			ret = vfs_fallocate(file, mode,
					    le64_to_cpu(seg->sector) << SECTOR_SHIFT,
					    (loff_t)le32_to_cpu(seg->num_sectors) <<
					    SECTOR_SHIFT);
		}
		break;
	}
	set_active_memcg(old);
	vhost_blk_file_done(req, ret, expected);
}

/* Hand the request to vhost_blk_wq; it holds one reference until done. */
static u8 vhost_blk_file_queue(struct vhost_blk_req *req,
			       struct vhost_blk_backend *be)
{
	req->be = be;
	atomic_inc(&req->pending);
	INIT_WORK(&req->work, vhost_blk_file_work);
	queue_work(vhost_blk_wq, &req->work);
	return VIRTIO_BLK_S_OK;
}

/*
 * Read or write a file.  O_DIRECT: asynchronous direct I/O from the guest
 * buffers, or from bounce pages when they are not aligned; the worker
 * does not wait (a filesystem may still block it briefly, e.g. to
 * allocate blocks).  Buffered: bounce pages, and the page-cache I/O runs
 * on vhost_blk_wq.
 */
static int vhost_blk_file_rw(struct vhost_blk_req *req,
			     struct vhost_blk_backend *be, bool write,
			     bool aligned, struct iov_iter *iter)
{
	struct kiocb *iocb = &req->iocb;
	struct iov_iter biter;
	ssize_t ret;

	init_sync_kiocb(iocb, be->file);
	iocb->ki_pos = req->sector << SECTOR_SHIFT;
	if (write && !vhost_has_feature(&req->bvq->vq, VIRTIO_BLK_F_FLUSH))
		iocb->ki_flags |= IOCB_DSYNC;

	if (!aligned) {
		ret = vhost_blk_bounce_alloc(req, write, iter);
		if (ret != VIRTIO_BLK_S_OK)
			return ret;
		ret = vhost_blk_bvec_iter(req, write, &biter);
		if (ret)
			return ret;
		if (!be->direct)
			return vhost_blk_file_queue(req, be);
		iter = &biter;
	}

	iocb->ki_complete = vhost_blk_iocb_complete;
	atomic_inc(&req->pending);
	if (write) {
		iocb->ki_flags |= IOCB_WRITE;
		kiocb_start_write(iocb);
		ret = be->file->f_op->write_iter(iocb, iter);
	} else {
		ret = be->file->f_op->read_iter(iocb, iter);
	}
	if (ret != -EIOCBQUEUED)
		vhost_blk_iocb_complete(iocb, ret);
	return VIRTIO_BLK_S_OK;
}

/*
 * Read or write.  For a read, @iov/@nr are the guest's device-writable
 * buffers (data first), kept if the data has to be bounced.
 *
 * Returns a VIRTIO_BLK_S_* status, or -ENOMEM / -EAGAIN (no bounce memory
 * left) when the request could not be started and nothing was submitted.
 */
static int vhost_blk_rw(struct vhost_blk_req *req, struct vhost_blk_backend *be,
			bool write, u64 sector, struct iov_iter *iter,
			const struct iovec *iov, unsigned int nr)
{
	struct vhost_virtqueue *vq = &req->bvq->vq;
	struct block_device *bdev = be->bdev;
	size_t len = iov_iter_count(iter);
	blk_opf_t opf = REQ_OP_READ;
	bool aligned;
	int ret;

	if (write) {
		if (vhost_blk_is_ro(req->bvq, be))
			return VIRTIO_BLK_S_IOERR;
		/*
		 * A synchronous guest write; without a negotiated FLUSH the
		 * guest cannot ask for a cache flush, so every write must be
		 * stable when it completes (virtio 1.2, 5.2.6.2).
		 */
		opf = REQ_OP_WRITE | REQ_SYNC | REQ_IDLE;
		if (!vhost_has_feature(vq, VIRTIO_BLK_F_FLUSH))
			opf |= REQ_FUA;
	}
	if (len > VHOST_BLK_MAX_DATA_BYTES || len % SECTOR_SIZE ||
	    !vhost_blk_range_ok(be, sector, len >> SECTOR_SHIFT))
		return VIRTIO_BLK_S_IOERR;
	if (!len)
		return VIRTIO_BLK_S_OK;
	req->data_len = len;

	aligned = vhost_blk_iter_aligned(be, iter);
	if (!write && !aligned) {
		/* Saved now: vq->iov is reused for the next request. */
		req->iov = kmemdup(iov, nr * sizeof(*iov), VHOST_BLK_REQ_GFP);
		if (!req->iov)
			return -ENOMEM;
		req->iov_cnt = nr;
	}
	if (!bdev) {
		ret = vhost_blk_file_rw(req, be, write, aligned, iter);
	} else if (aligned) {
		ret = vhost_blk_map_iter(req, bdev, opf, sector, iter) ?
		      VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	} else {
		ret = vhost_blk_bounce_iter(req, bdev, opf, sector, iter);
	}
	if (ret != VIRTIO_BLK_S_OK)
		return ret;
	if (!write)
		req->len += len;
	return VIRTIO_BLK_S_OK;
}

static u8 vhost_blk_flush(struct vhost_blk_req *req, struct vhost_blk_backend *be)
{
	if (!be->bdev)
		return vhost_blk_file_queue(req, be);
	vhost_blk_submit(req, bio_alloc(be->bdev, 0, REQ_OP_WRITE | REQ_PREFLUSH,
					GFP_KERNEL));
	return VIRTIO_BLK_S_OK;
}

/* Check one DISCARD or WRITE_ZEROES segment. */
static u8 vhost_blk_dwz_seg_check(struct vhost_blk_backend *be, bool discard,
				  const struct virtio_blk_discard_write_zeroes *seg)
{
	u32 flags = le32_to_cpu(seg->flags);
	u32 nr_sects = le32_to_cpu(seg->num_sectors);

	if (discard ? flags : flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
		return VIRTIO_BLK_S_UNSUPP;
	if (nr_sects > VHOST_BLK_MAX_DWZ_SECTORS ||
	    !vhost_blk_range_ok(be, le64_to_cpu(seg->sector), nr_sects))
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

/*
 * Build and submit the bios of one checked segment; none are waited for.
 * WRITE_ZEROES may deallocate (UNMAP) only when the guest negotiated
 * DISCARD.
 */
static u8 vhost_blk_dwz_seg(struct vhost_blk_req *req, struct block_device *bdev,
			    bool discard, const struct virtio_blk_discard_write_zeroes *seg)
{
	u64 sector = le64_to_cpu(seg->sector);
	u32 nr_sects = le32_to_cpu(seg->num_sectors);
	bool unmap = le32_to_cpu(seg->flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP &&
		     vhost_has_feature(&req->bvq->vq, VIRTIO_BLK_F_DISCARD);
	struct bio *bio = NULL;
	int ret;

	if (!nr_sects)
		return VIRTIO_BLK_S_OK;

	if (discard)
		ret = __blkdev_issue_discard(bdev, sector, nr_sects, GFP_KERNEL,
					     &bio);
	else
		ret = __blkdev_issue_zeroout(bdev, sector, nr_sects, GFP_KERNEL,
					     &bio, unmap ? 0 : BLKDEV_ZERO_NOUNMAP);
	if (bio)
		vhost_blk_submit(req, bio);
	return ret ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static int vhost_blk_dwz(struct vhost_blk_req *req, struct vhost_blk_backend *be,
			 bool discard, struct iov_iter *iter)
{
	struct virtio_blk_discard_write_zeroes seg;
	size_t len = iov_iter_count(iter);
	unsigned int i, nr = len / VHOST_BLK_SEG_BYTES;
	struct iov_iter check = *iter;
	u64 total = 0;
	u8 status;

	if (!vhost_has_feature(&req->bvq->vq, discard ? VIRTIO_BLK_F_DISCARD :
						 VIRTIO_BLK_F_WRITE_ZEROES))
		return VIRTIO_BLK_S_UNSUPP;
	if (vhost_blk_is_ro(req->bvq, be))
		return VIRTIO_BLK_S_IOERR;
	if (be->bdev ? discard && !bdev_max_discard_sectors(be->bdev) :
		       !be->file->f_op->fallocate)
		return VIRTIO_BLK_S_UNSUPP;
	if (!nr || len % VHOST_BLK_SEG_BYTES || nr > VHOST_BLK_MAX_DWZ_SEGS)
		return VIRTIO_BLK_S_IOERR;

	/* Check every segment, and their sum, before acting on any of them. */
	for (i = 0; i < nr; i++) {
		if (!copy_from_iter_full(&seg, sizeof(seg), &check))
			return VIRTIO_BLK_S_IOERR;
		status = vhost_blk_dwz_seg_check(be, discard, &seg);
		if (status != VIRTIO_BLK_S_OK)
			return status;
		total += le32_to_cpu(seg.num_sectors);
		if (total > VHOST_BLK_MAX_DWZ_SECTORS)
			return VIRTIO_BLK_S_IOERR;
	}
	if (!be->bdev) {
		/* Checked copies of the segments for the work item. */
		req->segs = kmalloc_array(nr, sizeof(seg), VHOST_BLK_REQ_GFP);
		if (!req->segs)
			return -ENOMEM;
		if (!copy_from_iter_full(req->segs, nr * sizeof(seg), iter))
			return VIRTIO_BLK_S_IOERR;
		req->nr_segs = nr;
		for (i = 0; i < nr; i++) {
			if (!vhost_has_feature(&req->bvq->vq, VIRTIO_BLK_F_DISCARD))
				req->segs[i].flags &=
					~cpu_to_le32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
		}
		return vhost_blk_file_queue(req, be);
	}
	for (i = 0; i < nr; i++) {
		if (!copy_from_iter_full(&seg, sizeof(seg), iter))
			return VIRTIO_BLK_S_IOERR;
		status = vhost_blk_dwz_seg(req, be->bdev, discard, &seg);
		if (status != VIRTIO_BLK_S_OK)
			return status;
	}
	return VIRTIO_BLK_S_OK;
}

static u8 vhost_blk_get_id(struct vhost_blk_req *req, struct iov_iter *iter)
{
	struct vhost_blk *blk = req->bvq->blk;
	u8 id[VHOST_BLK_SERIAL_BYTES];
	size_t len = min(iov_iter_count(iter), sizeof(id));

	spin_lock_irq(&blk->lock);
	memcpy(id, blk->serial, sizeof(id));
	spin_unlock_irq(&blk->lock);

	if (copy_to_iter(id, len, iter) != len)
		return VIRTIO_BLK_S_IOERR;
	req->len += len;
	return VIRTIO_BLK_S_OK;
}

/* The status is the last device-writable byte of the chain. */
static u8 __user *vhost_blk_status_ptr(const struct iovec *iov, unsigned int n)
{
	while (n--) {
		if (iov[n].iov_len)
			return (u8 __user *)iov[n].iov_base + iov[n].iov_len - 1;
	}
	return NULL;
}

/* A VIRTIO_BLK_S_* status, or -ENOMEM / -EAGAIN as vhost_blk_rw(). */
static int vhost_blk_dispatch(struct vhost_blk_req *req,
			      struct vhost_blk_backend *be,
			      unsigned int out, unsigned int in, u64 out_len)
{
	struct vhost_virtqueue *vq = &req->bvq->vq;
	struct virtio_blk_outhdr hdr;
	struct iov_iter from, to;

	if (out_len < VHOST_BLK_HDR_BYTES)
		return VIRTIO_BLK_S_IOERR;
	iov_iter_init(&from, ITER_SOURCE, vq->iov, out, out_len);
	if (!copy_from_iter_full(&hdr, sizeof(hdr), &from))
		return VIRTIO_BLK_S_IOERR;
	req->type = vhost32_to_cpu(vq, hdr.type);
	req->sector = vhost64_to_cpu(vq, hdr.sector);
	/* Device-writable bytes before the status byte. */
	iov_iter_init(&to, ITER_DEST, vq->iov + out, in, req->in_len);
	iov_iter_truncate(&to, req->in_len - 1);

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		return vhost_blk_rw(req, be, false, req->sector, &to,
				    vq->iov + out, in);
	case VIRTIO_BLK_T_OUT:
		return vhost_blk_rw(req, be, true, req->sector, &from, NULL, 0);
	case VIRTIO_BLK_T_FLUSH:
		return vhost_blk_flush(req, be);
	case VIRTIO_BLK_T_GET_ID:
		return vhost_blk_get_id(req, &to);
	case VIRTIO_BLK_T_DISCARD:
		return vhost_blk_dwz(req, be, true, &from);
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return vhost_blk_dwz(req, be, false, &from);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* Keep the chain's device-writable guest ranges for the dirty log. */
static int vhost_blk_save_log(struct vhost_blk_req *req,
			      const struct vhost_log *log, unsigned int log_num)
{
	req->log = req->inline_log;
	if (log_num > VHOST_BLK_INLINE_LOG) {
		req->log = kmalloc_array(log_num, sizeof(*log),
					 VHOST_BLK_REQ_GFP);
		if (!req->log) {
			req->log = req->inline_log;
			return -ENOMEM;
		}
	}
	memcpy(req->log, log, log_num * sizeof(*log));
	req->log_num = log_num;
	return 0;
}

/*
 * Start one request.  Returns the number of bytes it moves (for the
 * worker's weight), or -ENOMEM / -EAGAIN when it could not be started,
 * nothing was submitted and the chain must be given back and retried.
 * Not inlined, to keep the kick handler's frame small.
 */
static noinline_for_stack int
vhost_blk_handle_req(struct vhost_blk_req *req, struct vhost_blk_backend *be,
		     int head, unsigned int out, unsigned int in,
		     unsigned int log_num)
{
	struct vhost_blk_vq *bvq = req->bvq;
	struct vhost_virtqueue *vq = &bvq->vq;
	int bytes, ret;

	req->in_len = iov_length(vq->iov + out, in);
	if (unlikely(!req->in_len)) {
		vq_err(vq, "request %d has no status byte\n", head);
		vhost_add_used_and_signal(vq->dev, vq, head, 0);
		vhost_blk_req_free(req);
		return 0;
	}
	req->head = head;
	req->type = 0;
	req->sector = 0;
	req->start_ns = trace_vhost_blk_req_done_enabled() ? ktime_get_ns() : 0;
	req->status = VIRTIO_BLK_S_OK;
	req->zero_copy = false;
	req->len = 1;
	req->status_ptr = vhost_blk_status_ptr(vq->iov + out, in);
	req->pages = NULL;
	req->nr_pages = 0;
	req->data_len = 0;
	req->bounce = 0;
	req->iov = NULL;
	req->iov_cnt = 0;
	req->bvec = NULL;
	req->segs = NULL;
	req->nr_segs = 0;
	atomic_set(&req->pending, 1);
	ret = vhost_blk_save_log(req, vq->log, log_num);
	if (ret)
		goto retry;

	/*
	 * Never from or to zero here: the queue's own count is held while a
	 * backend is set, and the drain drops it only after
	 * vhost_blk_detach() cleared the backend under this vq->mutex.
	 */
	atomic_inc(&bvq->inflight);

	ret = vhost_blk_dispatch(req, be, out, in, iov_length(vq->iov, out));
	if (unlikely(ret < 0)) {
		/* Nothing was submitted: pending is still 1. */
		atomic_dec(&bvq->inflight);
		goto retry;
	}
	if (ret != VIRTIO_BLK_S_OK)
		WRITE_ONCE(req->status, ret);
	bytes = req->data_len;
	trace_vhost_blk_req_start(bvq->blk->id, bvq - bvq->blk->vqs, head,
				  req->type, req->sector, bytes);
	/*
	 * Drop the submission's reference.  E2 as in vhost_blk_req_put():
	 * fully ordered after the status stores of every bio.  When it is
	 * the last one (every bio already ended inside submit_bio(), as on
	 * brd, or nothing was submitted), this worker publishes the request
	 * (E4) without queueing complete_work: it is the worker itself that
	 * would be woken, and vhost_blk_handle_kick() calls
	 * vhost_blk_complete() under the same vq->mutex before it returns,
	 * whose llist_del_all() (C1) comes after this llist_add() in this
	 * thread's program order.  A request it defers (weight) is covered
	 * by the work it queues then.
	 */
	if (atomic_dec_and_test(&req->pending))
		vhost_blk_req_done(req, false);
	return bytes;

retry:
	vhost_blk_req_release(req);
	return ret;
}

/*
 * Copy a bounced read back into the guest's buffers.  Not inlined, to keep
 * the completion's frame small.
 */
static noinline_for_stack u8 vhost_blk_copy_back(struct vhost_blk_req *req)
{
	u32 left = req->data_len;
	struct iov_iter to;
	unsigned int i;

	iov_iter_init(&to, ITER_DEST, req->iov, req->iov_cnt, left);
	for (i = 0; i < req->nr_pages; i++) {
		u32 chunk = min_t(u32, left, PAGE_SIZE);

		if (copy_page_to_iter(req->pages[i], 0, chunk, &to) != chunk)
			return VIRTIO_BLK_S_IOERR;
		left -= chunk;
	}
	return VIRTIO_BLK_S_OK;
}

static void vhost_blk_count(u64 *st, const struct vhost_blk_req *req,
			    u8 status)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(vhost_blk_stat_type); i++) {
		if (req->type == vhost_blk_stat_type[i])
			break;
	}
	st[i]++;	/* VHOST_BLK_STAT_OTHER when none matched */
	if (status == VIRTIO_BLK_S_IOERR)
		st[VHOST_BLK_STAT_IOERR]++;
	else if (status == VIRTIO_BLK_S_UNSUPP)
		st[VHOST_BLK_STAT_UNSUPP]++;
	else if (req->type == VIRTIO_BLK_T_IN)
		st[VHOST_BLK_STAT_READ_BYTES] += req->data_len;
	else if (req->type == VIRTIO_BLK_T_OUT)
		st[VHOST_BLK_STAT_WRITE_BYTES] += req->data_len;
	if (req->nr_pages)
		st[VHOST_BLK_STAT_BOUNCED_BYTES] += req->data_len;
}

/* Return one finished request to the guest and put it back in the pool. */
static void vhost_blk_complete_one(struct vhost_blk_req *req,
				   struct vring_used_elem *used)
{
	struct vhost_virtqueue *vq = &req->bvq->vq;
	u8 status = READ_ONCE(req->status);
	u32 len;

	if (status == VIRTIO_BLK_S_OK && req->iov)
		status = vhost_blk_copy_back(req);
	vhost_blk_count(req->bvq->stats, req, status);
	len = status == VIRTIO_BLK_S_OK ? req->len : 1;
	if (put_user(status, req->status_ptr))
		vq_err(vq, "cannot write status of request %u\n", req->head);
	/*
	 * Logged if and only if logging is on now, whenever the request was
	 * started: the guest memory written for it is in req->log.
	 */
	if (unlikely(vhost_has_feature(vq, VHOST_F_LOG_ALL)) &&
	    !IS_ENABLED(CONFIG_VHOST_BLK_NO_DIRTY_LOG))
		vhost_log_write(vq, req->log, req->log_num, req->in_len, NULL, 0);

	used->id = cpu_to_vhost32(vq, req->head);
	used->len = cpu_to_vhost32(vq, len);
	trace_vhost_blk_req_done(req->bvq->blk->id, req->bvq - req->bvq->blk->vqs,
				 req->head, req->type, req->sector, req->data_len,
				 status, req->start_ns ?
				 ktime_get_ns() - req->start_ns : 0);
	vhost_blk_req_release(req);
}

/*
 * Return finished requests to the guest, at most VHOST_BLK_WEIGHT of them
 * (or VHOST_BLK_BYTE_WEIGHT bytes) per call; the rest wait for the next
 * run of the completion work.  Called with vq->mutex held.
 */
static void vhost_blk_complete(struct vhost_blk_vq *bvq)
{
	struct vhost_virtqueue *vq = &bvq->vq;
	unsigned int n = 0, nreq = 0;
	struct vhost_blk_req *req;
	size_t bytes = 0;

	/* C1: fully ordered xchg, pairs with llist_add() in E4. */
	if (!bvq->completing)
		bvq->completing = llist_reverse_order(llist_del_all(&bvq->done));
	if (!bvq->completing)
		return;

	bvq->stats[VHOST_BLK_STAT_COMPLETION_RUNS]++;
	while (bvq->completing) {
		if (nreq == VHOST_BLK_WEIGHT || bytes >= VHOST_BLK_BYTE_WEIGHT) {
			bvq->stats[VHOST_BLK_STAT_COMPLETION_DEFERRED]++;
			vhost_blk_queue_work(vq, &bvq->complete_work);
			break;
		}
		req = llist_entry(bvq->completing, struct vhost_blk_req, node);
		bvq->completing = bvq->completing->next;
		bytes += req->data_len;
		nreq++;
		vhost_blk_complete_one(req, &vq->heads[n]);
		if (++n == VHOST_BLK_IOV_LIMIT) {
			vhost_add_used_n(vq, vq->heads, n);
			n = 0;
		}
	}
	/*
	 * C3: vhost_add_used_n() orders the status bytes and used entries
	 * (C2) before the used index (smp_wmb).  C4/C5: vhost_signal() orders
	 * the used index before reading used_event / avail->flags (smp_mb in
	 * vhost_notify), pairing with the guest's R4.
	 */
	if (n)
		vhost_add_used_n(vq, vq->heads, n);
	vhost_signal(&bvq->blk->dev, vq);
	if (nreq > bvq->stats[VHOST_BLK_STAT_COMPLETION_MAX])
		bvq->stats[VHOST_BLK_STAT_COMPLETION_MAX] = nreq;

	/* Requests are free again: serve what the guest queued meanwhile. */
	if (bvq->starved) {
		bvq->starved = false;
		vhost_poll_queue(&vq->poll);
	}
}

static void vhost_blk_complete_work(struct vhost_work *work)
{
	struct vhost_blk_vq *bvq = container_of(work, struct vhost_blk_vq,
						complete_work);

	mutex_lock(&bvq->vq.mutex);
	vhost_blk_complete(bvq);
	mutex_unlock(&bvq->vq.mutex);
}

static void vhost_blk_retry(struct timer_list *t)
{
	struct vhost_blk_vq *bvq = from_timer(bvq, t, retry);

	vhost_poll_queue(&bvq->vq.poll);
}

static void vhost_blk_handle_kick(struct vhost_work *work)
{
	struct vhost_virtqueue *vq = container_of(work, struct vhost_virtqueue,
						  poll.work);
	struct vhost_blk_vq *bvq = container_of(vq, struct vhost_blk_vq, vq);
	struct vhost_dev *dev = &bvq->blk->dev;
	unsigned int out, in, log_num, nreq = 0;
	struct vhost_blk_backend *be;
	struct vhost_blk_req *req;
	struct mem_cgroup *old;
	struct blk_plug plug;
	size_t bytes = 0;
	int head, ret;

	mutex_lock(&vq->mutex);
	be = vhost_vq_get_backend(vq);
	if (!be)
		goto out;

	/* A kernel-thread worker (before 6.4) charges nobody by itself. */
	old = set_active_memcg(bvq->blk->memcg);
	blk_start_plug(&plug);
	/* K1: no guest kicks while we drain the ring. */
	vhost_disable_notify(dev, vq);
	for (;;) {
		req = bvq->free_reqs;
		if (!req) {
			/* A ring's worth in flight: completion kicks us. */
			bvq->starved = true;
			bvq->stats[VHOST_BLK_STAT_RING_FULL]++;
			break;
		}
		/* The log ranges are always collected (exact dirty log). */
		head = vhost_get_vq_desc(vq, vq->iov, ARRAY_SIZE(vq->iov),
					 &out, &in, vq->log, &log_num);
		/* A broken chain: vq_err() signalled the error eventfd. */
		if (unlikely(head < 0))
			break;
		if (head == vq->num) {
			/*
			 * K4-K6: re-enable kicks, then look at avail->idx
			 * again; vhost_enable_notify() has the smp_mb (K5)
			 * between the two, pairing with the guest's G3 between
			 * writing avail->idx and reading avail_event/flags.
			 */
			if (unlikely(vhost_enable_notify(dev, vq))) {
				vhost_disable_notify(dev, vq);
				continue;
			}
			break;
		}
		bvq->free_reqs = req->next_free;
		ret = vhost_blk_handle_req(req, be, head, out, in, log_num);
		if (unlikely(ret < 0)) {
			/*
			 * Give the chain back.  Out of memory: retry after a
			 * short wait.  Out of bounce memory: the queue is
			 * kicked when some is released.
			 */
			vhost_discard_vq_desc(vq, 1);
			if (ret == -ENOMEM) {
				bvq->stats[VHOST_BLK_STAT_NOMEM_RETRIES]++;
				mod_timer(&bvq->retry,
					  jiffies + VHOST_BLK_RETRY_JIFFIES);
			} else {
				bvq->stats[VHOST_BLK_STAT_BOUNCE_WAITS]++;
			}
			break;
		}
		bytes += ret;
		if (vhost_exceeds_weight(vq, ++nreq, bytes))
			break;
	}
	blk_finish_plug(&plug);
	/* Also what vhost_blk_handle_req() published without queueing work. */
	vhost_blk_complete(bvq);
	set_active_memcg(old);
out:
	mutex_unlock(&vq->mutex);
}

static bool vhost_blk_vq_idle(struct vhost_blk_vq *bvq)
{
	bool idle;

	spin_lock_irq(&bvq->lock);
	idle = !atomic_read(&bvq->inflight);
	spin_unlock_irq(&bvq->lock);
	return idle;
}

/*
 * Wait until every submitted request has ended and been returned to the
 * guest.  New requests must already be stopped (no backend on any vq).
 * The wait is bounded by the backend's own completion time.
 */
static void vhost_blk_drain(struct vhost_blk *blk)
{
	struct vhost_blk_req *req, *next;
	int i;

	for (i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		/* No request starts any more: drop the queue's own count. */
		vhost_blk_inflight_put(&blk->vqs[i]);
		wait_event(blk->idle_wait, vhost_blk_vq_idle(&blk->vqs[i]));
	}
	vhost_dev_flush(&blk->dev);

	/* Left over only when the worker is gone (owner killed). */
	for (i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		struct vhost_blk_vq *bvq = &blk->vqs[i];
		struct llist_node *list = llist_del_all(&bvq->done);

		mutex_lock(&bvq->vq.mutex);
		llist_for_each_entry_safe(req, next, bvq->completing, node)
			vhost_blk_req_release(req);
		llist_for_each_entry_safe(req, next, list, node)
			vhost_blk_req_release(req);
		bvq->completing = NULL;
		mutex_unlock(&bvq->vq.mutex);
		/* Zero, nothing in flight: the count of the next backend. */
		atomic_set(&bvq->inflight, 1);
	}
}

/* A pool of one request per ring entry, charged to the owner. */
static int vhost_blk_pool_alloc(struct vhost_blk_vq *bvq)
{
	unsigned int i, num = bvq->vq.num;

	bvq->reqs = kvcalloc(num, sizeof(*bvq->reqs), GFP_KERNEL_ACCOUNT);
	if (!bvq->reqs)
		return -ENOMEM;
	for (i = 0; i < num; i++) {
		struct vhost_blk_req *req = &bvq->reqs[i];

		req->bvq = bvq;
		spin_lock_init(&req->lock);
		bio_list_init(&req->bios);
		vhost_blk_req_free(req);
	}
	return 0;
}

static void vhost_blk_pool_free(struct vhost_blk_vq *bvq)
{
	bvq->free_reqs = NULL;
	kvfree(bvq->reqs);
	bvq->reqs = NULL;
	bvq->starved = false;
}

/* Detach the backend, if any, once its I/O is done.  dev.mutex held. */
static void vhost_blk_detach(struct vhost_blk *blk)
{
	struct vhost_blk_backend *be = blk->backend;
	u64 t0 = ktime_get_ns();
	int i;

	if (!be)
		return;
	for (i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		struct vhost_virtqueue *vq = &blk->vqs[i].vq;

		mutex_lock(&vq->mutex);
		vhost_vq_set_backend(vq, NULL);
		mutex_unlock(&vq->mutex);
		timer_delete_sync(&blk->vqs[i].retry);
	}
	vhost_blk_drain(blk);
	for (i = 0; i < VHOST_BLK_MAX_VQS; i++)
		vhost_blk_pool_free(&blk->vqs[i]);
	blk->bounce_waiters = 0;
	blk->backend = NULL;
	fput(be->file);
	kfree(be);
	trace_vhost_blk_detach(blk->id, ktime_get_ns() - t0);
}

/* The device number trace events name the backend by. */
static dev_t vhost_blk_backend_dev(struct vhost_blk_backend *be)
{
	return be->bdev ? be->bdev->bd_dev : file_inode(be->file)->i_sb->s_dev;
}

/*
 * A regular file: served through ->read_iter/->write_iter, its size at
 * attach is the capacity.  Direct I/O needs the logical block size of the
 * filesystem's device; buffered I/O works in 512-byte sectors.
 */
static int vhost_blk_backend_file(struct vhost_blk_backend *be)
{
	struct file *file = be->file;
	struct inode *inode = file_inode(file);

	if (!file->f_op->read_iter || !file->f_op->write_iter) {
		pr_err_ratelimited("backend file: its filesystem has no read_iter/write_iter\n");
		return -EOPNOTSUPP;
	}
	/* Writes go where the guest says, never to the end of the file. */
	if (file->f_flags & O_APPEND) {
		pr_err_ratelimited("backend file opened with O_APPEND\n");
		return -EINVAL;
	}
	be->direct = file->f_flags & O_DIRECT;
	be->align_bdev = inode->i_sb->s_bdev;
	be->lbs = SECTOR_SIZE;
	if (be->direct && be->align_bdev)
		be->lbs = bdev_logical_block_size(be->align_bdev);
	be->nr_sectors = round_down(i_size_read(inode) >> SECTOR_SHIFT,
				    be->lbs >> SECTOR_SHIFT);
	return 0;
}

static struct vhost_blk_backend *vhost_blk_backend_open(int fd)
{
	struct vhost_blk_backend *be;
	struct file *file;
	umode_t mode;
	int r;

	file = fget(fd);
	if (!file)
		return ERR_PTR(-EBADF);
	mode = file_inode(file)->i_mode;
	r = -ENOTBLK;
	if (!S_ISBLK(mode) && !S_ISREG(mode))
		goto err;
	/* Every device reads: a descriptor without read access is refused. */
	r = -EBADF;
	if (!(file->f_mode & FMODE_READ))
		goto err;
	r = -ENOMEM;
	be = kzalloc(sizeof(*be), GFP_KERNEL_ACCOUNT);
	if (!be)
		goto err;
	be->file = file;
	be->ro = !(file->f_mode & FMODE_WRITE);
	if (S_ISBLK(mode)) {
		be->bdev = I_BDEV(file->f_mapping->host);
		be->lbs = bdev_logical_block_size(be->bdev);
		return be;
	}
	r = vhost_blk_backend_file(be);
	if (!r)
		return be;
	kfree(be);
err:
	fput(file);
	return ERR_PTR(r);
}

/*
 * Before any queue goes live: every ring that is set up (all three
 * addresses given) must lie in the owner's address space, and so must the
 * log when VHOST_F_LOG_ALL is acked.  Called with dev.mutex held, by the
 * owner (access_ok() checks the caller's address space).
 */
static int vhost_blk_check_rings(struct vhost_blk *blk)
{
	int i;

	for (i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		struct vhost_virtqueue *vq = &blk->vqs[i].vq;
		bool bad;

		mutex_lock(&vq->mutex);
		bad = vq->desc && vq->avail && vq->used &&
		      !vhost_vq_access_ok(vq);
		mutex_unlock(&vq->mutex);
		if (bad) {
			pr_err_ratelimited("virtqueue %d: rings or log outside the owner's address space\n",
					   i);
			return -EFAULT;
		}
	}
	return 0;
}

/* Make every set-up queue live on @be.  dev.mutex held, nothing attached. */
static int vhost_blk_attach(struct vhost_blk *blk, struct vhost_blk_backend *be)
{
	int i, r = 0;

	for (i = 0; i < VHOST_BLK_MAX_VQS && !r; i++) {
		struct vhost_blk_vq *bvq = &blk->vqs[i];
		struct vhost_virtqueue *vq = &bvq->vq;

		mutex_lock(&vq->mutex);
		if (vhost_vq_is_setup(vq)) {
			r = vhost_blk_pool_alloc(bvq);
			if (!r) {
				vhost_vq_set_backend(vq, be);
				r = vhost_vq_init_access(vq);
				if (r)
					pr_err_ratelimited("cannot access the used ring of virtqueue %d\n",
							   i);
			}
		}
		mutex_unlock(&vq->mutex);
	}
	blk->backend = be;
	if (r) {
		vhost_blk_detach(blk);
		return r;
	}
	trace_vhost_blk_attach(blk->id, MAJOR(vhost_blk_backend_dev(be)),
			       MINOR(vhost_blk_backend_dev(be)), be->ro);
	/* Serve what the guest queued while no backend was attached. */
	for (i = 0; i < VHOST_BLK_MAX_VQS; i++)
		vhost_poll_queue(&blk->vqs[i].vq.poll);
	return 0;
}

static long vhost_blk_set_backend(struct vhost_blk *blk, int fd)
{
	struct vhost_blk_backend *be;
	long r;

	mutex_lock(&blk->dev.mutex);
	r = vhost_dev_check_owner(&blk->dev);
	if (r)
		goto out;
	if (fd == -1) {
		vhost_blk_detach(blk);
		goto out;
	}
	be = vhost_blk_backend_open(fd);
	if (IS_ERR(be)) {
		r = PTR_ERR(be);
		goto out;
	}
	r = vhost_blk_check_rings(blk);
	if (r) {
		fput(be->file);
		kfree(be);
		goto out;
	}
	vhost_blk_detach(blk);
	/* Nothing is in flight: no worker or work item uses blk->memcg. */
	mem_cgroup_put(blk->memcg);
	blk->memcg = get_mem_cgroup_from_mm(current->mm);
	r = vhost_blk_attach(blk, be);
out:
	mutex_unlock(&blk->dev.mutex);
	return r;
}

static long vhost_blk_set_features(struct vhost_blk *blk, u64 features)
{
	long r;
	int i;

	if (features & ~VHOST_BLK_FEATURES)
		return -EOPNOTSUPP;

	mutex_lock(&blk->dev.mutex);
	r = vhost_dev_check_owner(&blk->dev);
	if (r)
		goto out;
	if ((features & BIT_ULL(VHOST_F_LOG_ALL)) &&
	    !vhost_log_access_ok(&blk->dev)) {
		r = -EFAULT;
		goto out;
	}
	for (i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		struct vhost_virtqueue *vq = &blk->vqs[i].vq;

		mutex_lock(&vq->mutex);
		vq->acked_features = features;
		mutex_unlock(&vq->mutex);
	}
out:
	mutex_unlock(&blk->dev.mutex);
	return r;
}

static long vhost_blk_reset_owner(struct vhost_blk *blk)
{
	struct vhost_iotlb *umem;
	long r;

	mutex_lock(&blk->dev.mutex);
	r = vhost_dev_check_owner(&blk->dev);
	if (r)
		goto out;
	umem = vhost_dev_reset_owner_prepare();
	if (!umem) {
		r = -ENOMEM;
		goto out;
	}
	vhost_blk_detach(blk);
	vhost_dev_stop(&blk->dev);
	vhost_dev_reset_owner(&blk->dev, umem);
out:
	mutex_unlock(&blk->dev.mutex);
	return r;
}

static long vhost_blk_set_serial(struct vhost_blk *blk, void __user *argp)
{
	struct vhost_blk_serial serial;
	long r;

	if (copy_from_user(&serial, argp, sizeof(serial)))
		return -EFAULT;
	mutex_lock(&blk->dev.mutex);
	r = vhost_dev_check_owner(&blk->dev);
	if (!r) {
		spin_lock_irq(&blk->lock);
		memcpy(blk->serial, serial.id, sizeof(blk->serial));
		spin_unlock_irq(&blk->lock);
	}
	mutex_unlock(&blk->dev.mutex);
	return r;
}

static long vhost_blk_set_readonly(struct vhost_blk *blk, void __user *argp)
{
	int ro;
	long r;

	if (get_user(ro, (int __user *)argp))
		return -EFAULT;
	if (ro != 0 && ro != 1)
		return -EINVAL;
	mutex_lock(&blk->dev.mutex);
	r = vhost_dev_check_owner(&blk->dev);
	if (!r)
		WRITE_ONCE(blk->readonly, ro);
	mutex_unlock(&blk->dev.mutex);
	return r;
}

static long vhost_blk_ioctl(struct file *f, unsigned int ioctl,
			    unsigned long arg)
{
	struct vhost_blk *blk = f->private_data;
	void __user *argp = (void __user *)arg;
	u64 __user *featurep = argp;
	u64 features;
	int fd;
	long r;

	switch (ioctl) {
	case VHOST_BLK_GET_CAPS:
		features = VHOST_BLK_CAP_EXACT_LOG;
		return copy_to_user(featurep, &features, sizeof(features)) ?
		       -EFAULT : 0;
	case VHOST_GET_FEATURES:
		features = VHOST_BLK_FEATURES;
		return copy_to_user(featurep, &features, sizeof(features)) ?
		       -EFAULT : 0;
	case VHOST_SET_FEATURES:
		if (copy_from_user(&features, featurep, sizeof(features)))
			return -EFAULT;
		return vhost_blk_set_features(blk, features);
	case VHOST_RESET_OWNER:
		return vhost_blk_reset_owner(blk);
	case VHOST_BLK_SET_BACKEND:
		if (get_user(fd, (int __user *)argp))
			return -EFAULT;
		return vhost_blk_set_backend(blk, fd);
	case VHOST_BLK_SET_SERIAL:
		return vhost_blk_set_serial(blk, argp);
	case VHOST_BLK_SET_READONLY:
		return vhost_blk_set_readonly(blk, argp);
	default:
		r = vhost_blk_worker_ioctl(&blk->dev, ioctl, argp);
		if (r != -ENOIOCTLCMD)
			return r;
		mutex_lock(&blk->dev.mutex);
		r = vhost_dev_ioctl(&blk->dev, ioctl, argp);
		if (r == -ENOIOCTLCMD)
			r = vhost_vring_ioctl(&blk->dev, ioctl, argp);
		mutex_unlock(&blk->dev.mutex);
		return r;
	}
}

/* One counter of the device: the sum (or the maximum) over its queues. */
static u64 vhost_blk_stat(struct vhost_blk *blk, enum vhost_blk_stat stat)
{
	u64 v, sum = 0;
	unsigned int i;

	for (i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		struct vhost_blk_vq *bvq = &blk->vqs[i];

		mutex_lock(&bvq->vq.mutex);
		v = bvq->stats[stat];
		mutex_unlock(&bvq->vq.mutex);
		if (stat == VHOST_BLK_STAT_COMPLETION_MAX)
			sum = max(sum, v);
		else
			sum += v;
	}
	return sum;
}

static int vhost_blk_stats_show(struct seq_file *m, void *unused)
{
	struct vhost_blk *blk = m->private;
	unsigned int i, inflight = 0;
	size_t bounce;

	/* Without the queues' own counts (dropped only while detaching). */
	for (i = 0; i < VHOST_BLK_MAX_VQS; i++)
		inflight += max(atomic_read(&blk->vqs[i].inflight) - 1, 0);
	spin_lock(&blk->bounce_lock);
	bounce = blk->bounce_bytes;
	spin_unlock(&blk->bounce_lock);

	seq_printf(m, "pid %d\nin_flight %u\nbounce_held_bytes %zu\n",
		   blk->tgid, inflight, bounce);
	for (i = 0; i < VHOST_BLK_NR_STATS; i++)
		seq_printf(m, "%s %llu\n", vhost_blk_stat_name[i],
			   vhost_blk_stat(blk, i));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vhost_blk_stats);

/* Lets an operator map a process's descriptor to its debugfs directory. */
static void vhost_blk_show_fdinfo(struct seq_file *m, struct file *f)
{
	struct vhost_blk *blk = f->private_data;

	seq_printf(m, "vhost-blk-id:\t%u\n", blk->id);
}

static int vhost_blk_open(struct inode *inode, struct file *f)
{
	char name[16];
	struct vhost_virtqueue **vqs;
	struct vhost_blk *blk;
	int i;

	blk = kvzalloc(sizeof(*blk), GFP_KERNEL_ACCOUNT);
	if (!blk)
		return -ENOMEM;
	vqs = kcalloc(VHOST_BLK_MAX_VQS, sizeof(*vqs), GFP_KERNEL_ACCOUNT);
	if (!vqs) {
		kvfree(blk);
		return -ENOMEM;
	}

	blk->id = atomic_inc_return(&vhost_blk_ids);
	spin_lock_init(&blk->lock);
	spin_lock_init(&blk->bounce_lock);
	init_waitqueue_head(&blk->idle_wait);
	for (i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		struct vhost_blk_vq *bvq = &blk->vqs[i];

		bvq->blk = blk;
		bvq->vq.handle_kick = vhost_blk_handle_kick;
		init_llist_head(&bvq->done);
		spin_lock_init(&bvq->lock);
		atomic_set(&bvq->inflight, 1);
		timer_setup(&bvq->retry, vhost_blk_retry, 0);
		vhost_work_init(&bvq->complete_work, vhost_blk_complete_work);
		vqs[i] = &bvq->vq;
	}
	vhost_dev_init(&blk->dev, vqs, VHOST_BLK_MAX_VQS, VHOST_BLK_IOV_LIMIT,
		       VHOST_BLK_WEIGHT, VHOST_BLK_BYTE_WEIGHT, true, NULL);
	blk->tgid = task_tgid_vnr(current);
	snprintf(name, sizeof(name), "%u", blk->id);
	blk->debugfs = debugfs_create_dir(name, vhost_blk_debugfs);
	debugfs_create_file("stats", 0400, blk->debugfs, blk,
			    &vhost_blk_stats_fops);
	f->private_data = blk;
	return 0;
}

static int vhost_blk_release(struct inode *inode, struct file *f)
{
	struct vhost_blk *blk = f->private_data;

	/* Waits for readers of the stats file. */
	debugfs_remove(blk->debugfs);
	mutex_lock(&blk->dev.mutex);
	vhost_blk_detach(blk);
	mutex_unlock(&blk->dev.mutex);
	vhost_dev_stop(&blk->dev);
	vhost_dev_cleanup(&blk->dev);
	mem_cgroup_put(blk->memcg);
	kfree(blk->dev.vqs);
	kvfree(blk);
	return 0;
}

static const struct file_operations vhost_blk_fops = {
	.owner		= THIS_MODULE,
	.open		= vhost_blk_open,
	.release	= vhost_blk_release,
	.unlocked_ioctl	= vhost_blk_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.show_fdinfo	= vhost_blk_show_fdinfo,
	.llseek		= noop_llseek,
};

/*
 * A fixed minor, so that a /dev/vhost-blk node can exist before the module
 * is loaded and opening it loads the module, as with vhost-net.  254 is in
 * the "reserved for local use" range 243-254 of Documentation/admin-guide/
 * devices.txt, unused by 6.1 and 6.12, from the top because upstream fills
 * that range from the bottom.
 */
#define VHOST_BLK_MINOR	254

static struct miscdevice vhost_blk_misc = {
	.minor	= VHOST_BLK_MINOR,
	.name	= "vhost-blk",
	.fops	= &vhost_blk_fops,
};

static int __init vhost_blk_init(void)
{
	int r;

	vhost_blk_wq = alloc_workqueue("vhost_blk", WQ_UNBOUND | WQ_MEM_RECLAIM,
				       0);
	if (!vhost_blk_wq)
		return -ENOMEM;
	vhost_blk_debugfs = debugfs_create_dir("vhost-blk", NULL);
	r = misc_register(&vhost_blk_misc);
	if (r) {
		pr_err("cannot register /dev/vhost-blk: %d\n", r);
		debugfs_remove(vhost_blk_debugfs);
		destroy_workqueue(vhost_blk_wq);
	}
	return r;
}
module_init(vhost_blk_init);

static void __exit vhost_blk_exit(void)
{
	misc_deregister(&vhost_blk_misc);
	debugfs_remove(vhost_blk_debugfs);
	destroy_workqueue(vhost_blk_wq);
}
module_exit(vhost_blk_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vhost-blk: in-kernel virtio-blk data plane");
MODULE_ALIAS_MISCDEV(VHOST_BLK_MINOR);
MODULE_ALIAS("devname:vhost-blk");
