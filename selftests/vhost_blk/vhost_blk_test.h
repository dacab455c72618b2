/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers of the vhost-blk kselftests (vhost_blk_test.c): backends from the
 * environment, a device context (struct ctx) with its backend, one-request
 * I/O with checks, and the machinery some sections share (descriptor
 * layouts, broken chains, requests held in flight by dm-delay, dirty-log
 * checks).  Everything here reports through the kselftest harness
 * (_metadata); the rules themselves are the cases.
 */
#ifndef VHOST_BLK_TEST_H
#define VHOST_BLK_TEST_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "vblk_guest.h"
#define WAIT_MS		15000	/* TCG is slow; a hang still fails */
#define SHORT_MS	300
#define KiB		1024UL
#define MiB		(1024UL * 1024)

#define F(x)		(1ULL << (x))

/* ---- environment ------------------------------------------------------ */

static const char *env_dev(const char *env, const char *def)
{
	const char *p = getenv(env);

	return p && *p ? p : def;
}

#define NEED_BDEV(var, env, def) do {					\
	var = env_dev(env, def);					\
	if (!var)							\
		SKIP(return, "%s not set: backend not set up", env);	\
	if (access(var, F_OK))						\
		SKIP(return, "%s=%s absent", env, var);			\
} while (0)

static uint64_t seed_base;

static uint64_t new_seed(void)
{
	if (!seed_base)
		seed_base = (vblk_now_ms() << 16) ^ getpid();
	return ++seed_base;
}

/* In a ctl case: attach the device of env in place of the RAM disk. */
#define ATTACH_ENV(var, env) do {					\
	NEED_BDEV(var, env, NULL);					\
	ctx_attach(_metadata, &self->c, var, O_RDWR);			\
} while (0)

/* SKIP unless the queue attribute attr of block device dev is op want. */
#define NEED_QUEUE_ATTR(dev, attr, op, want) do {			\
	long _v = sysfs_long(dev, "queue/" attr);			\
									\
	if (!(_v op (want)))						\
		SKIP(return, "%s: queue/%s is %ld", dev, attr, _v);	\
} while (0)

/* ---- backend helpers ------------------------------------------------------ */

static int bdev_open(struct __test_metadata *_metadata, const char *path,
		     int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	ASSERT_LE(0, fd) TH_LOG("open %s: %s", path, strerror(errno));
	return fd;
}

/* Capacity in sectors of a block device or a regular file. */
static uint64_t backend_sectors(struct __test_metadata *_metadata, int fd)
{
	uint64_t bytes = 0;
	struct stat st;

	ASSERT_EQ(0, fstat(fd, &st));
	if (!S_ISBLK(st.st_mode))
		return st.st_size / 512;
	ASSERT_EQ(0, ioctl(fd, BLKGETSIZE64, &bytes));
	return bytes / 512;
}

/* O_DIRECT access to the backing device, bypassing vhost-blk. */
static void bdev_rw(struct __test_metadata *_metadata, const char *path,
		    bool write, uint64_t sector, void *buf, size_t len)
{
	void *a = vblk_aligned(len);
	int fd = bdev_open(_metadata, path, (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
	ssize_t n;

	ASSERT_NE(NULL, a);
	if (write) {
		memcpy(a, buf, len);
		n = pwrite(fd, a, len, sector * 512);
	} else {
		n = pread(fd, a, len, sector * 512);
		memcpy(buf, a, len);
	}
	ASSERT_EQ((ssize_t)len, n) TH_LOG("%s %s sector %llu len %zu: %s",
		write ? "pwrite" : "pread", path,
		(unsigned long long)sector, len, strerror(errno));
	close(fd);
	free(a);
}

static bool is_file(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISREG(st.st_mode);
}

/*
 * Read [sector, sector + len) of the regular file path from dev, the
 * device below its filesystem (same sectors: a dm-delay's table), at the
 * extents FIEMAP reports: what has reached that device, bypassing the
 * filesystem, the page cache and the dm-delay queue.
 */
static void file_read_under(struct __test_metadata *_metadata, const char *path,
			    const char *dev, uint64_t sector, uint8_t *buf,
			    size_t len)
{
	struct {
		struct fiemap fm;
		struct fiemap_extent fe[32];
	} m = { .fm = { .fm_start = sector * 512, .fm_length = len,
			.fm_extent_count = 32 } };
	uint64_t pos = sector * 512, end = pos + len;
	int fd = bdev_open(_metadata, path, O_RDONLY);

	ASSERT_EQ(0, ioctl(fd, FS_IOC_FIEMAP, &m.fm)) TH_LOG("FIEMAP %s", path);
	close(fd);
	for (unsigned int i = 0; i < m.fm.fm_mapped_extents && pos < end; i++) {
		const struct fiemap_extent *fe = &m.fe[i];
		uint64_t n = fe->fe_logical + fe->fe_length;

		ASSERT_FALSE(fe->fe_flags & (FIEMAP_EXTENT_DELALLOC |
					     FIEMAP_EXTENT_UNKNOWN |
					     FIEMAP_EXTENT_UNWRITTEN))
			TH_LOG("%s: extent at %llu not written (flags %#x)", path,
			       (unsigned long long)fe->fe_logical, fe->fe_flags);
		ASSERT_GE(pos, fe->fe_logical) TH_LOG("%s: hole at %llu", path,
						      (unsigned long long)pos);
		if (n <= pos)
			continue;
		n = (n < end ? n : end) - pos;
		bdev_rw(_metadata, dev, false,
			(fe->fe_physical + pos - fe->fe_logical) / 512,
			buf + pos - sector * 512, n);
		pos += n;
	}
	ASSERT_EQ(end, pos) TH_LOG("%s: not mapped from %llu", path,
				   (unsigned long long)pos);
}

/*
 * The pattern of (sector, len, seed) is on the backend path; with under
 * (the device below a dm-delay), read there, directly: a block device at
 * the same sectors, a file at its extents.
 */
static void landed_check(struct __test_metadata *_metadata, const char *path,
			 const char *under, uint64_t sector, size_t len,
			 uint64_t seed, const char *what)
{
	char why[256];
	void *b = malloc(len);
	long bad;

	ASSERT_NE(NULL, b);
	if (under && is_file(path))
		file_read_under(_metadata, path, under, sector, b, len);
	else
		bdev_rw(_metadata, under ? under : path, false, sector, b, len);
	bad = vblk_pattern_check(b, len, sector, seed, why, sizeof(why));
	EXPECT_EQ(-1, bad) TH_LOG("%s: backend %s%s%s: %s", what, path,
				  under ? " under " : "", under ? under : "", why);
	free(b);
}

static void bdev_check(struct __test_metadata *_metadata, const char *path,
		       uint64_t sector, size_t len, uint64_t seed, const char *what)
{
	landed_check(_metadata, path, NULL, sector, len, seed, what);
}

/* Drop the page cache of path (a file read must go to its device). */
static void uncache(struct __test_metadata *_metadata, const char *path)
{
	int fd = bdev_open(_metadata, path, O_RDONLY);

	EXPECT_EQ(0, posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
	close(fd);
}

static void bdev_fill(struct __test_metadata *_metadata, const char *path,
		      uint64_t sector, size_t len, uint64_t seed)
{
	void *b = malloc(len);

	ASSERT_NE(NULL, b);
	vblk_pattern_fill(b, len, sector, seed);
	bdev_rw(_metadata, path, true, sector, b, len);
	free(b);
}

static long sysfs_long(const char *bdev, const char *attr)
{
	char p[256], buf[64];
	const char *name = strrchr(bdev, '/');
	struct stat st;
	long v = -1;
	FILE *f;

	/* resolve /dev/mapper/x symlinks to the dm-N node */
	if (stat(bdev, &st))
		return -1;
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/%s", major(st.st_rdev),
		 minor(st.st_rdev), attr);
	(void)name;
	f = fopen(p, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f))
		v = strtol(buf, NULL, 0);
	fclose(f);
	return v;
}

/* Field n (1-based) of /sys/dev/block/M:m/stat: 12 discards, 16 flushes. */
static long long bdev_stat(const char *bdev, int n)
{
	char p[256], buf[512], *tok, *save = NULL;
	long long v = -1;
	struct stat st;
	FILE *f;

	if (stat(bdev, &st))
		return -1;
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/stat", major(st.st_rdev),
		 minor(st.st_rdev));
	f = fopen(p, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f)) {
		tok = strtok_r(buf, " \t\n", &save);
		for (int i = 1; tok && i < n; i++)
			tok = strtok_r(NULL, " \t\n", &save);
		if (tok)
			v = atoll(tok);
	}
	fclose(f);
	return v;
}

/* ---- device helpers ------------------------------------------------------ */

struct ctx {
	struct vblk_dev d;
	const char *path;	/* backend (block device or regular file) */
	int bfd;		/* its fd, -1 if none */
	int oflags;		/* open flags of bfd */
	bool attached;		/* bfd is the device's backend */
	uint64_t cap;		/* sectors */
	uint64_t feat_off;	/* default features not acked (ctx_reopen) */
};

