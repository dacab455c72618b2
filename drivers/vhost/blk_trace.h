/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost-blk trace events.  Disabled events cost a static branch each
 * (tracepoints are static keys); the request start time is only taken
 * while vhost_blk_req_done is enabled.
 *
 *	vhost_blk_req_start	a request was parsed and its I/O submitted
 *	vhost_blk_req_done	a request was returned to the guest
 *	vhost_blk_attach	SET_BACKEND attached a backend
 *	vhost_blk_detach	a backend was detached, after the drain
 *
 * dev is a number per open of /dev/vhost-blk (first open: 1), vq the
 * virtqueue, head the descriptor index: (dev, vq, head) names one request
 * from start to done.  Documentation/admin-guide.rst shows how to read
 * them.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM vhost_blk

#if !defined(_VHOST_BLK_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _VHOST_BLK_TRACE_H

#include <linux/tracepoint.h>

TRACE_EVENT(vhost_blk_req_start,
	    TP_PROTO(u32 dev, u16 vq, u16 req_head, u32 type, u64 sector,
		     u32 bytes),
	    TP_ARGS(dev, vq, req_head, type, sector, bytes),
	    TP_STRUCT__entry(__field(u32, dev)
			     __field(u16, vq)
			     __field(u16, req_head)
			     __field(u32, type)
			     __field(u32, bytes)
			     __field(u64, sector)),
	    TP_fast_assign(__entry->dev = dev;
			   __entry->vq = vq;
			   __entry->req_head = req_head;
			   __entry->type = type;
			   __entry->bytes = bytes;
			   __entry->sector = sector;),
	    TP_printk("dev=%u vq=%u head=%u type=%u sector=%llu bytes=%u",
		      __entry->dev, __entry->vq, __entry->req_head,
		      __entry->type, __entry->sector, __entry->bytes)
);

TRACE_EVENT(vhost_blk_req_done,
	    TP_PROTO(u32 dev, u16 vq, u16 req_head, u32 type, u64 sector,
		     u32 bytes, u8 status, u64 latency_ns),
	    TP_ARGS(dev, vq, req_head, type, sector, bytes, status, latency_ns),
	    TP_STRUCT__entry(__field(u32, dev)
			     __field(u16, vq)
			     __field(u16, req_head)
			     __field(u32, type)
			     __field(u32, bytes)
			     __field(u64, sector)
			     __field(u64, latency_ns)
			     __field(u8, status)),
	    TP_fast_assign(__entry->dev = dev;
			   __entry->vq = vq;
			   __entry->req_head = req_head;
			   __entry->type = type;
			   __entry->bytes = bytes;
			   __entry->sector = sector;
			   __entry->latency_ns = latency_ns;
			   __entry->status = status;),
	    TP_printk("dev=%u vq=%u head=%u type=%u sector=%llu bytes=%u status=%u latency_ns=%llu",
		      __entry->dev, __entry->vq, __entry->req_head,
		      __entry->type, __entry->sector, __entry->bytes,
		      __entry->status, __entry->latency_ns)
);

TRACE_EVENT(vhost_blk_attach,
	    TP_PROTO(u32 dev, u32 major, u32 minor, bool ro),
	    TP_ARGS(dev, major, minor, ro),
	    TP_STRUCT__entry(__field(u32, dev)
			     __field(u32, major)
			     __field(u32, minor)
			     __field(bool, ro)),
	    TP_fast_assign(__entry->dev = dev;
			   __entry->major = major;
			   __entry->minor = minor;
			   __entry->ro = ro;),
	    TP_printk("dev=%u backend=%u:%u ro=%d", __entry->dev,
		      __entry->major, __entry->minor, __entry->ro)
);

TRACE_EVENT(vhost_blk_detach,
	    TP_PROTO(u32 dev, u64 drain_ns),
	    TP_ARGS(dev, drain_ns),
	    TP_STRUCT__entry(__field(u32, dev)
			     __field(u64, drain_ns)),
	    TP_fast_assign(__entry->dev = dev;
			   __entry->drain_ns = drain_ns;),
	    TP_printk("dev=%u drain_ns=%llu", __entry->dev, __entry->drain_ns)
);

#endif /* _VHOST_BLK_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE blk_trace
#include <trace/define_trace.h>
