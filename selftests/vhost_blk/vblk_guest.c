// SPDX-License-Identifier: GPL-2.0
/*
 * vblk_guest - userspace virtio-blk guest driver for /dev/vhost-blk.
 * See vblk_guest.h for the API and its rules.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "vblk_guest.h"

#define UNIT		64ULL
#define PAGE		4096ULL
#define DATA_POISON	0xa5

#define vlog(...) fprintf(stderr, "# vblk: " __VA_ARGS__)

/* Full barrier (the guest side of virtio's "mb"); callers say what pairs. */
static inline void mb(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

uint64_t vblk_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *vblk_aligned(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, PAGE, len ? len : 1))
		return NULL;
	memset(p, 0, len);
	return p;
}

int vblk_ioctl(struct vblk_dev *d, unsigned long cmd, void *arg)
{
	return ioctl(d->fd, cmd, arg) < 0 ? -errno : 0;
}

/* ---- guest memory ---------------------------------------------------- */

static size_t half(struct vblk_dev *d)
{
	return d->o.mem_size / 2;
}

void *vblk_h(struct vblk_dev *d, uint64_t gpa)
{
	uint64_t off;

	if (gpa < d->o.gpa_base || gpa - d->o.gpa_base >= d->o.mem_size)
		return NULL;
	off = gpa - d->o.gpa_base;
	if (d->o.regions == 2)
		off = off < half(d) ? off + half(d) : off - half(d);
	return d->mem + off;
}