/* Open path (a block device or a regular file) as c's backend, no attach. */
static void ctx_backend_open(struct __test_metadata *_metadata, struct ctx *c,
			     const char *path, int oflags)
{
	if (c->bfd >= 0)
		close(c->bfd);
	c->path = path;
	c->oflags = oflags;
	c->attached = false;
	c->bfd = bdev_open(_metadata, path, oflags);
	c->cap = backend_sectors(_metadata, c->bfd);
}

/* Open path with oflags and attach it (SET_BACKEND), replacing c's backend. */
static void ctx_attach(struct __test_metadata *_metadata, struct ctx *c,
		       const char *path, int oflags)
{
	int err;

	ctx_backend_open(_metadata, c, path, oflags);
	err = vblk_set_backend(&c->d, c->bfd);
	ASSERT_EQ(0, err) TH_LOG("SET_BACKEND %s: %s", path, strerror(-err));
	c->attached = true;
}

static void ctx_open_opts(struct __test_metadata *_metadata, struct ctx *c,
			  const char *path, int oflags, const struct vblk_opts *o)
{
	int err;

	memset(c, 0, sizeof(*c));
	c->bfd = -1;
	err = vblk_open(&c->d, o);
	ASSERT_EQ(0, err) TH_LOG("vblk_open: %s", strerror(-err));
	if (path)
		ctx_attach(_metadata, c, path, oflags);
}

static void ctx_open(struct __test_metadata *_metadata, struct ctx *c,
		     const char *path, unsigned int nvqs)
{
	struct vblk_opts o = VBLK_OPTS_DEFAULT;

	o.nvqs = nvqs;
	ctx_open_opts(_metadata, c, path, O_RDWR, &o);
}

static void ctx_close(struct ctx *c)
{
	vblk_close(&c->d);
	if (c->bfd >= 0)
		close(c->bfd);
	c->bfd = -1;
}

/*
 * A new device with options o in place of c's, on the same backend, opened
 * again with c->oflags (so a case may change them first) and attached if
 * it was.
 */
/* o, acking the default features without c->feat_off unless o sets them. */
static struct vblk_opts ctx_opts(const struct ctx *c, const struct vblk_opts *o)
{
	struct vblk_opts r = *o;

	if (c->feat_off && !r.set_features) {
		r.set_features = true;
		r.features = VBLK_DEFAULT_FEATURES & ~c->feat_off;
	}
	return r;
}

static void ctx_reopen(struct __test_metadata *_metadata, struct ctx *c,
		       const struct vblk_opts *o)
{
	struct vblk_opts ro = ctx_opts(c, o);
	struct ctx old = *c;

	ctx_close(c);
	ctx_open_opts(_metadata, c, NULL, 0, &ro);
	c->feat_off = old.feat_off;
	if (old.path && old.attached)
		ctx_attach(_metadata, c, old.path, old.oflags);
	else if (old.path)
		ctx_backend_open(_metadata, c, old.path, old.oflags);
}

/* ctx_reopen() acking features instead of the default set. */
static void ctx_reopen_features(struct __test_metadata *_metadata,
				struct ctx *c, uint64_t features)
{
	struct vblk_opts o = VBLK_OPTS_DEFAULT;

	o.set_features = true;
	o.features = features;
	ctx_reopen(_metadata, c, &o);
}

/* ctx_reopen() with nvqs queues. */
static void ctx_reopen_queues(struct __test_metadata *_metadata, struct ctx *c,
			      unsigned int nvqs)
{
	struct vblk_opts o = VBLK_OPTS_DEFAULT;

	o.nvqs = nvqs;
	ctx_reopen(_metadata, c, &o);
}

/* ctx_reopen_features(), then notifications of queue 0 off, none pending. */
static void notifications_off(struct __test_metadata *_metadata,
			      struct ctx *c, uint64_t features)
{
	ctx_reopen_features(_metadata, c, features);
	vblk_vq_set_irq(&c->d.vq[0], false);
	vblk_call_count(&c->d.vq[0], 0);
}

/* ctx_reopen() with the backend open but not attached. */
static void ctx_reopen_detached(struct __test_metadata *_metadata, struct ctx *c)
{
	struct vblk_opts o = VBLK_OPTS_DEFAULT;

	c->attached = false;
	ctx_reopen(_metadata, c, &o);
}

static bool backend_is_file(const struct ctx *c)
{
	struct stat st;

	return !fstat(c->bfd, &st) && S_ISREG(st.st_mode);
}

/* ---- fixtures ------------------------------------------------------------- */

/*
 * Why a fixture cannot be set up (the device or the backend named by env,
 * default def, is missing), or NULL.
 */
static const char *fixture_missing(const char *env, const char *def)
{
	static char why[160];
	const char *p;

	if (access(VBLK_DEV_PATH, F_OK))
		return VBLK_DEV_PATH " absent: vhost_blk.ko not loaded";
	p = env_dev(env, def);
	if (!p) {
		snprintf(why, sizeof(why), "%s not set: backend not set up", env);
		return why;
	}
	if (access(p, W_OK)) {
		snprintf(why, sizeof(why), "%s=%s absent or not writable", env, p);
		return why;
	}
	return NULL;
}

/*
 * SKIP from a FIXTURE_SETUP.  The 6.1 harness runs the case after a setup
 * that skipped (it only stops on a failure), so there the skip jumps back
 * into the harness the way a failed ASSERT does.
 */
#ifdef FIXTURE_TEARDOWN_PARENT
#define SETUP_SKIP(why)	SKIP(return, "%s", why)
#else
#define SETUP_SKIP(why)	SKIP(longjmp(_metadata->env, 1), "%s", why)
#endif

/*
 * A fixture whose state is a device context (self->c, self->vq its queue
 * 0; self->under for dm-delay), closed by the teardown.
 */
#define DEVICE_FIXTURE(name)						\
	FIXTURE(name) {							\
		struct ctx c;						\
		struct vblk_vq *vq;					\
		const char *under;					\
	};								\
	FIXTURE_TEARDOWN(name)						\
	{								\
		ctx_close(&self->c);					\
	}								\
	struct device_fixture_##name

/*
 * The common fixture set-up: a device with one queue and the backend of
 * env (default def) opened with oflags, attached if attach.  Skips when
 * the device or the backend is missing.
 */
#define FIXTURE_OPEN(env, def, oflags, attach) do {			\
	const char *_why = fixture_missing(env, def);			\
									\
	if (_why)							\
		SETUP_SKIP(_why);					\
	ctx_open(_metadata, &self->c, NULL, 1);				\
	self->vq = &self->c.d.vq[0];					\
	ctx_backend_open(_metadata, &self->c, env_dev(env, def), oflags); \
	if (attach)							\
		ctx_attach(_metadata, &self->c, self->c.path, oflags);	\
} while (0)

/* The backend of a fixture on dm-delay (its variant). */
struct delay_backend {
	const char *env;	/* the backend, on dm-delay */
	const char *under;	/* the device below the dm-delay */
	int oflags;
	uint64_t feat_off;	/* default features not acked */
};

/*
 * The set-up of a fixture on dm-delay: backend b attached to a device
 * acking the default features but b->feat_off; self->under set.
 */
#define DELAY_SETUP(b) do {						\
	const struct delay_backend *_b = (b);				\
	struct vblk_opts _o = VBLK_OPTS_DEFAULT;			\
	const char *_w = fixture_missing(_b->env, NULL) ?:		\
			 fixture_missing(_b->under, NULL);		\
									\
	if (_w)								\
		SETUP_SKIP(_w);						\
	self->under = env_dev(_b->under, NULL);				\
	FIXTURE_OPEN(_b->env, NULL, _b->oflags, false);			\
	self->c.feat_off = _b->feat_off;				\
	if (_b->feat_off)						\
		ctx_reopen(_metadata, &self->c, &_o);			\
	ctx_attach(_metadata, &self->c, self->c.path, _b->oflags);	\
} while (0)

/* A device fixture on dm-delay whose variants are struct delay_backend. */
#define DELAY_FIXTURE(name)						\
	DEVICE_FIXTURE(name);						\
	FIXTURE_VARIANT(name) {						\
		const struct delay_backend *b;				\
	};								\
	FIXTURE_SETUP(name)						\
	{								\
		DELAY_SETUP(variant->b);				\
	}								\
	struct delay_fixture_##name

/* Run one request to completion; returns its status, *used gets used.len. */
static uint8_t io(struct __test_metadata *_metadata, struct vblk_vq *vq,
		  uint32_t type, uint64_t sector, void *buf, size_t len,
		  const struct vblk_layout *l, uint32_t *used)
{
	struct vblk_req r;
	int err;

	vblk_req_init(&r, type, sector);
	if (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID) {
		r.in = buf;
		r.in_len = len;
	} else {
		r.out = buf;
		r.out_len = len;
	}
	r.layout = l;
	r.name = "io";
	err = vblk_do(vq, &r, WAIT_MS);
	ASSERT_EQ(0, err) TH_LOG("type %u sector %llu len %zu: %s", type,
				 (unsigned long long)sector, len, strerror(-err));
	EXPECT_EQ(0, vq->bad_used);
	if (used)
		*used = r.used_len;
	return r.status;
}

