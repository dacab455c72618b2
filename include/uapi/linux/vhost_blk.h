/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vhost-blk: in-kernel virtio-blk data plane, device-specific ioctls.
 *
 * /dev/vhost-blk is driven with the standard vhost ioctls from
 * <linux/vhost.h> (SET_OWNER, SET_MEM_TABLE, SET_VRING_*, ...).  The
 * ioctls below tell the kernel what it cannot know by itself: which block
 * device backs the virtio-blk device, the serial returned for
 * VIRTIO_BLK_T_GET_ID and whether the device is read-only.
 *
 * All of them need the caller to be the owner (VHOST_SET_OWNER first);
 * otherwise they fail with EPERM.  See Documentation/vhost-blk.rst.
 */
#ifndef _UAPI_LINUX_VHOST_BLK_H
#define _UAPI_LINUX_VHOST_BLK_H

#include <linux/types.h>
#include <linux/vhost.h>

/* Number of virtqueues every /dev/vhost-blk instance has. */
#define VHOST_BLK_MAX_VQS		16

/* Largest data payload of one IN or OUT request, in bytes.  A request with
 * more data completes with VIRTIO_BLK_S_IOERR; the device model should
 * advertise seg_max/size_max so that a conforming driver never sends one.
 */
#define VHOST_BLK_MAX_DATA_BYTES	(4U << 20)

/* Largest number of segments in one DISCARD or WRITE_ZEROES request. */
#define VHOST_BLK_MAX_DWZ_SEGS		256

/*
 * Largest number of 512-byte sectors one DISCARD or WRITE_ZEROES segment
 * may name, and the largest sum over all segments of one request (32 MiB).
 * A request over either limit completes with VIRTIO_BLK_S_IOERR and does
 * nothing.  The device model advertises this number as max_discard_sectors
 * and max_write_zeroes_sectors (a Linux guest applies it to a whole
 * request).
 */
#define VHOST_BLK_MAX_DWZ_SECTORS	(1U << 16)

/* Length of the GET_ID string (VIRTIO_BLK_ID_BYTES). */
#define VHOST_BLK_SERIAL_BYTES		20

/*
 * VHOST_BLK_SET_BACKEND - attach, replace or detach the backing device.
 *
 * Argument: int, a file descriptor of an open block device or regular
 * file (a raw image: its size at attach is the capacity; O_DIRECT gives
 * direct I/O, without it the page cache is used), or -1.
 * A descriptor opened without write access makes the device read-only;
 * one without read access is refused.  Every virtqueue whose three ring
 * addresses are set is served; all of them, and the dirty log when
 * VHOST_F_LOG_ALL is acked, must lie in the caller's address space.
 * Replacing or detaching first stops taking new requests, then waits for
 * every request already submitted to complete and be returned to the
 * guest.  Requests the guest adds while no backend is attached stay in
 * the ring and are served once a backend is attached.
 * Errors: EPERM (not the owner), EBADF (bad fd, or no read access),
 * ENOTBLK (neither a block device nor a regular file), EOPNOTSUPP (a file
 * whose filesystem has no read_iter/write_iter), EINVAL (a file opened
 * with O_APPEND), EFAULT (bad argument pointer, or a ring
 * or the log outside the caller's address space: nothing is attached),
 * ENOMEM.
 */
#define VHOST_BLK_SET_BACKEND	_IOW(VHOST_VIRTIO, 0x50, int)

/*
 * VHOST_BLK_SET_SERIAL - the string returned by VIRTIO_BLK_T_GET_ID.
 *
 * Argument: struct vhost_blk_serial.  Not NUL-terminated when all 20
 * bytes are used.  May be called at any time; requests that complete
 * after the call see the new value.  Default: all zero.
 * Errors: EPERM, EFAULT.
 */
struct vhost_blk_serial {
	__u8 id[VHOST_BLK_SERIAL_BYTES];
};

#define VHOST_BLK_SET_SERIAL	_IOW(VHOST_VIRTIO, 0x51, struct vhost_blk_serial)

/*
 * VHOST_BLK_SET_READONLY - force read-only mode on or off.
 *
 * Argument: int, 0 or 1.  The device is read-only when this is 1, when
 * the backend descriptor lacks write access, or when the driver acked
 * VIRTIO_BLK_F_RO; OUT, DISCARD and WRITE_ZEROES requests then complete
 * with VIRTIO_BLK_S_IOERR.  Takes effect for requests not yet started.
 * Errors: EPERM, EFAULT, EINVAL (not 0 or 1).
 */
#define VHOST_BLK_SET_READONLY	_IOW(VHOST_VIRTIO, 0x52, int)

/*
 * VHOST_BLK_GET_CAPS - what this module guarantees beyond the ioctls.
 *
 * Argument: __u64, filled with VHOST_BLK_CAP_* bits.  Needs no owner.
 * A module without this ioctl fails it with ENOTTY: treat that as 0.
 *
 * VHOST_BLK_CAP_EXACT_LOG: with VHOST_F_LOG_ALL acked, every byte the
 * device writes into guest memory (data, status byte, used ring) is
 * marked in the dirty log when, and only when, logging is on at the
 * moment the request completes; a request started before logging was
 * turned on is logged if it completes after.  A device model may allow
 * live migration only with this bit.
 */
#define VHOST_BLK_CAP_EXACT_LOG		(1ULL << 0)

#define VHOST_BLK_GET_CAPS	_IOR(VHOST_VIRTIO, 0x53, __u64)

#endif /* _UAPI_LINUX_VHOST_BLK_H */