static int guest_copy(struct vblk_dev *d, uint64_t gpa, void *buf, size_t len,
		      bool to_guest)
{
	uint8_t *b = buf;

	while (len) {
		uint64_t off = gpa - d->o.gpa_base;
		size_t chunk, lim;
		uint8_t *h = vblk_h(d, gpa);

		if (!h)
			return -EFAULT;
		lim = d->o.mem_size;
		if (d->o.regions == 2 && off < half(d))
			lim = half(d);
		chunk = lim - off;
		if (chunk > len)
			chunk = len;
		if (to_guest)
			memcpy(h, b, chunk);
		else
			memcpy(b, h, chunk);
		b += chunk;
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

int vblk_write_guest(struct vblk_dev *d, uint64_t gpa, const void *src, size_t len)
{
	return guest_copy(d, gpa, (void *)src, len, true);
}

int vblk_read_guest(struct vblk_dev *d, uint64_t gpa, void *dst, size_t len)
{
	return guest_copy(d, gpa, dst, len, false);
}

static bool unit_used(struct vblk_dev *d, size_t u)
{
	return d->bitmap[u / 8] & (1 << (u % 8));
}

static void units_mark(struct vblk_dev *d, size_t first, size_t end, bool used)
{
	for (size_t u = first; u < end; u++) {
		if (used)
			d->bitmap[u / 8] |= 1 << (u % 8);
		else
			d->bitmap[u / 8] &= ~(1 << (u % 8));
	}
}

static void unit_range(uint64_t off, size_t len, size_t *first, size_t *end)
{
	*first = off / UNIT;
	*end = (off + (len ? len : 1) + UNIT - 1) / UNIT;
}

int vblk_alloc_at(struct vblk_dev *d, uint64_t gpa, size_t len)
{
	size_t first, end;
	int err = 0;

	if (gpa < d->o.gpa_base || gpa - d->o.gpa_base + len > d->o.mem_size)
		return -EINVAL;
	unit_range(gpa - d->o.gpa_base, len, &first, &end);
	pthread_mutex_lock(&d->alloc_lock);
	for (size_t u = first; u < end; u++)
		if (unit_used(d, u))
			err = -EBUSY;
	if (!err)
		units_mark(d, first, end, true);
	pthread_mutex_unlock(&d->alloc_lock);
	return err;
}

static uint64_t alloc_locked(struct vblk_dev *d, size_t len, uint32_t off);

uint64_t vblk_alloc(struct vblk_dev *d, size_t len, uint32_t off)
{
	uint64_t g;

	pthread_mutex_lock(&d->alloc_lock);
	g = alloc_locked(d, len, off);
	pthread_mutex_unlock(&d->alloc_lock);
	return g;
}

static uint64_t alloc_locked(struct vblk_dev *d, size_t len, uint32_t off)
{
	size_t tried = 0, u = d->cursor;

	off %= PAGE;
	while (tried < d->units) {
		uint64_t a = u * UNIT, lo = a & ~(PAGE - 1);
		size_t first, end, bad = 0;

		a = lo + off >= a ? lo + off : lo + PAGE + off;
		unit_range(a, len, &first, &end);
		if (end > d->units) {
			tried += d->units - u;
			u = 0;
			continue;
		}
		if (d->o.regions == 2 && first * UNIT < half(d) &&
		    end * UNIT > half(d)) {
			size_t nu = half(d) / UNIT;

			tried += nu - u;
			u = nu;
			continue;
		}
		for (size_t x = first; x < end; x++)
			if (unit_used(d, x)) {
				bad = x + 1;
				break;
			}
		if (!bad) {
			units_mark(d, first, end, true);
			d->cursor = end % d->units;
			return d->o.gpa_base + a;
		}
		tried += bad - u;
		u = bad % d->units;
	}
	return 0;
}

void vblk_free(struct vblk_dev *d, uint64_t gpa, size_t len)
{
	size_t first, end;

	if (!gpa)
		return;
	unit_range(gpa - d->o.gpa_base, len, &first, &end);
	pthread_mutex_lock(&d->alloc_lock);
	units_mark(d, first, end, false);
	pthread_mutex_unlock(&d->alloc_lock);
}

/* ---- device ------------------------------------------------------------ */

int vblk_dev_init(struct vblk_dev *d, const struct vblk_opts *o)
{
	struct vblk_opts def = VBLK_OPTS_DEFAULT;
	int err;

	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->alloc_lock, NULL);
	d->fd = -1;
	for (int i = 0; i < VHOST_BLK_MAX_VQS; i++)
		d->vq[i].kick_fd = d->vq[i].call_fd = d->vq[i].err_fd = -1;
	d->o = o ? *o : def;
	if (!d->o.mem_size)
		d->o.mem_size = def.mem_size;
	d->o.mem_size = (d->o.mem_size + 2 * PAGE - 1) & ~(2 * PAGE - 1);
	if (!d->o.gpa_base)
		d->o.gpa_base = VBLK_GPA_BASE;
	if (d->o.regions != 2)
		d->o.regions = 1;
	if (!d->o.nvqs)
		d->o.nvqs = 1;
	if (d->o.nvqs > VHOST_BLK_MAX_VQS)
		d->o.nvqs = VHOST_BLK_MAX_VQS;
	if (!d->o.qsize)
		d->o.qsize = def.qsize;

	d->mem = mmap(NULL, d->o.mem_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (d->mem == MAP_FAILED) {
		d->mem = NULL;
		err = -errno;
		vlog("mmap %zu: %s\n", d->o.mem_size, strerror(-err));
		return err;
	}
	if ((uint64_t)(uintptr_t)d->mem == d->o.gpa_base)
		vlog("warning: user address equals gpa base\n");
	d->units = d->o.mem_size / UNIT;
	d->bitmap = calloc(d->units / 8 + 1, 1);
	if (!d->bitmap)
		return -ENOMEM;

	for (unsigned int i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		struct vblk_vq *vq = &d->vq[i];
		unsigned int n = d->o.qsize;

		vq->dev = d;
		vq->idx = i;
		vq->num = n;
		vq->desc_gpa = vblk_alloc(d, 16 * n, 0);
		vq->avail_gpa = vblk_alloc(d, 6 + 2 * n, 0);
		vq->used_gpa = vblk_alloc(d, 6 + 8 * n, 0);
		if (!vq->desc_gpa || !vq->avail_gpa || !vq->used_gpa)
			return -ENOMEM;
		vq->desc = vblk_h(d, vq->desc_gpa);
		vq->avail = vblk_h(d, vq->avail_gpa);
		vq->used = vblk_h(d, vq->used_gpa);
		vq->free_stack = calloc(n, sizeof(uint16_t));
		vq->shadow_next = calloc(n, sizeof(uint16_t));
		vq->chain_len = calloc(n, sizeof(uint16_t));
		vq->inflight = calloc(n, sizeof(*vq->inflight));
		if (!vq->free_stack || !vq->shadow_next || !vq->chain_len ||
		    !vq->inflight)
			return -ENOMEM;
		vq->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		vq->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		vq->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (vq->kick_fd < 0 || vq->call_fd < 0 || vq->err_fd < 0)
			return -errno;
		vq->irq_enabled = true;
	}

	d->fd = open(VBLK_DEV_PATH, O_RDWR | O_CLOEXEC);
	if (d->fd < 0) {
		err = -errno;
		vlog("open %s: %s\n", VBLK_DEV_PATH, strerror(-err));
		return err;
	}
	return 0;
}

int vblk_set_mem_table(struct vblk_dev *d)
{
	struct vhost_memory *m;
	int err;

	m = calloc(1, sizeof(*m) + 2 * sizeof(m->regions[0]));
	if (!m)
		return -ENOMEM;
	if (d->o.regions == 2) {
		m->nregions = 2;
		m->regions[0].guest_phys_addr = d->o.gpa_base;
		m->regions[0].memory_size = half(d);
		m->regions[0].userspace_addr = (uintptr_t)d->mem + half(d);
		m->regions[1].guest_phys_addr = d->o.gpa_base + half(d);
		m->regions[1].memory_size = half(d);
		m->regions[1].userspace_addr = (uintptr_t)d->mem;
	} else {
		m->nregions = 1;
		m->regions[0].guest_phys_addr = d->o.gpa_base;
		m->regions[0].memory_size = d->o.mem_size;
		m->regions[0].userspace_addr = (uintptr_t)d->mem;
	}
	err = vblk_ioctl(d, VHOST_SET_MEM_TABLE, m);
	free(m);
	return err;
}

static void vq_reset_shadow(struct vblk_vq *vq)
{
	for (unsigned int i = 0; i < vq->num; i++) {
		struct vblk_req *r = vq->inflight[i];

		if (r)
			vblk_req_abandon(vq, r);
	}
	memset(vq->desc, 0, 16 * vq->num);
	memset(vq->avail, 0, 6 + 2 * vq->num);
	memset(vq->used, 0, 6 + 8 * vq->num);
	for (unsigned int i = 0; i < vq->num; i++)
		vq->free_stack[i] = vq->num - 1 - i;
	vq->nfree = vq->num;
	vq->ninflight = 0;
	vq->avail_idx = vq->kicked_idx = vq->last_used = 0;
	vq->event_idx = vq->dev->acked & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	vblk_vq_set_irq(vq, vq->irq_enabled);
}

int vblk_vq_setup(struct vblk_dev *d, unsigned int idx)
{
	struct vblk_vq *vq = &d->vq[idx];
	struct vhost_vring_state s = { .index = idx };
	struct vhost_vring_addr a = { .index = idx };
	struct vhost_vring_file f = { .index = idx };
	int err;

	vq_reset_shadow(vq);
	s.num = vq->num;
	err = vblk_ioctl(d, VHOST_SET_VRING_NUM, &s);
	if (err)
		return err;
	s.num = 0;
	err = vblk_ioctl(d, VHOST_SET_VRING_BASE, &s);
	if (err)
		return err;
	a.desc_user_addr = (uintptr_t)vq->desc;
	a.avail_user_addr = (uintptr_t)vq->avail;
	a.used_user_addr = (uintptr_t)vq->used;
	a.log_guest_addr = vq->used_gpa;
	if (d->acked & (1ULL << VHOST_F_LOG_ALL))
		a.flags |= 1U << VHOST_VRING_F_LOG;
	err = vblk_ioctl(d, VHOST_SET_VRING_ADDR, &a);
	if (err)
		return err;
	f.fd = vq->kick_fd;
	err = vblk_ioctl(d, VHOST_SET_VRING_KICK, &f);
	if (err)
		return err;
	f.fd = vq->call_fd;
	err = vblk_ioctl(d, VHOST_SET_VRING_CALL, &f);
	if (err)
		return err;
	f.fd = vq->err_fd;
	return vblk_ioctl(d, VHOST_SET_VRING_ERR, &f);
}

int vblk_dev_start(struct vblk_dev *d)
{
	uint64_t f;
	int err;

	err = vblk_ioctl(d, VHOST_SET_OWNER, NULL);
	if (err) {
		vlog("SET_OWNER: %s\n", strerror(-err));
		return err;
	}
	err = vblk_ioctl(d, VHOST_GET_FEATURES, &d->features);
	if (err) {
		vlog("GET_FEATURES: %s\n", strerror(-err));
		return err;
	}
	f = d->o.set_features ? d->o.features :
		(VBLK_DEFAULT_FEATURES & d->features);
	err = vblk_ioctl(d, VHOST_SET_FEATURES, &f);
	if (err) {
		vlog("SET_FEATURES %#llx: %s\n", (unsigned long long)f,
		     strerror(-err));
		return err;
	}
	d->acked = f;
	err = vblk_set_mem_table(d);
	if (err) {
		vlog("SET_MEM_TABLE: %s\n", strerror(-err));
		return err;
	}
	for (unsigned int i = 0; i < d->o.nvqs; i++) {
		err = vblk_vq_setup(d, i);
		if (err) {
			vlog("vq %u setup: %s\n", i, strerror(-err));
			return err;
		}
	}
	return 0;
}

int vblk_open(struct vblk_dev *d, const struct vblk_opts *o)
{
	int err = vblk_dev_init(d, o);

	if (!err && !d->o.no_start)
		err = vblk_dev_start(d);
	if (err)
		vblk_close(d);
	return err;
}

void vblk_close(struct vblk_dev *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	for (int i = 0; i < VHOST_BLK_MAX_VQS; i++) {
		struct vblk_vq *vq = &d->vq[i];

		if (vq->inflight && d->bitmap)
			for (unsigned int h = 0; h < vq->num; h++)
				if (vq->inflight[h])
					vblk_req_abandon(vq, vq->inflight[h]);
		if (vq->kick_fd >= 0)
			close(vq->kick_fd);
		if (vq->call_fd >= 0)
			close(vq->call_fd);
		if (vq->err_fd >= 0)
			close(vq->err_fd);
		vq->kick_fd = vq->call_fd = vq->err_fd = -1;
		free(vq->free_stack);
		free(vq->shadow_next);
		free(vq->chain_len);
		free(vq->inflight);
		vq->free_stack = vq->shadow_next = vq->chain_len = NULL;
		vq->inflight = NULL;
	}
	if (d->mem)
		munmap(d->mem, d->o.mem_size);
	d->mem = NULL;
	free(d->bitmap);
	d->bitmap = NULL;
}

int vblk_set_backend(struct vblk_dev *d, int fd)
{
	return vblk_ioctl(d, VHOST_BLK_SET_BACKEND, &fd);
}

int vblk_set_serial(struct vblk_dev *d, const void *id, size_t len)
{
	struct vhost_blk_serial s;

	memset(&s, 0, sizeof(s));
	memcpy(s.id, id, len > sizeof(s.id) ? sizeof(s.id) : len);
	return vblk_ioctl(d, VHOST_BLK_SET_SERIAL, &s);
}

int vblk_set_readonly(struct vblk_dev *d, int ro)
{
	return vblk_ioctl(d, VHOST_BLK_SET_READONLY, &ro);
}

/* ---- notifications ------------------------------------------------------ */

static uint16_t *used_event(struct vblk_vq *vq)
{
	return &vq->avail->ring[vq->num];
}

static uint16_t *avail_event(struct vblk_vq *vq)
{
	return (uint16_t *)&vq->used->ring[vq->num];
}

void vblk_vq_set_irq(struct vblk_vq *vq, bool enable)
{
	vq->irq_enabled = enable;
	if (enable) {
		__atomic_store_n(used_event(vq), vq->last_used, __ATOMIC_RELAXED);
		__atomic_store_n(&vq->avail->flags, 0, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(used_event(vq), (uint16_t)(vq->last_used - 1),
				 __ATOMIC_RELAXED);
		__atomic_store_n(&vq->avail->flags, VRING_AVAIL_F_NO_INTERRUPT,
				 __ATOMIC_RELAXED);
	}
	/* Pairs with the device's barrier between publishing used->idx and
	 * reading used_event / avail->flags: after this, either we see its
	 * new used->idx or it sees our request for a notification.
	 */
	mb();
}

static uint64_t efd_count(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v = 0;

	if (fd < 0)
		return 0;
	if (timeout_ms > 0 && poll(&p, 1, timeout_ms) <= 0)
		return 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

uint64_t vblk_err_count(struct vblk_vq *vq, int timeout_ms)
{
	return efd_count(vq->err_fd, timeout_ms);
}

uint64_t vblk_call_count(struct vblk_vq *vq, int timeout_ms)
{
	uint64_t v = efd_count(vq->call_fd, timeout_ms);

	vq->calls += v;
	return v;
}

int vblk_kick(struct vblk_vq *vq, bool force)
{
	uint16_t old = vq->kicked_idx, new = vq->avail_idx;
	bool need;
	uint64_t one = 1;

	/* avail->idx was published (release); order it before reading the
	 * device's suppression state, pairs with the device re-checking the
	 * avail ring after it re-enables notifications.
	 */
	mb();
	if (vq->event_idx)
		need = vring_need_event(__atomic_load_n(avail_event(vq),
							__ATOMIC_RELAXED),
					new, old);
	else
		need = !(__atomic_load_n(&vq->used->flags, __ATOMIC_RELAXED) &
			 VRING_USED_F_NO_NOTIFY);
	vq->kicked_idx = new;
	if (!(need || force || vq->kick_always))
		return 0;
	if (write(vq->kick_fd, &one, sizeof(one)) != sizeof(one))
		vlog("kick vq %u: %s\n", vq->idx, strerror(errno));
	vq->kicks++;
	return 1;
}

/* ---- descriptors -------------------------------------------------------- */

int vblk_desc_get(struct vblk_vq *vq, unsigned int n, uint16_t *idx)
{
	if (n > vq->nfree)
		return -ENOSPC;
	for (unsigned int i = 0; i < n; i++)
		idx[i] = vq->free_stack[--vq->nfree];
	return 0;
}

void vblk_desc_set(struct vblk_vq *vq, uint16_t i, uint64_t addr, uint32_t len,
		   uint16_t flags, uint16_t next)
{
	struct vring_desc *dsc = &vq->desc[i % vq->num];

	dsc->addr = addr;
	dsc->len = len;
	dsc->flags = flags;
	dsc->next = next;
}

static void publish(struct vblk_vq *vq, struct vblk_req *r, uint16_t head)
{
	vq->inflight[head] = r;
	vq->ninflight++;
	vq->submitted++;
	r->vq = vq;
	r->head = head;
	r->inflight = true;
	r->done = false;
	vq->avail->ring[vq->avail_idx % vq->num] = head;
	vq->avail_idx++;
	/* Ring entry and descriptors before the index (device acquires). */
	__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
}

int vblk_submit_raw(struct vblk_vq *vq, struct vblk_req *r, uint16_t head,
		    const uint16_t *chain, unsigned int n)
{
	r->raw = true;
	vq->chain_len[head] = n;
	for (unsigned int i = 0; i + 1 < n; i++)
		vq->shadow_next[chain[i]] = chain[i + 1];
	publish(vq, r, head);
	return 0;
}

/* ---- requests ------------------------------------------------------------ */

const struct vblk_named_layout vblk_layouts[] = {
	{ "classic", { 0 } },
	{ "one-desc-per-stream", { .nrd = 0, .nwr = 0 } },
	{ "hdr-3+13", { .nrd = 2, .rd = { 3, 13 }, .nwr = 1, .wr = { 4096 } } },
	{ "hdr-bytes", { .nrd = 16, .rd = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 } } },
	{ "hdr-merged-data-split", { .nrd = 3, .rd = { 17, 511, 1 },
				    .nwr = 3, .wr = { 1, 511, 1 } } },
	{ "status-merged", { .nrd = 1, .rd = { 16 }, .nwr = 1, .wr = { 4095 } } },
	{ "odd-cuts", { .nrd = 5, .rd = { 5, 100, 7, 1000, 3 },
		       .nwr = 5, .wr = { 7, 1000, 3, 5, 100 } } },
	{ "zero-len-descs", { .nrd = 3, .rd = { 16, 0, 2048 },
			     .nwr = 3, .wr = { 0, 2048, 0 } } },
	{ "misaligned-1", { .offset = 1, .nrd = 1, .rd = { 16 }, .nwr = 1, .wr = { 4096 } } },
	{ "page-crossing", { .offset = 4090, .nrd = 2, .rd = { 3, 13 },
			    .nwr = 2, .wr = { 1000, 3096 } } },
	{ "contig", { .flags = VBLK_L_CONTIG, .offset = 7, .nrd = 1, .rd = { 16 },
		     .nwr = 1, .wr = { 4096 } } },
	{ "contig-gap-odd", { .flags = VBLK_L_CONTIG, .offset = 4093, .gap = 3,
			     .nrd = 4, .rd = { 1, 2, 13, 333 },
			     .nwr = 3, .wr = { 333, 1, 2 } } },
};

const unsigned int vblk_nlayouts = sizeof(vblk_layouts) / sizeof(vblk_layouts[0]);

void vblk_req_init(struct vblk_req *r, uint32_t type, uint64_t sector)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	r->sector = sector;
	r->hdr_len = 16;
	r->status_len = 1;
	r->status = VBLK_STATUS_UNSET;
}

static void req_free_mem(struct vblk_dev *d, struct vblk_req *r)
{
	for (unsigned int i = 0; i < r->nallocs; i++)
		vblk_free(d, r->allocs[i], r->alloc_lens[i]);
	free(r->allocs);
	free(r->alloc_lens);
	free(r->segs);
	r->allocs = NULL;
	r->alloc_lens = NULL;
	r->segs = NULL;
	r->nallocs = r->nsegs = 0;
	r->itable_gpa = 0;
}

static uint64_t req_alloc(struct vblk_dev *d, struct vblk_req *r, size_t len,
			  uint32_t off)
{
	uint64_t g = vblk_alloc(d, len, off);

	if (!g)
		return 0;
	r->allocs[r->nallocs] = g;
	r->alloc_lens[r->nallocs++] = len;
	return g;
}

/* Cut a stream of len bytes into descriptor lengths; returns count or -1. */
static int cut(const struct vblk_layout *l, bool rd, size_t len,
	       const size_t *classic, uint32_t *out, size_t max)
{
	size_t n = 0, used = 0;

	if (!l) {
		for (int i = 0; i < 2; i++)
			if (classic[i])
				out[n++] = classic[i];
		return n;
	}
	if (l->flags & VBLK_L_BYTES) {
		if (len > max)
			return -1;
		for (size_t i = 0; i < len; i++)
			out[i] = 1;
		return len;
	}
	for (int i = 0; i < (rd ? l->nrd : l->nwr) && used < len; i++) {
		uint32_t c = rd ? l->rd[i] : l->wr[i];

		if (c > len - used)
			c = len - used;	/* truncated at the stream's end */
		if (n >= max)
			return -1;
		out[n++] = c;
		used += c;
	}
	if (used < len) {
		if (n >= max)
			return -1;
		out[n++] = len - used;
	}
	return n;
}

int vblk_submit(struct vblk_vq *vq, struct vblk_req *r)
{
	struct vblk_dev *d = vq->dev;
	const struct vblk_layout *l = r->layout;
	struct virtio_blk_outhdr hdr;
	size_t hl = r->hdr_len > 16 ? 16 : r->hdr_len;
	size_t rlen = hl + r->out_len, wlen = r->in_len + r->status_len;
	size_t classic_r[2] = { hl, r->out_len };
	size_t classic_w[2] = { r->in_len, r->status_len };
	size_t maxd = rlen + wlen + 4, pos, total;
	uint32_t *lens = calloc(maxd, sizeof(uint32_t));
	uint8_t *rs = malloc(rlen + 1), *ws = malloc(wlen + 1);
	uint16_t *chain = NULL;
	int nr, nw, n, err = -ENOSPC;
	bool indirect = l && (l->flags & VBLK_L_INDIRECT);
	bool contig = l && (l->flags & VBLK_L_CONTIG);
	uint32_t off = l ? l->offset : 0, gap = l ? l->gap : 0;
	uint64_t base = 0;

	r->done = false;
	r->raw = false;
	r->used_len = 0;
	r->status = VBLK_STATUS_UNSET;
	r->segs = NULL;
	r->allocs = NULL;
	r->nallocs = 0;
	if (!lens || !rs || !ws)
		goto out;
	err = -EINVAL;
	nr = cut(l, true, rlen, classic_r, lens, maxd);
	if (nr < 0)
		goto out;
	nw = cut(l, false, wlen, classic_w, lens + nr, maxd - nr);
	if (nw < 0)
		goto out;
	n = nr + nw;
	err = -ENOSPC;
	if (!n || (!indirect && (unsigned int)n > vq->nfree))
		goto out;

	r->segs = calloc(n, sizeof(*r->segs));
	r->allocs = calloc(n + 2, sizeof(*r->allocs));
	r->alloc_lens = calloc(n + 2, sizeof(*r->alloc_lens));
	chain = calloc(n, sizeof(*chain));
	if (!r->segs || !r->allocs || !r->alloc_lens || !chain)
		goto fail;
	r->nsegs = n;

	/* the streams */
	hdr.type = r->type;
	hdr.ioprio = r->ioprio;
	hdr.sector = r->sector;
	memcpy(rs, &hdr, hl);
	if (r->out_len)
		memcpy(rs + hl, r->out, r->out_len);
	memset(ws, DATA_POISON, r->in_len);
	memset(ws + r->in_len, VBLK_STATUS_UNSET, r->status_len);

	/* place the pieces */
	total = 0;
	for (int i = 0; i < n; i++)
		total += lens[i] + gap;
	if (contig) {
		base = req_alloc(d, r, total, off);
		if (!base)
			goto fail;
	}
	pos = 0;
	for (int i = 0; i < n; i++) {
		/* order: readable then writable unless WR_FIRST */
		int k = i;

		if (l && (l->flags & VBLK_L_WR_FIRST))
			k = i < nw ? nr + i : i - nw;
		r->segs[i].len = lens[k];
		r->segs[i].write = k >= nr;
		if (contig) {
			r->segs[i].gpa = base + pos;
			pos += lens[k] + gap;
		} else {
			r->segs[i].gpa = req_alloc(d, r, lens[k], off);
			if (!r->segs[i].gpa)
				goto fail;
		}
	}
	/* fill readable pieces, poison writable ones, in stream order */
	{
		size_t rp = 0, wp = 0;

		for (int i = 0; i < n; i++) {
			struct vblk_seg *s = &r->segs[i];

			if (s->write) {
				vblk_write_guest(d, s->gpa, ws + wp, s->len);
				wp += s->len;
			} else {
				vblk_write_guest(d, s->gpa, rs + rp, s->len);
				rp += s->len;
			}
		}
	}

	if (indirect) {
		struct vring_desc *t = calloc(n, sizeof(*t));
		uint16_t head;

		if (!t)
			goto fail;
		r->itable_gpa = req_alloc(d, r, 16 * n, 0);
		if (!r->itable_gpa || vblk_desc_get(vq, 1, &head)) {
			free(t);
			goto fail;
		}
		for (int i = 0; i < n; i++) {
			t[i].addr = r->segs[i].gpa;
			t[i].len = r->segs[i].len;
			t[i].flags = (r->segs[i].write ? VRING_DESC_F_WRITE : 0) |
				     (i + 1 < n ? VRING_DESC_F_NEXT : 0);
			t[i].next = i + 1 < n ? i + 1 : 0;
		}
		vblk_write_guest(d, r->itable_gpa, t, 16 * n);
		free(t);
		vblk_desc_set(vq, head, r->itable_gpa, 16 * n,
			      VRING_DESC_F_INDIRECT, 0);
		vq->chain_len[head] = 1;
		publish(vq, r, head);
	} else {
		vblk_desc_get(vq, n, chain);
		for (int i = 0; i < n; i++) {
			bool more = i + 1 < n;

			vblk_desc_set(vq, chain[i], r->segs[i].gpa, r->segs[i].len,
				      (r->segs[i].write ? VRING_DESC_F_WRITE : 0) |
				      (more ? VRING_DESC_F_NEXT : 0),
				      more ? chain[i + 1] : 0);
			if (more)
				vq->shadow_next[chain[i]] = chain[i + 1];
		}
		vq->chain_len[chain[0]] = n;
		publish(vq, r, chain[0]);
	}
	err = 0;
	goto out;
fail:
	req_free_mem(d, r);
out:
	free(chain);
	free(lens);
	free(rs);
	free(ws);
	return err;
}

static void release_descs(struct vblk_vq *vq, uint16_t head)
{
	uint16_t i = head;

	for (unsigned int k = 0; k < vq->chain_len[head]; k++) {
		vq->free_stack[vq->nfree++] = i;
		i = vq->shadow_next[i];
	}
	vq->chain_len[head] = 0;
}

void vblk_req_abandon(struct vblk_vq *vq, struct vblk_req *r)
{
	if (r->inflight && vq->inflight[r->head] == r) {
		vq->inflight[r->head] = NULL;
		vq->ninflight--;
		release_descs(vq, r->head);
	}
	r->inflight = false;
	req_free_mem(vq->dev, r);
}

static void gather(struct vblk_vq *vq, struct vblk_req *r)
{
	size_t wlen = r->in_len + r->status_len, wp = 0;
	uint8_t *ws;

	if (r->raw || !wlen)
		return;
	ws = malloc(wlen);
	if (!ws)
		return;
	for (unsigned int i = 0; i < r->nsegs; i++)
		if (r->segs[i].write) {
			vblk_read_guest(vq->dev, r->segs[i].gpa, ws + wp,
					r->segs[i].len);
			wp += r->segs[i].len;
		}
	if (r->in_len && r->in)
		memcpy(r->in, ws, r->in_len);
	r->status = ws[wlen - 1];
	free(ws);
}

int vblk_reap(struct vblk_vq *vq)
{
	int n = 0;

	for (;;) {
		uint16_t uidx = __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);
		struct vring_used_elem e;
		struct vblk_req *r;

		if (uidx == vq->last_used) {
			if (vq->irq_enabled && vq->event_idx) {
				__atomic_store_n(used_event(vq), vq->last_used,
						 __ATOMIC_RELAXED);
				/* used_event before re-reading used->idx;
				 * pairs with the device's barrier between
				 * used->idx and reading used_event
				 */
				mb();
				if (__atomic_load_n(&vq->used->idx,
						    __ATOMIC_ACQUIRE) != uidx)
					continue;
			}
			break;
		}
		if ((uint16_t)(uidx - vq->last_used) > vq->num) {
			vlog("vq %u: used->idx %u runs %u ahead of %u (> num)\n",
			     vq->idx, uidx, (uint16_t)(uidx - vq->last_used),
			     vq->last_used);
			vq->bad_used++;
		}
		e = vq->used->ring[vq->last_used % vq->num];
		vq->last_used++;
		if (e.id >= vq->num || !vq->inflight[e.id]) {
			vlog("vq %u: used entry id %u len %u: not in flight\n",
			     vq->idx, e.id, e.len);
			vq->bad_used++;
			continue;
		}
		r = vq->inflight[e.id];
		vq->inflight[e.id] = NULL;
		vq->ninflight--;
		release_descs(vq, e.id);
		r->used_len = e.len;
		if (!r->raw && e.len > r->in_len + r->status_len) {
			vlog("vq %u head %u (%s): used.len %u > writable %zu\n",
			     vq->idx, e.id, r->name ? r->name : "-", e.len,
			     r->in_len + r->status_len);
			vq->bad_used++;
		}
		gather(vq, r);
		/* a request with a status byte: the device wrote it (used.len
		 * >= 1) and it is one of OK / IOERR / UNSUPP
		 */
		if (!r->raw && r->status_len &&
		    (!e.len || r->status > VIRTIO_BLK_S_UNSUPP)) {
			vlog("vq %u head %u (%s): used.len %u status %u\n",
			     vq->idx, e.id, r->name ? r->name : "-", e.len,
			     r->status);
			vq->bad_used++;
		}
		r->inflight = false;
		req_free_mem(vq->dev, r);
		r->done = true;
		vq->completed++;
		n++;
		if (r->complete)
			r->complete(r);
	}
	return n;
}

static const char *type_name(uint32_t t)
{
	switch (t) {
	case VIRTIO_BLK_T_IN: return "IN";
	case VIRTIO_BLK_T_OUT: return "OUT";
	case VIRTIO_BLK_T_FLUSH: return "FLUSH";
	case VIRTIO_BLK_T_GET_ID: return "GET_ID";
	case VIRTIO_BLK_T_DISCARD: return "DISCARD";
	case VIRTIO_BLK_T_WRITE_ZEROES: return "WRITE_ZEROES";
	default: return "?";
	}
}

void vblk_dump_inflight(struct vblk_vq *vq, FILE *f)
{
	fprintf(f, "# vq %u: %u in flight, avail %u used %u (device used->idx %u) last kick at %u\n",
		vq->idx, vq->ninflight, vq->avail_idx, vq->last_used,
		__atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE), vq->kicked_idx);
	for (unsigned int h = 0; h < vq->num; h++) {
		struct vblk_req *r = vq->inflight[h];

		if (r)
			fprintf(f, "#   stuck: vq %u head %u %s type %u (%s) sector %llu out %zu in %zu\n",
				vq->idx, h, r->name ? r->name : "-", r->type,
				type_name(r->type), (unsigned long long)r->sector,
				r->out_len, r->in_len);
	}
}

