// SPDX-License-Identifier: GPL-2.0
/*
 * vbcount: a QEMU TCG plugin for `make bench`.
 *
 * Counts the guest instructions executed by each vCPU (like QEMU's
 * tests/plugin/bb.c without inline mode) and prints a snapshot of every
 * vCPU's running total, with the host's monotonic time, each time a vCPU
 * executes the marker instruction
 *
 *	nopl 0x4b4d4256(%rax,%rax,1)	(0f 1f 84 00 56 42 4d 4b, "VBMK")
 *
 * which is a no-op on every x86-64 CPU and appears in no ordinary code.
 * scripts/bench/vbmark.c executes it; because the counts cover every level
 * the emulated CPU runs (L1 kernel and user space, and an L2 guest under
 * nested SVM), a marker executed in the L2 guest brackets exactly what
 * the whole machine spent between two points of a guest's program.
 *
 * With profile=on it also counts instructions per translated block and,
 * at each marker, prints the blocks executed since the previous marker
 * (virtual address, host address of the code, instructions, executions),
 * most expensive first, up to the share of the interval given by
 * profile_pct (default 99.5).  scripts/bench/profiles.py maps them to
 * kernel symbols.
 *
 * Output (qemu_plugin_outs, i.e. "-d plugin -D FILE"):
 *	vbcount: mark SEQ ns=T total=N cpu0=N cpu1=N ...
 *	vbcount: prof SEQ VADDR HADDR INSNS EXECS
 *	vbcount: exit ns=T total=N cpu0=N ...
 *
 * By default the count is one inline add per translated block into a single
 * counter (no helper call: the least perturbation of the guest's timing),
 * exact with one TCG thread for all vCPUs (-accel tcg,thread=single, as
 * scripts/vm-run.sh runs), and the snapshots print it as cpu0.  percpu=on
 * counts per vCPU with a callback per block instead (exact with several
 * TCG threads too, but it slows the emulated machine down several times).
 * Per-block counts (profile=on, callbacks) are exact with one TCG thread.
 */
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static const uint8_t marker[8] = { 0x0f, 0x1f, 0x84, 0x00, 'V', 'B', 'M', 'K' };

struct vcpu_count {
	uint64_t insns;
	char pad[56];		/* one cache line per vCPU */
};

struct block {
	uint64_t vaddr;
	uint64_t haddr;
	uint64_t n_insns;
	uint64_t execs;
};

static struct vcpu_count *counts;
static int ncpus;
static bool percpu;
static bool profile;
static double profile_pct = 99.5;
static GMutex lock;		/* the block table and the marker sequence */
static GHashTable *blocks;	/* (vaddr ^ haddr) -> struct block */
static uint64_t mark_seq;

static void print_totals(GString *s)
{
	uint64_t total = 0;
	int i;

	for (i = 0; i < ncpus; i++)
		total += __atomic_load_n(&counts[i].insns, __ATOMIC_RELAXED);
	g_string_append_printf(s, " ns=%" PRId64 " total=%" PRIu64,
			       g_get_monotonic_time() * 1000, total);
	for (i = 0; i < ncpus; i++)
		g_string_append_printf(s, " cpu%d=%" PRIu64, i,
				       __atomic_load_n(&counts[i].insns,
						       __ATOMIC_RELAXED));
	g_string_append_c(s, '\n');
}

static gint by_insns_desc(gconstpointer a, gconstpointer b)
{
	const struct block *x = *(struct block * const *)a;
	const struct block *y = *(struct block * const *)b;
	uint64_t cx = x->execs * x->n_insns, cy = y->execs * y->n_insns;

	return cx < cy ? 1 : cx > cy ? -1 : 0;
}

/* Print the blocks run since the last marker and reset them; lock held. */
static void dump_profile(uint64_t seq)
{
	GPtrArray *run = g_ptr_array_new();
	GHashTableIter it;
	gpointer value;
	uint64_t sum = 0, acc = 0;
	guint i;

	g_hash_table_iter_init(&it, blocks);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		struct block *b = value;

		if (b->execs) {
			g_ptr_array_add(run, b);
			sum += b->execs * b->n_insns;
		}
	}
	g_ptr_array_sort(run, by_insns_desc);
	for (i = 0; i < run->len && acc < sum * (profile_pct / 100.0); i++) {
		struct block *b = g_ptr_array_index(run, i);
		g_autofree char *line = NULL;

		acc += b->execs * b->n_insns;
		line = g_strdup_printf("vbcount: prof %" PRIu64 " 0x%" PRIx64
				       " 0x%" PRIx64 " %" PRIu64 " %" PRIu64 "\n",
				       seq, b->vaddr, b->haddr,
				       b->execs * b->n_insns, b->execs);
		qemu_plugin_outs(line);
	}
	for (i = 0; i < run->len; i++)
		((struct block *)g_ptr_array_index(run, i))->execs = 0;
	g_ptr_array_free(run, TRUE);
}