/* Write a pattern through vhost-blk, expect OK / used.len 1. */
static void dev_write(struct __test_metadata *_metadata, struct vblk_vq *vq,
		      uint64_t sector, size_t len, uint64_t seed,
		      const struct vblk_layout *l)
{
	void *b = malloc(len ? len : 1);
	uint32_t used = 0;

	ASSERT_NE(NULL, b);
	vblk_pattern_fill(b, len, sector, seed);
	ASSERT_EQ(VIRTIO_BLK_S_OK, io(_metadata, vq, VIRTIO_BLK_T_OUT, sector,
				      b, len, l, &used))
		TH_LOG("write sector %llu len %zu", (unsigned long long)sector, len);
	EXPECT_EQ(1, used);
	free(b);
}

/* Read through vhost-blk, expect OK, used.len len+1 and the pattern. */
static void dev_check(struct __test_metadata *_metadata, struct vblk_vq *vq,
		      uint64_t sector, size_t len, uint64_t seed,
		      const struct vblk_layout *l, const char *what)
{
	void *b = malloc(len ? len : 1);
	uint32_t used = 0;
	char why[256];
	long bad;

	ASSERT_NE(NULL, b);
	ASSERT_EQ(VIRTIO_BLK_S_OK, io(_metadata, vq, VIRTIO_BLK_T_IN, sector,
				      b, len, l, &used))
		TH_LOG("%s: read sector %llu len %zu", what,
		       (unsigned long long)sector, len);
	EXPECT_EQ(len + 1, used) TH_LOG("%s: used.len of a read", what);
	bad = vblk_pattern_check(b, len, sector, seed, why, sizeof(why));
	EXPECT_EQ(-1, bad) TH_LOG("%s: via vhost-blk: %s", what, why);
	free(b);
}

static uint8_t io_status(struct __test_metadata *_metadata, struct vblk_vq *vq,
			 uint32_t type, uint64_t sector, size_t len, uint32_t *used)
{
	void *b = calloc(1, len ? len : 1);
	uint8_t st;

	if (type == VIRTIO_BLK_T_OUT)
		vblk_pattern_fill(b, len, sector, 0xbad);
	st = io(_metadata, vq, type, sector, b, len, NULL, used);
	free(b);
	return st;
}

/* Run r (set up by the caller): OK with used.len 1, no data for the guest. */
static void expect_ok_no_data(struct __test_metadata *_metadata,
			      struct vblk_vq *vq, struct vblk_req *r)
{
	ASSERT_EQ(0, vblk_do(vq, r, WAIT_MS));
	EXPECT_EQ(VIRTIO_BLK_S_OK, r->status);
	EXPECT_EQ(1, r->used_len);
}

/* n 512-byte reads of sectors 0..n-1 in flight at once: one kick, all done. */
static void reads_at_once(struct __test_metadata *_metadata, struct vblk_vq *vq,
			  struct vblk_req *r, int n)
{
	for (int i = 0; i < n; i++) {
		vblk_req_init(&r[i], VIRTIO_BLK_T_IN, i);
		r[i].in_len = 512;
		ASSERT_EQ(0, vblk_submit(vq, &r[i]));
	}
	vblk_kick(vq, true);
	ASSERT_EQ(0, vblk_wait_all(vq, WAIT_MS));
}

/* Kick queues 0..n-1 (where the device asks for it), wait until all idle. */
static void kick_wait_queues(struct __test_metadata *_metadata,
			     struct vblk_dev *d, int n)
{
	for (int q = 0; q < n; q++)
		vblk_kick(&d->vq[q], false);
	for (int q = 0; q < n; q++) {
		ASSERT_EQ(0, vblk_wait_all(&d->vq[q], WAIT_MS)) TH_LOG("vq %d", q);
	}
}

/* Submit a 512-byte read and kick (no wait). */
static void submit_in(struct __test_metadata *_metadata, struct vblk_vq *vq,
		      struct vblk_req *r, uint64_t sector)
{
	vblk_req_init(r, VIRTIO_BLK_T_IN, sector);
	r->in_len = 512;
	ASSERT_EQ(0, vblk_submit(vq, r));
	vblk_kick(vq, true);
}

/* n 512-byte reads of sectors 0..n-1, each waited for before the next. */
static void reads_one_by_one(struct __test_metadata *_metadata,
			     struct vblk_vq *vq, struct vblk_req *r, int n)
{
	for (int i = 0; i < n; i++) {
		submit_in(_metadata, vq, &r[i], i);
		ASSERT_EQ(0, vblk_wait_req(vq, &r[i], WAIT_MS)) TH_LOG("read %d", i);
	}
}

static int raw_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? errno : 0;
}

/* Every vhost and device ioctl but SET_OWNER and GET_FEATURES fails with
 * EPERM before SET_OWNER.  fd: a fresh device fd.
 */
static void expect_all_eperm(struct __test_metadata *_metadata, int fd,
			     struct vblk_dev *d, int bfd, const char *when)
{
	uint64_t feat = F(VIRTIO_F_VERSION_1), logbase = 0;
	struct vhost_vring_state s = { .index = 0, .num = 128 };
	struct vhost_vring_addr a = { .index = 0 };
	struct vhost_vring_file f = { .index = 0, .fd = d->vq[0].kick_fd };
	struct vhost_blk_serial ser = { .id = "x" };
	struct vhost_memory *m = calloc(1, sizeof(*m) + sizeof(m->regions[0]));
	int ro = 0, lfd = d->vq[0].call_fd;

	ASSERT_NE(NULL, m);
	m->nregions = 1;
	m->regions[0].guest_phys_addr = VBLK_GPA_BASE;
	m->regions[0].memory_size = d->o.mem_size;
	m->regions[0].userspace_addr = (uintptr_t)d->mem;
	a.desc_user_addr = (uintptr_t)d->vq[0].desc;
	a.avail_user_addr = (uintptr_t)d->vq[0].avail;
	a.used_user_addr = (uintptr_t)d->vq[0].used;
	logbase = (uintptr_t)d->mem;

	/* GET_FEATURES needs no owner (as in vhost-net, vsock, scsi) */
	feat = 0;
	EXPECT_EQ(0, raw_ioctl(fd, VHOST_GET_FEATURES, &feat)) TH_LOG("%s", when);
	EXPECT_EQ((unsigned long long)VBLK_OFFERED_FEATURES,
		  (unsigned long long)feat) TH_LOG("%s: GET_FEATURES", when);
	feat = F(VIRTIO_F_VERSION_1);
#define EPERM_CHECK(cmd, arg) \
	EXPECT_EQ(EPERM, raw_ioctl(fd, cmd, arg)) TH_LOG("%s: %s", when, #cmd)
	EPERM_CHECK(VHOST_SET_FEATURES, &feat);
	EPERM_CHECK(VHOST_SET_MEM_TABLE, m);
	EPERM_CHECK(VHOST_SET_VRING_NUM, &s);
	EPERM_CHECK(VHOST_SET_VRING_BASE, &s);
	EPERM_CHECK(VHOST_GET_VRING_BASE, &s);
	EPERM_CHECK(VHOST_SET_VRING_ADDR, &a);
	EPERM_CHECK(VHOST_SET_VRING_KICK, &f);
	EPERM_CHECK(VHOST_SET_VRING_CALL, &f);
	EPERM_CHECK(VHOST_SET_VRING_ERR, &f);
	EPERM_CHECK(VHOST_SET_LOG_BASE, &logbase);
	EPERM_CHECK(VHOST_SET_LOG_FD, &lfd);
	EPERM_CHECK(VHOST_RESET_OWNER, NULL);
	EPERM_CHECK(VHOST_BLK_SET_BACKEND, &bfd);
	EPERM_CHECK(VHOST_BLK_SET_SERIAL, &ser);
	EPERM_CHECK(VHOST_BLK_SET_READONLY, &ro);
#undef EPERM_CHECK
	free(m);
}

static void layout_roundtrip(struct __test_metadata *_metadata, struct ctx *c,
			     unsigned int extra_flags, uint32_t extra_offset)
{
	uint64_t seed = new_seed();
	const size_t len = 4096;

	for (unsigned int i = 0; i < vblk_nlayouts; i++) {
		struct vblk_layout l = vblk_layouts[i].l;
		uint64_t sec = 10000 + i * 16;
		char what[96];

		l.flags |= extra_flags;
		l.offset += extra_offset;
		snprintf(what, sizeof(what), "layout %s%s", vblk_layouts[i].name,
			 extra_flags & VBLK_L_INDIRECT ? " (indirect)" : "");
		/* written with the layout, checked directly and classically */
		dev_write(_metadata, &c->d.vq[0], sec, len, seed + i,
			  i ? &l : NULL);
		bdev_check(_metadata, c->path, sec, len, seed + i, what);
		dev_check(_metadata, &c->d.vq[0], sec, len, seed + i, NULL, what);
		/* written classically, read with the layout */
		bdev_fill(_metadata, c->path, sec + 8, len, seed + 100 + i);
		dev_check(_metadata, &c->d.vq[0], sec + 8, len, seed + 100 + i,
			  i ? &l : NULL, what);
	}
}

struct serial_toggler {
	struct vblk_dev *d;
	volatile bool stop;
	unsigned long flips;
};

static void *serial_toggle(void *arg)
{
	struct serial_toggler *t = arg;
	unsigned int seed = 1;

	while (!t->stop) {
		vblk_set_serial(t->d, t->flips & 1 ? "BBBBBBBBBBBBBBBBBBBB" :
				"AAAAAAAAAAAAAAAAAAAA", 20);
		t->flips++;
		/* A pause of random length: no phase lock with the worker. */
		for (volatile int i = rand_r(&seed) % 2048; i > 0; i--)
			;
	}
	return NULL;
}

enum violation {
	V_LOOP_SELF, V_LOOP_2, V_ADDR_OUTSIDE, V_ADDR_BELOW, V_LEN_PAST_END,
	V_WRITE_BEFORE_READ, V_INDIRECT_BADLEN, V_INDIRECT_NESTED,
	V_INDIRECT_OUTSIDE, V_INDIRECT_EMPTY, V_HEAD_OOB, V_NEXT_OOB,
	V_MAX,
	/*
	 * Not tested: the vhost core's parser (vhost_get_vq_desc) walks an
	 * indirect table sequentially and ignores its "next" fields, and it
	 * follows NEXT after an INDIRECT descriptor; both chains are served
	 * as requests, not reported as errors.
	 */
	V_INDIRECT_NEXT_OOB, V_INDIRECT_WITH_NEXT,
};

static const char *const vnames[] = {
	"loop-self", "loop-2", "addr-outside-table", "addr-below-table",
	"len-past-table-end", "write-before-read", "indirect-len-not-16n",
	"indirect-nested", "indirect-table-outside", "indirect-empty",
	"head-out-of-ring", "next-out-of-ring", "-",
	"indirect-next-oob", "indirect-with-next",
};

/*
 * Build a valid 3-descriptor IN request of 512 bytes, then break it the way
 * v says; returns the head in the avail ring.  fix() rewrites it valid.
 */
struct vreq {
	uint16_t idx[4];
	uint64_t hdr, data, st, table;
	uint16_t head;
};

static void vreq_valid(struct vblk_vq *vq, struct vreq *v)
{
	vblk_desc_set(vq, v->idx[0], v->hdr, 16, VRING_DESC_F_NEXT, v->idx[1]);
	vblk_desc_set(vq, v->idx[1], v->data, 512,
		      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, v->idx[2]);
	vblk_desc_set(vq, v->idx[2], v->st, 1, VRING_DESC_F_WRITE, 0);
}

static void vreq_break(struct vblk_dev *d, struct vblk_vq *vq, struct vreq *v,
		       enum violation how)
{
	uint64_t end = d->o.gpa_base + d->o.mem_size;
	struct vring_desc t[3];

