/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost-blk: the few places where the vhost core of the supported kernels
 * (6.1, and 6.5+ tested on 6.12) differs.  Nothing else in blk.c depends on
 * the kernel version.  The build defines VHOST_BLK_VQ_WORKERS when vhost.h
 * has per-virtqueue workers (vhost_vq_work_queue(), 6.5+).
 */
#ifndef _VHOST_BLK_COMPAT_H
#define _VHOST_BLK_COMPAT_H

#include "vhost.h"

#ifdef VHOST_BLK_VQ_WORKERS

/*
 * Per-virtqueue workers.  Queueing fails once the owner has been killed
 * (the worker is a vhost_task of the owner); the caller then leaves the
 * request on its done list and teardown releases it.
 */
static inline bool vhost_blk_queue_work(struct vhost_virtqueue *vq,
					struct vhost_work *work)
{
	return vhost_vq_work_queue(vq, work);
}

static inline long vhost_blk_worker_ioctl(struct vhost_dev *dev,
					  unsigned int ioctl, void __user *argp)
{
	long r;

	switch (ioctl) {
	case VHOST_NEW_WORKER:
	case VHOST_FREE_WORKER:
	case VHOST_ATTACH_VRING_WORKER:
	case VHOST_GET_VRING_WORKER:
		mutex_lock(&dev->mutex);
		r = vhost_worker_ioctl(dev, ioctl, argp);
		mutex_unlock(&dev->mutex);
		return r;
	default:
		return -ENOIOCTLCMD;
	}
}

#else /* one kthread worker per device */

static inline bool vhost_blk_queue_work(struct vhost_virtqueue *vq,
					struct vhost_work *work)
{
	vhost_work_queue(vq->dev, work);
	return true;
}

static inline long vhost_blk_worker_ioctl(struct vhost_dev *dev,
					  unsigned int ioctl, void __user *argp)
{
	return -ENOIOCTLCMD;
}

#endif

#endif /* _VHOST_BLK_COMPAT_H */