/* Wait until cond(vq, r) holds; see vblk_guest.h for the strictness. */
static int wait_cond(struct vblk_vq *vq, struct vblk_req *r, int timeout_ms,
		     bool (*cond)(struct vblk_vq *, struct vblk_req *, int),
		     const char *what)
{
	uint64_t deadline = vblk_now_ms() + timeout_ms;
	int got = 0;

	for (;;) {
		int64_t rem;

		got += vblk_reap(vq);
		if (cond(vq, r, got))
			return 0;
		rem = (int64_t)(deadline - vblk_now_ms());
		if (rem <= 0)
			break;
		if (!vq->irq_enabled) {
			usleep(200);
			continue;
		}
		vblk_vq_set_irq(vq, true);
		if (__atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE) !=
		    vq->last_used)
			continue;
		if (vblk_call_count(vq, rem))
			continue;
		/* no call: give a late one a grace period, then judge */
		if (vblk_call_count(vq, 200))
			continue;
		if (__atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE) !=
		    vq->last_used) {
			vlog("vq %u: LOST NOTIFICATION: used->idx %u, last seen %u, no call within %d ms (waiting for %s)\n",
			     vq->idx, vq->used->idx, vq->last_used, timeout_ms, what);
			vblk_dump_inflight(vq, stderr);
			vblk_reap(vq);
			return -ENOTRECOVERABLE;
		}
	}
	vlog("vq %u: timeout after %d ms waiting for %s\n", vq->idx, timeout_ms,
	     what);
	vblk_dump_inflight(vq, stderr);
	return -ETIMEDOUT;
}