	vreq_valid(vq, v);
	v->head = v->idx[0];
	switch (how) {
	case V_LOOP_SELF:
		vblk_desc_set(vq, v->idx[1], v->data, 512,
			      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, v->idx[1]);
		break;
	case V_LOOP_2:
		vblk_desc_set(vq, v->idx[2], v->st, 1,
			      VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, v->idx[1]);
		break;
	case V_ADDR_OUTSIDE:
		vblk_desc_set(vq, v->idx[1], end + 4096, 512,
			      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, v->idx[2]);
		break;
	case V_ADDR_BELOW:
		vblk_desc_set(vq, v->idx[1], 0x1000, 512,
			      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, v->idx[2]);
		break;
	case V_LEN_PAST_END:
		vblk_desc_set(vq, v->idx[1], end - 256, 512,
			      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, v->idx[2]);
		break;
	case V_WRITE_BEFORE_READ:
		vblk_desc_set(vq, v->idx[0], v->st, 1,
			      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, v->idx[1]);
		vblk_desc_set(vq, v->idx[1], v->data, 512,
			      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, v->idx[2]);
		vblk_desc_set(vq, v->idx[2], v->hdr, 16, 0, 0);
		break;
	case V_INDIRECT_BADLEN:
	case V_INDIRECT_NESTED:
	case V_INDIRECT_OUTSIDE:
	case V_INDIRECT_NEXT_OOB:
	case V_INDIRECT_EMPTY:
	case V_INDIRECT_WITH_NEXT:
		t[0] = (struct vring_desc){ v->hdr, 16, VRING_DESC_F_NEXT, 1 };
		t[1] = (struct vring_desc){ v->data, 512,
			VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2 };
		t[2] = (struct vring_desc){ v->st, 1, VRING_DESC_F_WRITE, 0 };
		if (how == V_INDIRECT_NESTED)
			t[1].flags |= VRING_DESC_F_INDIRECT;
		if (how == V_INDIRECT_NEXT_OOB)
			t[1].next = 7;
		vblk_write_guest(d, v->table, t, sizeof(t));
		vblk_desc_set(vq, v->idx[0],
			      how == V_INDIRECT_OUTSIDE ? end + 8192 : v->table,
			      how == V_INDIRECT_BADLEN ? 40 :
			      how == V_INDIRECT_EMPTY ? 0 : 48,
			      VRING_DESC_F_INDIRECT |
			      (how == V_INDIRECT_WITH_NEXT ? VRING_DESC_F_NEXT : 0),
			      v->idx[1]);
		break;
	case V_HEAD_OOB:
		v->head = vq->num + 5;
		break;
	case V_NEXT_OOB:
		vblk_desc_set(vq, v->idx[1], v->data, 512,
			      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, vq->num + 3);
		break;
	default:
		break;
	}
}

static void expect_ro(struct __test_metadata *_metadata, struct ctx *c,
		      const char *why)
{
	uint64_t seed = new_seed();
	uint8_t seg[16] = { 0 };
	uint32_t used;

	bdev_fill(_metadata, c->path, 700, 4096, seed);
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, io_status(_metadata, &c->d.vq[0],
						VIRTIO_BLK_T_OUT, 700, 4096, &used))
		TH_LOG("%s: write", why);
	EXPECT_EQ(1, used);
	((uint64_t *)seg)[0] = 700;
	((uint32_t *)seg)[2] = 8;
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, io(_metadata, &c->d.vq[0],
					 VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 16,
					 NULL, &used)) TH_LOG("%s: write zeroes", why);
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, io(_metadata, &c->d.vq[0],
					 VIRTIO_BLK_T_DISCARD, 0, seg, 16,
					 NULL, &used)) TH_LOG("%s: discard", why);
	bdev_check(_metadata, c->path, 700, 4096, seed, why);
	dev_check(_metadata, &c->d.vq[0], 700, 4096, seed, NULL, why);
}

struct dwz_seg {
	uint64_t sector;
	uint32_t num;
	uint32_t flags;
};

static uint8_t dwz(struct __test_metadata *_metadata, struct vblk_vq *vq,
		   uint32_t type, const struct dwz_seg *s, size_t nbytes,
		   uint32_t *used)
{
	return io(_metadata, vq, type, 0, (void *)s, nbytes, NULL, used);
}

static void expect_zero(struct __test_metadata *_metadata, struct ctx *c,
			uint64_t sector, size_t len, const char *what)
{
	uint8_t *b = malloc(len), *z = calloc(1, len);
	uint32_t used;

	bdev_rw(_metadata, c->path, false, sector, b, len);
	EXPECT_EQ(0, memcmp(b, z, len)) TH_LOG("%s: backend not zero", what);
	EXPECT_EQ(VIRTIO_BLK_S_OK, io(_metadata, &c->d.vq[0], VIRTIO_BLK_T_IN,
				      sector, b, len, NULL, &used));
	EXPECT_EQ(0, memcmp(b, z, len)) TH_LOG("%s: not zero via vhost-blk", what);
	free(b);
	free(z);
}

static void write_zeroes_cases(struct __test_metadata *_metadata, struct ctx *c)
{
	uint64_t seed = new_seed();
	struct dwz_seg s[3];
	uint32_t used;

	for (uint32_t unmap = 0; unmap < 2; unmap++) {
		bdev_fill(_metadata, c->path, 800, 32 * KiB, seed);
		s[0] = (struct dwz_seg){ 808, 8, unmap };
		s[1] = (struct dwz_seg){ 832, 1, unmap };
		s[2] = (struct dwz_seg){ 850, 14, unmap };
		EXPECT_EQ(VIRTIO_BLK_S_OK, dwz(_metadata, &c->d.vq[0],
			VIRTIO_BLK_T_WRITE_ZEROES, s, sizeof(s), &used))
			TH_LOG("unmap %u", unmap);
		EXPECT_EQ(1, used);
		expect_zero(_metadata, c, 808, 8 * 512, "seg 0");
		expect_zero(_metadata, c, 832, 512, "seg 1");
		expect_zero(_metadata, c, 850, 14 * 512, "seg 2");
		bdev_check(_metadata, c->path, 800, 8 * 512, seed, "before seg 0");
		bdev_check(_metadata, c->path, 816, 16 * 512, seed, "between 0 and 1");
		bdev_check(_metadata, c->path, 833, 17 * 512, seed, "between 1 and 2");
		bdev_check(_metadata, c->path, 864, 0, seed, "after");
	}
}