static void on_marker(unsigned int cpu, void *udata)
{
	g_autoptr(GString) s = g_string_new("");
	uint64_t seq;

	g_mutex_lock(&lock);
	seq = mark_seq++;
	g_string_printf(s, "vbcount: mark %" PRIu64, seq);
	print_totals(s);
	qemu_plugin_outs(s->str);
	if (profile)
		dump_profile(seq);
	g_mutex_unlock(&lock);
}

static void on_tb(unsigned int cpu, void *udata)
{
	/* Each vCPU writes only its own counter. */
	counts[cpu].insns += (uintptr_t)udata;
}

static void on_tb_profile(unsigned int cpu, void *udata)
{
	struct block *b = udata;

	counts[cpu].insns += b->n_insns;
	b->execs++;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb), i;

	for (i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);

		if (qemu_plugin_insn_size(insn) == sizeof(marker) &&
		    !memcmp(qemu_plugin_insn_data(insn), marker, sizeof(marker)))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker,
							       QEMU_PLUGIN_CB_NO_REGS,
							       NULL);
	}
	if (profile) {
		struct qemu_plugin_insn *first = qemu_plugin_tb_get_insn(tb, 0);
		uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
		uint64_t haddr = (uintptr_t)qemu_plugin_insn_haddr(first);
		uint64_t key = vaddr ^ (haddr << 1) ^ ((uint64_t)n << 56);
		struct block *b;

		g_mutex_lock(&lock);
		b = g_hash_table_lookup(blocks, &key);
		if (!b) {
			uint64_t *k = g_new(uint64_t, 1);

			b = g_new0(struct block, 1);
			b->vaddr = vaddr;
			b->haddr = haddr;
			b->n_insns = n;
			*k = key;
			g_hash_table_insert(blocks, k, b);
		}
		g_mutex_unlock(&lock);
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_profile,
						     QEMU_PLUGIN_CB_NO_REGS, b);
	} else if (percpu) {
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb,
						     QEMU_PLUGIN_CB_NO_REGS,
						     (void *)(uintptr_t)n);
	} else {
		qemu_plugin_register_vcpu_tb_exec_inline(tb,
							 QEMU_PLUGIN_INLINE_ADD_U64,
							 &counts[0].insns, n);
	}
}

static void on_plugin_exit(qemu_plugin_id_t id, void *p)
{
	g_autoptr(GString) s = g_string_new("vbcount: exit");

	print_totals(s);
	qemu_plugin_outs(s->str);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
					   const qemu_info_t *info,
					   int argc, char **argv)
{
	int i;

	for (i = 0; i < argc; i++) {
		g_auto(GStrv) kv = g_strsplit(argv[i], "=", 2);

		if (!g_strcmp0(kv[0], "percpu") && kv[1]) {
			if (!qemu_plugin_bool_parse(kv[0], kv[1], &percpu))
				goto bad;
		} else if (!g_strcmp0(kv[0], "profile") && kv[1]) {
			if (!qemu_plugin_bool_parse(kv[0], kv[1], &profile))
				goto bad;
		} else if (!g_strcmp0(kv[0], "profile_pct") && kv[1]) {
			profile_pct = g_ascii_strtod(kv[1], NULL);
			if (profile_pct <= 0 || profile_pct > 100)
				goto bad;
		} else {
			goto bad;
		}
		continue;
bad:
		fprintf(stderr, "vbcount: bad option %s (percpu=on|off, profile=on|off, profile_pct=P)\n",
			argv[i]);
		return -1;
	}
	ncpus = info->system_emulation ? info->system.max_vcpus : 1;
	if (ncpus < 1)
		ncpus = 1;
	counts = g_new0(struct vcpu_count, ncpus);
	blocks = g_hash_table_new(g_int64_hash, g_int64_equal);
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
	return 0;
}