static bool cond_req(struct vblk_vq *vq, struct vblk_req *r, int got)
{
	(void)vq; (void)got;
	return r->done;
}

static bool cond_all(struct vblk_vq *vq, struct vblk_req *r, int got)
{
	(void)r; (void)got;
	return vq->ninflight == 0;
}

static bool cond_any(struct vblk_vq *vq, struct vblk_req *r, int got)
{
	(void)vq; (void)r;
	return got > 0;
}

int vblk_wait_req(struct vblk_vq *vq, struct vblk_req *r, int timeout_ms)
{
	char what[128];

	snprintf(what, sizeof(what), "request %s (head %u, %s sector %llu)",
		 r->name ? r->name : "-", r->head, type_name(r->type),
		 (unsigned long long)r->sector);
	return wait_cond(vq, r, timeout_ms, cond_req, what);
}

int vblk_wait_all(struct vblk_vq *vq, int timeout_ms)
{
	return wait_cond(vq, NULL, timeout_ms, cond_all, "all requests");
}

int vblk_wait_any(struct vblk_vq *vq, int timeout_ms)
{
	return wait_cond(vq, NULL, timeout_ms, cond_any, "any request");
}

int vblk_do(struct vblk_vq *vq, struct vblk_req *r, int timeout_ms)
{
	int err = vblk_submit(vq, r);

	if (err) {
		vlog("vq %u: submit %s: %s\n", vq->idx, r->name ? r->name : "-",
		     strerror(-err));
		return err;
	}
	vblk_kick(vq, true);
	return vblk_wait_req(vq, r, timeout_ms);
}