/* The largest WRITE_ZEROES: VHOST_BLK_MAX_DWZ_SEGS segments. */
static void write_zeroes_max_segs(struct __test_metadata *_metadata, struct ctx *c)
{
	struct dwz_seg *s = calloc(VHOST_BLK_MAX_DWZ_SEGS, sizeof(*s));
	const uint64_t base = 4000;
	uint64_t seed = new_seed();
	uint8_t *b = malloc(2 * VHOST_BLK_MAX_DWZ_SEGS * 512);
	static const uint8_t zero[512];
	uint32_t used;
	char why[200];

	bdev_fill(_metadata, c->path, base, 2 * VHOST_BLK_MAX_DWZ_SEGS * 512, seed);
	/* every other sector, in reverse order */
	for (int i = 0; i < VHOST_BLK_MAX_DWZ_SEGS; i++)
		s[i] = (struct dwz_seg){ base + 2 * (VHOST_BLK_MAX_DWZ_SEGS - 1 - i), 1, 0 };
	EXPECT_EQ(VIRTIO_BLK_S_OK, dwz(_metadata, &c->d.vq[0], VIRTIO_BLK_T_WRITE_ZEROES,
				       s, VHOST_BLK_MAX_DWZ_SEGS * 16, &used))
		TH_LOG("%d segments", VHOST_BLK_MAX_DWZ_SEGS);
	EXPECT_EQ(1, used);
	bdev_rw(_metadata, c->path, false, base, b, 2 * VHOST_BLK_MAX_DWZ_SEGS * 512);
	for (int i = 0; i < 2 * VHOST_BLK_MAX_DWZ_SEGS; i++) {
		bool ok = i % 2 ? vblk_pattern_check(b + i * 512, 512, base + i, seed,
						      why, sizeof(why)) == -1 :
				  !memcmp(b + i * 512, zero, 512);

		EXPECT_TRUE(ok) TH_LOG("sector %llu should be %s", (unsigned long long)(base + i),
				       i % 2 ? "untouched" : "zero");
		if (!ok)
			break;
	}
	free(b);
	free(s);
}

/* Bad DISCARD / WRITE_ZEROES requests on any backend. */
static void dwz_bad_cases(struct __test_metadata *_metadata, struct ctx *c,
			  uint32_t type)
{
	struct dwz_seg *s = calloc(VHOST_BLK_MAX_DWZ_SEGS + 1, sizeof(*s));
	uint64_t seed = new_seed();
	const char *tn = type == VIRTIO_BLK_T_DISCARD ? "discard" : "write-zeroes";
	uint32_t used;

	bdev_fill(_metadata, c->path, 900, 8192, seed);
	/* count 0 */
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, dwz(_metadata, &c->d.vq[0], type, s, 0, &used))
		TH_LOG("%s: no segment", tn);
	EXPECT_EQ(1, used);
	/* too many segments */
	for (int i = 0; i <= VHOST_BLK_MAX_DWZ_SEGS; i++)
		s[i] = (struct dwz_seg){ 900 + i % 16, 1, 0 };
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, dwz(_metadata, &c->d.vq[0], type, s,
		  (VHOST_BLK_MAX_DWZ_SEGS + 1) * 16, &used)) TH_LOG("%s: 257 segs", tn);
	/* not a whole number of segments */
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, dwz(_metadata, &c->d.vq[0], type, s, 20, &used))
		TH_LOG("%s: 20 bytes", tn);
	/* out of capacity, overflowing */
	s[0] = (struct dwz_seg){ c->cap, 1, 0 };
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, dwz(_metadata, &c->d.vq[0], type, s, 16, &used))
		TH_LOG("%s: at capacity", tn);
	s[0] = (struct dwz_seg){ c->cap - 1, 2, 0 };
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, dwz(_metadata, &c->d.vq[0], type, s, 16, &used))
		TH_LOG("%s: past capacity", tn);
	s[0] = (struct dwz_seg){ ~0ULL - 1, 4, 0 };
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, dwz(_metadata, &c->d.vq[0], type, s, 16, &used))
		TH_LOG("%s: overflow", tn);
	/* one bad segment among good ones: nothing may be written */
	s[0] = (struct dwz_seg){ 900, 4, 0 };
	s[1] = (struct dwz_seg){ c->cap + 10, 4, 0 };
	EXPECT_EQ(VIRTIO_BLK_S_IOERR, dwz(_metadata, &c->d.vq[0], type, s, 32, &used))
		TH_LOG("%s: second segment bad", tn);
	/* flags */
	s[0] = (struct dwz_seg){ 900, 4, type == VIRTIO_BLK_T_DISCARD ? 1 : 2 };
	EXPECT_EQ(VIRTIO_BLK_S_UNSUPP, dwz(_metadata, &c->d.vq[0], type, s, 16, &used))
		TH_LOG("%s: flags %u", tn, s[0].flags);
	EXPECT_EQ(1, used);
	s[0].flags = 0x80000000;
	EXPECT_EQ(VIRTIO_BLK_S_UNSUPP, dwz(_metadata, &c->d.vq[0], type, s, 16, &used))
		TH_LOG("%s: flags %#x", tn, s[0].flags);
	bdev_check(_metadata, c->path, 900, 8192, seed, "rejected discard/write-zeroes");
	free(s);
}

#define INFLIGHT_N	8
#define INFLIGHT_LEN	(32 * KiB)
#define INFLIGHT_SEC	2000

/* Has the device consumed n avail entries of vq 0 (GET_VRING_BASE)? */
static bool consumed(struct ctx *c, unsigned int n, int timeout_ms)
{
	uint64_t t0 = vblk_now_ms();
	struct vhost_vring_state s = { .index = 0 };

	do {
		if (raw_ioctl(c->d.fd, VHOST_GET_VRING_BASE, &s) == 0 && s.num >= n)
			return true;
		usleep(2000);
	} while (vblk_now_ms() - t0 < (uint64_t)timeout_ms);
	return false;
}

/* INFLIGHT_N writes of INFLIGHT_LEN from INFLIGHT_SEC on, held by dm-delay. */
struct inflight {
	uint64_t seed;
	struct vblk_req r[INFLIGHT_N];
	uint8_t buf[INFLIGHT_N * INFLIGHT_LEN];
};

/*
 * Submit the writes on vq 0 and make sure they are in flight: all taken
 * off the ring, none complete.  The caller frees the result.
 */
static struct inflight *start_inflight(struct __test_metadata *_metadata,
				       struct ctx *c)
{
	struct inflight *in = malloc(sizeof(*in));

	ASSERT_NE(NULL, in);
	in->seed = new_seed();
	vblk_pattern_fill(in->buf, sizeof(in->buf), INFLIGHT_SEC, in->seed);
	for (int i = 0; i < INFLIGHT_N; i++) {
		vblk_req_init(&in->r[i], VIRTIO_BLK_T_OUT,
			      INFLIGHT_SEC + i * (INFLIGHT_LEN / 512));
		in->r[i].out = in->buf + i * INFLIGHT_LEN;
		in->r[i].out_len = INFLIGHT_LEN;
		ASSERT_EQ(0, vblk_submit(&c->d.vq[0], &in->r[i]));
	}
	vblk_kick(&c->d.vq[0], true);
	/* wait until the device has taken them all off the ring */
	ASSERT_TRUE(consumed(c, INFLIGHT_N, 10000))
		TH_LOG("the device did not take %d requests off the ring", INFLIGHT_N);
	/* dm-delay holds them: none can be complete yet */
	ASSERT_EQ(0, vblk_reap(&c->d.vq[0]))
		TH_LOG("writes already completed: is %s a dm-delay device?",
		       c->path);
	return in;
}

/*
 * The in-flight writes are on the backend path, read directly on under,
 * the device below dm-delay (see landed_check()).  Through dm-delay a read
 * would queue behind the delayed writes and hide a teardown that did not
 * wait for them.
 */
static void inflight_landed(struct __test_metadata *_metadata, const char *path,
			    const char *under, const struct inflight *in,
			    const char *what)
{
	landed_check(_metadata, path, under, INFLIGHT_SEC, sizeof(in->buf),
		     in->seed, what);
}

/*
 * The owner dies (exit or SIGKILL) with I/O in flight: a child opens a
 * device like parent's (backend, open flags, features) and dies.
 */
static void owner_dies(struct __test_metadata *_metadata,
		       const struct ctx *parent, const char *under, bool sigkill)
{
	struct inflight *in = NULL;
	int st = 0, pfd[2];
	pid_t pid, w = 0;
	uint64_t t0;

	ASSERT_EQ(0, pipe(pfd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct vblk_opts o = VBLK_OPTS_DEFAULT;
		struct ctx c;

		o = ctx_opts(parent, &o);
		ctx_open_opts(_metadata, &c, parent->path, parent->oflags, &o);
		in = start_inflight(_metadata, &c);
		if (write(pfd[1], &in->seed, sizeof(in->seed)) != sizeof(in->seed))
			_exit(3);
		if (sigkill)
			raise(SIGKILL);
		_exit(0);	/* no close: the exit path tears down */
	}
	close(pfd[1]);
	in = calloc(1, sizeof(*in));
	ASSERT_NE(NULL, in);
	EXPECT_EQ(sizeof(in->seed), read(pfd[0], &in->seed, sizeof(in->seed)))
		TH_LOG("child could not start I/O");
	t0 = vblk_now_ms();
	while (vblk_now_ms() - t0 < 30000) {
		w = waitpid(pid, &st, WNOHANG);
		if (w)
			break;
		usleep(10 * 1000);
	}
	ASSERT_EQ(pid, w) TH_LOG("owner did not finish exiting within 30 s");
	if (sigkill) {
		EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	} else {
		EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	inflight_landed(_metadata, parent->path, under, in,
			"written by the time the owner was reaped");
	close(pfd[0]);
	free(in);
}

static bool log_bit(const uint8_t *log, uint64_t gpa)
{
	uint64_t page = gpa / 4096;

	return log[page / 8] & (1 << (page % 8));
}

/* The first address past the owner's user space (4- or 5-level paging). */
static uint64_t user_space_end(void)
{
	void *hint = (void *)((1ULL << 47) + (64ULL << 20));
	void *p = mmap(hint, 4096, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == hint) {
		munmap(p, 4096);
		return (1ULL << 56) - 4096;
	}
	if (p != MAP_FAILED)
		munmap(p, 4096);
	return (1ULL << 47) - 4096;
}

/*
 * Watch queue 0 for ms milliseconds: the largest number of requests the
 * device has taken off the ring and not yet returned.  The base is read
 * before the used index, so the figure never overestimates.
 */
static unsigned int max_in_flight(struct ctx *c, int ms)
{
	struct vhost_vring_state s = { .index = 0 };
	uint64_t t0 = vblk_now_ms();
	unsigned int max = 0;
	uint16_t used;

	do {
		if (raw_ioctl(c->d.fd, VHOST_GET_VRING_BASE, &s))
			break;
		used = __atomic_load_n(&c->d.vq[0].used->idx, __ATOMIC_ACQUIRE);
		if ((uint16_t)(s.num - used) > max)
			max = (uint16_t)(s.num - used);
		usleep(1000);
	} while (vblk_now_ms() - t0 < (uint64_t)ms);
	return max;
}

#define BOUNCE_PARAM	"/sys/module/vhost_blk/parameters/bounce_limit_kb"

static int write_param(const char *path, unsigned int v)
{
	FILE *f = fopen(path, "w");
	int r;

	if (!f)
		return -errno;
	r = fprintf(f, "%u\n", v) < 0 ? -EIO : 0;
	if (fclose(f))
		r = -errno;
	return r;
}

/* Find a cgroup2 mount with the memory controller, or mount one. */
static const char *memcg_root(void)
{
	static const char *root = "/sys/fs/cgroup";
	char p[256];

	snprintf(p, sizeof(p), "%s/cgroup.controllers", root);
	if (access(p, F_OK) && system("mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null"))
		return NULL;
	if (system("grep -qw memory /sys/fs/cgroup/cgroup.controllers && "
		   "echo +memory > /sys/fs/cgroup/cgroup.subtree_control"))
		return NULL;
	return root;
}

static long long cg_read(const char *dir, const char *file)
{
	char p[256], buf[64];
	long long v = -1;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	f = fopen(p, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f))
		v = atoll(buf);
	fclose(f);
	return v;
}

/*
 * The block_bio_queue trace events (ftrace) of one request of type (OUT:
 * a 4 KiB write at sector; FLUSH), as a string the caller frees; NULL if
 * tracing is not available.
 */
static char *trace_bios(struct __test_metadata *_metadata, struct ctx *c,
			uint32_t type, uint64_t sector)
{
	static const char *tr = "/sys/kernel/tracing/trace";
	size_t len = 0, size = 1 << 16, got;
	char *text;
	FILE *f;

	if (access(tr, F_OK) && system("mount -t tracefs nodev /sys/kernel/tracing"))
		return NULL;
	if (system("echo 0 > /sys/kernel/tracing/tracing_on; "
		   "echo > /sys/kernel/tracing/trace; "
		   "echo 1 > /sys/kernel/tracing/events/block/block_bio_queue/enable; "
		   "echo 1 > /sys/kernel/tracing/tracing_on"))
		return NULL;
	if (type == VIRTIO_BLK_T_OUT)
		dev_write(_metadata, &c->d.vq[0], sector, 4096, new_seed(), NULL);
	else
		EXPECT_EQ(VIRTIO_BLK_S_OK, io_status(_metadata, &c->d.vq[0], type,
						     sector, 0, NULL));
	if (system("echo 0 > /sys/kernel/tracing/tracing_on; "
		   "echo 0 > /sys/kernel/tracing/events/block/block_bio_queue/enable"))
		return NULL;
	f = fopen(tr, "r");
	text = malloc(size);
	ASSERT_TRUE(f && text);
	while ((got = fread(text + len, 1, size - len - 1, f)) > 0) {
		len += got;
		if (len + 1 == size) {
			size *= 2;
			text = realloc(text, size);
			ASSERT_NE(NULL, text);
		}
	}
	text[len] = 0;
	fclose(f);
	return text;
}

/* The block-layer flags of the bio a guest write at sector makes. */
static int trace_write_rwbs(struct __test_metadata *_metadata, struct ctx *c,
			    uint64_t sector, char *rwbs, size_t len)
{
	char *text = trace_bios(_metadata, c, VIRTIO_BLK_T_OUT, sector);
	char want[64], *line, *save = NULL;
	int found = -1;

	if (!text)
		return -1;
	snprintf(want, sizeof(want), " %llu + 8 ", (unsigned long long)sector);
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *q = strstr(line, want), *e;

		if (!q)
			continue;
		/* "... block_bio_queue: 253,0 WS 1234 + 8 [comm]" */
		*q = 0;
		e = strrchr(line, ' ');
		if (e) {
			snprintf(rwbs, len, "%s", e + 1);
			found = 0;
		}
	}
	free(text);
	return found;
}

/*
 * Bios with a preflush or FUA (an F in their flags) that one request of
 * type (as trace_bios()) sent to the block device dev; -1 if not traced.
 */
static int trace_flush_bios(struct __test_metadata *_metadata, struct ctx *c,
			    uint32_t type, uint64_t sector, dev_t dev)
{
	char *text = trace_bios(_metadata, c, type, sector);
	char want[32], rwbs[16], *line, *save = NULL, *q;
	int n = 0;

	if (!text)
		return -1;
	snprintf(want, sizeof(want), ": %u,%u ", major(dev), minor(dev));
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		q = strstr(line, want);
		if (q && sscanf(q + strlen(want), "%15s", rwbs) == 1 &&
		    strchr(rwbs, 'F'))
			n++;
	}
	free(text);
	return n;
}

/*
 * Set or clear VHOST_F_LOG_ALL on a running device, then the used-ring
 * log flag of queue 0, in QEMU's order.
 */
static void set_log_all(struct __test_metadata *_metadata, struct ctx *c, bool on)
{
	uint64_t feat = (c->d.acked & ~F(VHOST_F_LOG_ALL)) |
			(on ? F(VHOST_F_LOG_ALL) : 0);
	struct vhost_vring_addr a = { .index = 0 };

	ASSERT_EQ(0, raw_ioctl(c->d.fd, VHOST_SET_FEATURES, &feat));
	c->d.acked = feat;
	a.desc_user_addr = (uintptr_t)c->d.vq[0].desc;
	a.avail_user_addr = (uintptr_t)c->d.vq[0].avail;
	a.used_user_addr = (uintptr_t)c->d.vq[0].used;
	a.log_guest_addr = c->d.vq[0].used_gpa;
	a.flags = on ? 1U << VHOST_VRING_F_LOG : 0;
	ASSERT_EQ(0, raw_ioctl(c->d.fd, VHOST_SET_VRING_ADDR, &a));
}

/* Pages of [gpa, gpa + len). */
static bool in_range(uint64_t page, uint64_t gpa, uint64_t len)
{
	return page + 4096 > gpa && page < gpa + len;
}

/* Guest ranges a request's writable descriptors cover (copied at submit). */
struct wr_ranges {
	unsigned int n;
	uint64_t gpa[16];
	uint32_t len[16];
};

static void save_writable(struct wr_ranges *w, const struct vblk_req *r)
{
	for (unsigned int i = 0; i < r->nsegs && w->n < 16; i++) {
		if (r->segs[i].write) {
			w->gpa[w->n] = r->segs[i].gpa;
			w->len[w->n++] = r->segs[i].len;
		}
	}
}

/*
 * The log after the requests completed: every page of their writable
 * descriptors set, nothing set outside them and the used ring, byte for
 * byte.
 */
static void check_log(struct __test_metadata *_metadata, struct ctx *c,
		      const uint8_t *log, size_t loglen,
		      const struct wr_ranges *w, const char *what)
{
	uint64_t used = c->d.vq[0].used_gpa;
	uint64_t used_len = 6 + 8 * c->d.vq[0].num;
	uint8_t *want = calloc(1, loglen);
	size_t first_bad = loglen;

	for (unsigned int i = 0; i < w->n; i++) {
		for (uint64_t p = w->gpa[i] & ~4095ULL; p < w->gpa[i] + w->len[i];
		     p += 4096)
			want[p / 4096 / 8] |= 1 << (p / 4096 % 8);
	}
	for (size_t b = 0; b < loglen && first_bad == loglen; b++) {
		for (int bit = 0; bit < 8; bit++) {
			uint64_t page = ((uint64_t)b * 8 + bit) * 4096;
			bool got = log[b] & (1 << bit), exp = want[b] & (1 << bit);

			if (got == exp || (got && in_range(page, used, used_len)))
				continue;
			first_bad = b;
			TH_LOG("%s: page %#llx %s", what, (unsigned long long)page,
			       got ? "logged, not written" : "written, not logged");
			break;
		}
	}
	EXPECT_EQ(loglen, first_bad) TH_LOG("%s: log differs", what);
	EXPECT_TRUE(log[used / 4096 / 8] & (1 << (used / 4096 % 8)) ||
		    log[(used + used_len - 1) / 4096 / 8] &
		    (1 << ((used + used_len - 1) / 4096 % 8)))
		TH_LOG("%s: used ring not logged", what);
	free(want);
}