/* ---- patterns ------------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static void fill_sector(uint8_t *s, uint64_t lba, uint64_t seed)
{
	uint64_t x = mix(lba * 0x9e3779b97f4a7c15ULL ^ seed);

	memcpy(s, &lba, 8);
	memcpy(s + 8, &seed, 8);
	for (int i = 16; i < VBLK_SECTOR; i += 8) {
		x = mix(x + i);
		memcpy(s + i, &x, 8);
	}
}

void vblk_pattern_fill(void *buf, size_t len, uint64_t lba, uint64_t seed)
{
	uint8_t *b = buf;

	for (size_t i = 0; i + VBLK_SECTOR <= len; i += VBLK_SECTOR)
		fill_sector(b + i, lba + i / VBLK_SECTOR, seed);
}

long vblk_pattern_check(const void *buf, size_t len, uint64_t lba, uint64_t seed,
			char *why, size_t whylen)
{
	const uint8_t *b = buf;
	uint8_t want[VBLK_SECTOR];

	for (size_t i = 0; i + VBLK_SECTOR <= len; i += VBLK_SECTOR) {
		uint64_t glba, gseed;
		int k;

		fill_sector(want, lba + i / VBLK_SECTOR, seed);
		if (!memcmp(want, b + i, VBLK_SECTOR))
			continue;
		memcpy(&glba, b + i, 8);
		memcpy(&gseed, b + i + 8, 8);
		for (k = 0; k < VBLK_SECTOR && want[k] == b[i + k]; k++)
			;
		if (why)
			snprintf(why, whylen,
				 "sector %zu (lba %llu): found stamp lba %llu seed %llu, first bad byte %d (%#x, want %#x)",
				 i / VBLK_SECTOR,
				 (unsigned long long)(lba + i / VBLK_SECTOR),
				 (unsigned long long)glba,
				 (unsigned long long)gseed, k, b[i + k], want[k]);
		return i / VBLK_SECTOR;
	}
	if (why && whylen)
		why[0] = 0;
	return -1;
}