/* ---- regular files ---------------------------------------------------------- */

static void file_check(struct __test_metadata *_metadata, const char *path,
		       uint64_t sector, size_t len, uint64_t seed, const char *what)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *b = malloc(len);
	char why[256];

	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)len, pread(fd, b, len, sector * 512));
	EXPECT_EQ(-1, vblk_pattern_check(b, len, sector, seed, why, sizeof(why)))
		TH_LOG("%s: file %s: %s", what, path, why);
	close(fd);
	free(b);
}

/*
 * Attach c's file with oflags: aligned and unaligned writes and reads, a
 * flush; the data lands in the file.
 */
static void file_rw_cases(struct __test_metadata *_metadata, struct ctx *c,
			  int oflags)
{
	static const struct vblk_layout una = { .offset = 100 };
	struct vblk_vq *vq = &c->d.vq[0];
	uint64_t seed = new_seed();

	ctx_attach(_metadata, c, c->path, oflags);
	dev_write(_metadata, vq, 2048, 65536, seed, NULL);
	dev_write(_metadata, vq, 4096, 8192, seed, &una);
	EXPECT_EQ(VIRTIO_BLK_S_OK, io_status(_metadata, vq, VIRTIO_BLK_T_FLUSH,
					     0, 0, NULL));
	file_check(_metadata, c->path, 2048, 65536, seed, "aligned write");
	file_check(_metadata, c->path, 4096, 8192, seed, "unaligned write");
	dev_check(_metadata, vq, 2048, 65536, seed, NULL, "aligned read");
	dev_check(_metadata, vq, 4096, 8192, seed, &una, "unaligned read");
}

/* ---- statistics and fault injection --------------------------------------- */

/* The device's debugfs directory, named by the id in the fd's fdinfo. */
static int stats_path(struct ctx *c, char *path, size_t size)
{
	char p[64], line[128];
	unsigned int id = 0;
	bool found = false;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", c->d.fd);
	f = fopen(p, "r");
	if (!f)
		return -errno;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "vhost-blk-id: %u", &id) == 1;
	fclose(f);
	if (!found)
		return -ENOENT;
	if (access("/sys/kernel/debug/vhost-blk", F_OK) &&
	    system("mount -t debugfs none /sys/kernel/debug 2>/dev/null"))
		return -ENODEV;
	snprintf(path, size, "/sys/kernel/debug/vhost-blk/%u/stats", id);
	return 0;
}

/* One counter of the device's debugfs stats file; -1 if absent. */
static long long stat_of(struct __test_metadata *_metadata, struct ctx *c,
			 const char *name)
{
	char path[96], line[128], key[64];
	long long v, found = -1;
	FILE *f;

	ASSERT_EQ(0, stats_path(c, path, sizeof(path)))
		TH_LOG("no vhost-blk-id in fdinfo or no debugfs");
	f = fopen(path, "r");
	ASSERT_NE(NULL, f) TH_LOG("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %lld", key, &v) == 2 && !strcmp(key, name))
			found = v;
	}
	fclose(f);
	return found;
}

/* Move this process to the cgroup directory @cg. */
static void cg_enter(struct __test_metadata *_metadata, const char *cg)
{
	char procs[192];
	FILE *f;

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg);
	f = fopen(procs, "w");
	ASSERT_NE(NULL, f);
	fprintf(f, "%d\n", getpid());
	ASSERT_EQ(0, fclose(f));
}

/* Pin every thread named vhost-<pid> (the device's worker) to CPU 0. */
static int pin_workers(pid_t pid)
{
	char want[32], comm[32], p[96];
	struct dirent *pe, *te;
	cpu_set_t cpu0;
	DIR *procs, *tasks;
	int n = 0;
	FILE *f;

	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	snprintf(want, sizeof(want), "vhost-%d\n", pid);
	procs = opendir("/proc");
	if (!procs)
		return -1;
	while ((pe = readdir(procs))) {
		snprintf(p, sizeof(p), "/proc/%.16s/task", pe->d_name);
		tasks = pe->d_name[0] >= '1' && pe->d_name[0] <= '9' ?
			opendir(p) : NULL;
		while (tasks && (te = readdir(tasks))) {
			snprintf(p, sizeof(p), "/proc/%.16s/task/%.16s/comm",
				 pe->d_name, te->d_name);
			f = fopen(p, "r");
			if (!f)
				continue;
			if (fgets(comm, sizeof(comm), f) && !strcmp(comm, want) &&
			    !sched_setaffinity(atoi(te->d_name), sizeof(cpu0), &cpu0))
				n++;
			fclose(f);
		}
		if (tasks)
			closedir(tasks);
	}
	closedir(procs);
	return n;
}

/*
 * The tables of the dm-delay device under c's backend (the backend itself,
 * or the filesystem of a file): name, its table as it is (orig) and the
 * same with reads held for 30 s (held); writes and flushes keep their delay.
 */
#define DM_NAME_LEN	64
#define DM_TABLE_LEN	160

static void delay_tables(struct __test_metadata *_metadata, struct ctx *c,
			 char name[DM_NAME_LEN], char orig[DM_TABLE_LEN],
			 char held[DM_TABLE_LEN])
{
	unsigned long long start, sectors, off;
	char p[96], cmd[160], dev[32];
	unsigned int ms;
	struct stat st;
	dev_t d;
	FILE *f;

	ASSERT_EQ(0, fstat(c->bfd, &st));
	d = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/dm/name", major(d), minor(d));
	f = fopen(p, "r");
	ASSERT_NE(NULL, f) TH_LOG("%s: the backend is not on dm-delay", p);
	ASSERT_NE(NULL, fgets(name, DM_NAME_LEN, f));
	fclose(f);
	name[strcspn(name, "\n")] = 0;
	snprintf(cmd, sizeof(cmd), "dmsetup table %s", name);
	f = popen(cmd, "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(5, fscanf(f, "%llu %llu delay %31s %llu %u", &start, &sectors,
			    dev, &off, &ms)) TH_LOG("%s: not a dm-delay table", name);
	pclose(f);
	snprintf(orig, DM_TABLE_LEN, "0 %llu delay %s %llu %u", sectors, dev, off, ms);
	snprintf(held, DM_TABLE_LEN, "0 %llu delay %s %llu 30000 %s %llu %u", sectors,
		 dev, off, dev, off, ms);
}

/* Load table into the dm device name and resume it (no filesystem freeze). */
static int dm_retable(const char *name, const char *table)
{
	char cmd[2 * DM_NAME_LEN + DM_TABLE_LEN + 100];

	snprintf(cmd, sizeof(cmd),
		 "dmsetup reload --noudevsync %s --table '%s' && "
		 "dmsetup resume --nolockfs --noudevsync %s", name, table, name);
	return system(cmd);
}

/*
 * n 4 KiB reads of sectors 0, 8, ... held by the dm-delay under c's
 * backend, then ended at once by "dmsetup suspend" run SCHED_FIFO on CPU
 * 0, where c's worker is pinned; all complete with the right data.
 * Returns how long the suspend took (ms).  The dm-delay table is
 * restored on every path once it was changed.
 */
static uint64_t burst(struct __test_metadata *_metadata, struct ctx *c,
		      unsigned int n)
{
	static const struct vblk_layout ind = { .flags = VBLK_L_INDIRECT };
	struct sched_param sp = { .sched_priority = 10 };
	char name[DM_NAME_LEN], orig[DM_TABLE_LEN], held[DM_TABLE_LEN];
	struct vblk_vq *vq = &c->d.vq[0];
	uint64_t seed = new_seed(), t0;
	struct vblk_req *r;
	unsigned int i;
	uint8_t *buf;
	cpu_set_t cpu0;
	int st = -1;
	pid_t pid;

	delay_tables(_metadata, c, name, orig, held);
	bdev_fill(_metadata, c->path, 0, n * 4096, seed);
	ASSERT_LE(1, pin_workers(getpid())) TH_LOG("no vhost-%d thread", getpid());
	r = calloc(n, sizeof(*r));
	buf = malloc(n * 4096);
	ASSERT_TRUE(r && buf);
	ASSERT_EQ(0, dm_retable(name, held));
	for (i = 0; i < n; i++) {
		vblk_req_init(&r[i], VIRTIO_BLK_T_IN, i * 8);
		r[i].in = buf + i * 4096;
		r[i].in_len = 4096;
		r[i].layout = &ind;
		if (vblk_submit(vq, &r[i]))
			break;
	}
	EXPECT_EQ(n, i) TH_LOG("submitted %u reads", i);
	vblk_kick(vq, true);
	EXPECT_TRUE(consumed(c, n, 60000));
	EXPECT_EQ(n, stat_of(_metadata, c, "in_flight"));

	t0 = vblk_now_ms();
	pid = fork();
	if (!pid) {
		CPU_ZERO(&cpu0);
		CPU_SET(0, &cpu0);
		if (sched_setaffinity(0, sizeof(cpu0), &cpu0) ||
		    sched_setscheduler(0, SCHED_FIFO, &sp))
			_exit(2);
		execlp("dmsetup", "dmsetup", "suspend", "--nolockfs",
		       "--noudevsync", name, (char *)NULL);
		_exit(3);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
	t0 = vblk_now_ms() - t0;
	EXPECT_EQ(0, st) TH_LOG("dmsetup suspend under SCHED_FIFO: status %#x", st);
	ASSERT_EQ(0, dm_retable(name, orig)) TH_LOG("%s: table not restored", name);
	ASSERT_EQ(0, vblk_wait_all(vq, WAIT_MS));
	for (i = 0; i < n; i++) {
		ASSERT_EQ(VIRTIO_BLK_S_OK, r[i].status) TH_LOG("read %u", i);
	}
	EXPECT_EQ(-1, vblk_pattern_check(buf, n * 4096, 0, seed, NULL, 0));
	free(buf);
	free(r);
	return t0;
}

/*
 * True if the pattern of (sector, len, seed) of the file behind @fd is on
 * its filesystem's device: the range is mapped (FIEMAP, not delayed
 * allocation) and the device holds the data there.
 */
static bool on_device(struct __test_metadata *_metadata, int fd,
		      uint64_t sector, size_t len, uint64_t seed)
{
	struct {
		struct fiemap fm;
		struct fiemap_extent fe[1];
	} m = { .fm = { .fm_start = sector * 512, .fm_length = len,
			.fm_extent_count = 1 } };
	const struct fiemap_extent *fe = &m.fe[0];
	char node[64];
	struct stat st;
	bool found;
	void *b;
	int dfd;

	if (ioctl(fd, FS_IOC_FIEMAP, &m.fm) || m.fm.fm_mapped_extents != 1 ||
	    fe->fe_flags & (FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_UNKNOWN) ||
	    fe->fe_logical > sector * 512 ||
	    fe->fe_logical + fe->fe_length < sector * 512 + len)
		return false;
	ASSERT_EQ(0, fstat(fd, &st));
	snprintf(node, sizeof(node), "/tmp/vblk-fsdev-%d", getpid());
	unlink(node);
	ASSERT_EQ(0, mknod(node, S_IFBLK | 0600, st.st_dev));
	dfd = open(node, O_RDONLY | O_DIRECT);
	unlink(node);
	ASSERT_LE(0, dfd);
	ASSERT_EQ(0, posix_memalign(&b, 4096, len));
	ASSERT_EQ((ssize_t)len, pread(dfd, b, len, fe->fe_physical +
				      (sector * 512 - fe->fe_logical)));
	found = vblk_pattern_check(b, len, sector, seed, NULL, 0) == -1;
	free(b);
	close(dfd);
	return found;
}

/* ---- vhost workers (VHOST_NEW_WORKER and co., Linux 6.5+) ----------------- */

/* The uapi of Linux 6.5, for system headers that predate it (bookworm's). */
#ifndef VHOST_NEW_WORKER
struct vhost_worker_state {
	unsigned int worker_id;
};

struct vhost_vring_worker {
	unsigned int index;
	unsigned int worker_id;
};

#define VHOST_NEW_WORKER	_IOR(VHOST_VIRTIO, 0x8, struct vhost_worker_state)
#define VHOST_FREE_WORKER	_IOW(VHOST_VIRTIO, 0x9, struct vhost_worker_state)
#define VHOST_ATTACH_VRING_WORKER \
	_IOW(VHOST_VIRTIO, 0x15, struct vhost_vring_worker)
#define VHOST_GET_VRING_WORKER	\
	_IOWR(VHOST_VIRTIO, 0x16, struct vhost_vring_worker)
#endif

/* Does the running kernel's vhost core have the worker ioctls (6.5+)? */
static bool kernel_has_worker_ioctls(void)
{
	int major = 0, minor = 0;
	struct utsname u;

	if (uname(&u) || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return false;
	return major > 6 || (major == 6 && minor >= 5);
}

/*
 * Before 6.5 the vhost core has one kthread worker per device and no
 * worker ioctls: the module passes nothing through and each fails with
 * ENOTTY (the core's ENOIOCTLCMD, index 0 being a valid queue).  A worker
 * case checks that on such a kernel and ends: there is nothing more.
 */
#define WORKERS_OR_ENOTTY(c) do {					\
	if (!kernel_has_worker_ioctls()) {				\
		expect_no_worker_ioctls(_metadata, c);			\
		return;							\
	}								\
} while (0)

static void expect_no_worker_ioctls(struct __test_metadata *_metadata,
				    struct ctx *c)
{
	struct vhost_worker_state ws = { .worker_id = 0 };
	struct vhost_vring_worker vw = { .index = 0, .worker_id = 0 };

	EXPECT_EQ(ENOTTY, raw_ioctl(c->d.fd, VHOST_NEW_WORKER, &ws));
	EXPECT_EQ(ENOTTY, raw_ioctl(c->d.fd, VHOST_FREE_WORKER, &ws));
	EXPECT_EQ(ENOTTY, raw_ioctl(c->d.fd, VHOST_ATTACH_VRING_WORKER, &vw));
	EXPECT_EQ(ENOTTY, raw_ioctl(c->d.fd, VHOST_GET_VRING_WORKER, &vw));
}

static unsigned int new_worker(struct __test_metadata *_metadata, struct ctx *c)
{
	struct vhost_worker_state ws = { .worker_id = ~0U };

	EXPECT_EQ(0, raw_ioctl(c->d.fd, VHOST_NEW_WORKER, &ws));
	return ws.worker_id;
}

/* The worker of vring idx (VHOST_GET_VRING_WORKER), ~0U on error. */
static unsigned int vring_worker(struct __test_metadata *_metadata,
				 struct ctx *c, unsigned int idx)
{
	struct vhost_vring_worker vw = { .index = idx, .worker_id = ~0U };

	EXPECT_EQ(0, raw_ioctl(c->d.fd, VHOST_GET_VRING_WORKER, &vw))
		TH_LOG("GET_VRING_WORKER %u", idx);
	EXPECT_EQ(idx, vw.index);
	return vw.worker_id;
}

static int attach_worker(struct ctx *c, unsigned int idx, unsigned int id)
{
	struct vhost_vring_worker vw = { .index = idx, .worker_id = id };

	return raw_ioctl(c->d.fd, VHOST_ATTACH_VRING_WORKER, &vw);
}

static int free_worker(struct ctx *c, unsigned int id)
{
	struct vhost_worker_state ws = { .worker_id = id };

	return raw_ioctl(c->d.fd, VHOST_FREE_WORKER, &ws);
}

#define MAX_WORKER_THREADS	(VHOST_BLK_MAX_VQS + 2)

/*
 * The vhost workers of this process: since 6.4 threads of the owner named
 * vhost-<pid>.  Fills tid[] and the time each has run (ns, the first
 * field of schedstat; a worker nobody woke has not run at all); returns
 * how many there are.  Not context switches: a worker woken again before
 * it got to sleep serves a stream of requests without one.
 */
static int worker_threads(pid_t *tid, long long *run_ns)
{
	char want[32], comm[32], p[96], line[128];
	struct dirent *te;
	DIR *tasks = opendir("/proc/self/task");
	int n = 0;
	FILE *f;

	if (!tasks)
		return -1;
	snprintf(want, sizeof(want), "vhost-%d\n", getpid());
	while ((te = readdir(tasks)) && n < MAX_WORKER_THREADS) {
		snprintf(p, sizeof(p), "/proc/self/task/%.16s/comm", te->d_name);
		f = fopen(p, "r");
		if (!f)
			continue;
		if (!fgets(comm, sizeof(comm), f) || strcmp(comm, want)) {
			fclose(f);
			continue;
		}
		fclose(f);
		tid[n] = atoi(te->d_name);
		run_ns[n] = -1;
		snprintf(p, sizeof(p), "/proc/self/task/%.16s/schedstat",
			 te->d_name);
		f = fopen(p, "r");
		if (f && fgets(line, sizeof(line), f))
			sscanf(line, "%lld", &run_ns[n]);
		if (f)
			fclose(f);
		n++;
	}
	closedir(tasks);
	return n;
}

/* How many worker threads this process has, waiting up to ms for want. */
static int worker_count(int want, int ms)
{
	pid_t tid[MAX_WORKER_THREADS];
	long long run_ns[MAX_WORKER_THREADS];
	uint64_t t0 = vblk_now_ms();
	int n;

	while ((n = worker_threads(tid, run_ns)) != want &&
	       vblk_now_ms() - t0 < (uint64_t)ms)
		usleep(10 * 1000);
	return n;
}

#endif /* VHOST_BLK_TEST_H */
