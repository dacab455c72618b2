/*
 * vhost_blk.pml - Promela model of the vhost-blk kick -> process ->
 * complete -> notify protocol for one virtqueue.
 *
 * SPDX-License-Identifier: GPL-2.0
 *
 * Processes:
 *   Submitter  the guest driver's submission path (virtio_ring add + kick)
 *   Reaper     the guest driver's interrupt path (virtblk_done loop)
 *   Worker     the vhost worker running handle_kick and complete_work
 *   Bio(r, b)  end_io of bio b of request r (irq/softirq context)
 *
 * Every step carries a label (G1, K4, C3, ...).  The step table, and
 * which barrier in drivers/vhost/blk.c (or in the vhost core it calls)
 * implements which ordering, is in Documentation/robustness.rst.
 *
 * Memory model.  Every statement is sequentially consistent, except at
 * the places where a barrier is REQUIRED: there the barrier is a
 * compile-time switch.  Defining NO_<barrier> lets the hardware reorder
 * the two accesses the barrier separates: the model then chooses
 * non-deterministically between program order and the reordered order
 * (a store that becomes visible after a later load, or two stores that
 * become visible in the opposite order).  tests/host/20-promela.sh
 * verifies the model as is, and verifies that every mutation FAILS.
 *
 * Configuration (-D on the spin command line):
 *   EVENT_IDX=0|1     VIRTIO_RING_F_EVENT_IDX negotiated or not
 *   NREQ=n            requests the guest submits (<= 4, no ring wrap)
 *   NBIO=n            bios per request (1 or 2)
 *   SPURIOUS=0|1      guest may kick although not asked (spurious/double)
 *   WEIGHT=0|1        handle_kick may stop early (vhost_exceeds_weight, or
 *                     -ENOMEM) after a request, leaving kicks disabled
 *   DETACH=0|1        a Detacher runs one VHOST_BLK_SET_BACKEND(-1) then
 *                     SET_BACKEND(fd) cycle concurrently (D1..D5)
 *   POOL=n            requests in the queue's pool (default NREQ): with
 *                     all n in flight handle_kick stops (K9) and the
 *                     completion that frees one requeues it (C7)
 * Mutations (each must make verification fail):
 *   NO_MB_GUEST_KICK       G3 missing: avail->idx store after flags load
 *   NO_MB_ENABLE_NOTIFY    K5 missing: avail_event/flags store after re-read
 *   SKIP_RECHECK           K6 missing: no re-check of avail after enable
 *   NO_MB_SIGNAL           C4 missing: used->idx store after used_event load
 *   NO_MB_GUEST_ENABLE_CB  R4 missing: used_event store after used->idx load
 *   NO_WMB_USED            C3 missing: used->idx visible before status/entry
 *   NO_RELEASE_LLIST       E4 not release: request published before status
 *   NO_MB_BIO_DEC          E2 not ordered: error bit stored after the dec
 *   NO_MB_WORK_QUEUE       Q1 not a barrier: QUEUED read before llist_add
 *   NO_MB_WORK_CLEAR       W2 not ordered: completed list read before the
 *                          QUEUED bit is cleared
 *   SHORTCUT_WAKE          lesson 002: end_io skips queueing the work when
 *                          the worker "is surely running anyway"
 *   NO_REQUEUE_ON_WEIGHT   K7 missing: stopping early without requeueing
 *                          the kick work (kicks are still disabled)
 *   NO_KICK_ON_ATTACH      D5 missing: attach does not queue the kick work
 *                          for what the guest added while detached
 *   NO_KICK_ON_FREE        C7 missing: a completion frees a request of a
 *                          starved queue without requeueing the kick work
 *   NO_COMPLETE_AFTER_KICK K8 missing: the kick handler does not end with
 *                          vhost_blk_complete(), on which a request whose
 *                          bios all ended during submission relies (K3b)
 */

#ifndef EVENT_IDX
#define EVENT_IDX 1
#endif
#ifndef NREQ
#define NREQ 3
#endif
#ifndef NBIO
#define NBIO 1
#endif
#ifndef SPURIOUS
#define SPURIOUS 1
#endif
#ifndef WEIGHT
#define WEIGHT 0
#endif
#ifndef DETACH
#define DETACH 0
#endif
#ifndef POOL
#define POOL NREQ
#endif

#define ST_GARBAGE 0	/* never written: lesson 000's -1886218542 */
#define ST_OK      1
#define ST_IOERR   2
#define NO_ENTRY   255	/* used ring entry never written */

#define KICK 0		/* vq->poll.work: handle_kick */
#define COMP 1		/* bvq->complete_work */

/* ---- guest memory: the split ring and the request status bytes ---- */
byte avail_idx;			/* avail->idx, written by the guest */
bool avail_no_intr;		/* avail->flags & VRING_AVAIL_F_NO_INTERRUPT */
byte used_event;		/* used_event (avail->ring[num]) */
byte used_idx;			/* used->idx, written by the device */
byte used_ring[NREQ];		/* used->ring[i].id */
bool used_no_notify;		/* used->flags & VRING_USED_F_NO_NOTIFY */
byte avail_event;		/* avail_event (used->ring[num]) */
byte status[NREQ];		/* the request's status byte in guest memory */

/* ---- eventfds ---- */
byte call_cnt;			/* call eventfd counter (guest interrupt) */

/* ---- device (vhost-blk) state ---- */
/* (vq->used_flags shadow, last_avail_idx, avail_idx, last_used_idx,
 * signalled_used[_valid] are the Worker's locals: only it touches them) */
bool reinit;			/* vhost_vq_init_access() pending (attach) */
bool taken[NREQ];		/* ghost: the device popped the request */
bool inflight[NREQ];		/* bios submitted, request not yet on llist */
byte pending[NREQ];		/* bios of the request not yet ended */
bool bio_err[NREQ];		/* some bio of the request failed */
byte req_status[NREQ];		/* req->status, written by the last end_io */
bool on_completed[NREQ];	/* on bvq->completed (llist) */
bool returned[NREQ];		/* device wrote the used entry (exactly once) */

bool backend = 1;		/* vhost_vq_get_backend(vq) != NULL */
bool vq_mutex;			/* vq->mutex (worker vs. SET_BACKEND) */
byte dev_inflight;		/* blk->inflight: requests with bios out */
byte dev_inuse;			/* requests taken from the pool, not returned */
bool starved;			/* bvq->starved: handle_kick found no request */

/* ---- vhost core: work flags and the worker's work list ---- */
bool queued[2];			/* VHOST_WORK_QUEUED */
bool on_worklist[2];		/* on worker->work_list */
bool worker_busy;		/* only used by the SHORTCUT_WAKE mutation */

/* ---- ghost state for the properties ---- */
/* NB: an option of an if/do never starts with a nested if that has an
 * else branch: spin then evaluates that else against the outer
 * selection.  Such options start with skip. */
bool ghost_err[NREQ];		/* a bio of the request failed (truth) */
bool got[NREQ];			/* the guest reaped the request */
byte reaped;			/* number of requests the guest reaped */

/* vring_need_event(event, new, old) on 8-bit indices (no wrap here) */
#define NEED_EVENT(ev, nw, ol) \
	((((nw) - (ev) - 1) & 255) < (((nw) - (ol)) & 255))

/* Q1+Q2: vhost_work_queue / vhost_vq_work_queue -> vhost_worker_queue */
inline work_queue(w, old)
{
	atomic { old = queued[w]; queued[w] = 1 };	/* Q1 test_and_set_bit */
	if
	:: !old -> on_worklist[w] = 1			/* Q2 llist_add + wakeup */
	:: else -> skip
	fi
}

/* K1: vhost_disable_notify */
inline disable_notify()
{
	if
	:: !dev_no_notify ->
		dev_no_notify = 1;
		if
		:: !EVENT_IDX -> used_no_notify = 1
		:: else -> skip
		fi
	:: else -> skip
	fi
}

/* K4: the store half of vhost_enable_notify */
inline enable_store()
{
	if
	:: !EVENT_IDX -> used_no_notify = 0
	:: else -> avail_event = dev_avail
	fi
}

/* K2..K6: handle_kick (vq->mutex held; runs on the worker) */
inline handle_kick(a, more)
{
	disable_notify();				/* K1 */
	do
	:: true ->
		/* K9: no free request in the pool: stop, kicks disabled */
		if
		:: dev_inuse == POOL -> starved = 1; break
		:: else -> skip
		fi;
		/* K2: vhost_get_vq_desc: refresh the cached avail->idx */
		if
		:: last_avail == dev_avail -> dev_avail = avail_idx
		:: else -> skip
		fi;
		if
		:: last_avail != dev_avail ->
			/* K3: pop the chain (after smp_rmb), build and
			 * submit its bios; the request is now in flight */
			atomic {
				assert(last_avail < NREQ);
				/* the bios, plus the submission's reference */
				pending[last_avail] = NBIO + 1;
				dev_inflight++;
				dev_inuse++;
				taken[last_avail] = 1;
				inflight[last_avail] = 1;
				last_avail++
			};
			/* K3b: vhost_blk_handle_req() drops the submission's
			 * reference (E2).  If every bio has ended already
			 * (inside submit_bio, as on brd) the worker publishes
			 * the request itself (E3, E4, E6) WITHOUT queueing
			 * complete_work: K8 returns it */
			sr = last_avail - 1;
			atomic { pending[sr]--; slast = (pending[sr] == 0) };
			if
			:: slast ->
				if
				:: bio_err[sr] -> req_status[sr] = ST_IOERR
				:: else -> req_status[sr] = ST_OK
				fi;
				inflight[sr] = 0;
				on_completed[sr] = 1;
				dev_inflight--
			:: else -> skip
			fi;
			sr = 0; slast = 0;
			/* K7: vhost_exceeds_weight() (or -ENOMEM): stop
			 * here, kicks still disabled: requeue ourselves */
			if
			:: WEIGHT ->
#ifndef NO_REQUEUE_ON_WEIGHT
				work_queue(KICK, old);
#endif
				break
			:: true -> skip
			fi
		:: else ->
			/* ring empty: vhost_enable_notify */
			more = 0;
			if
			:: dev_no_notify ->
				dev_no_notify = 0;
#ifdef NO_MB_ENABLE_NOTIFY
				if
				:: skip; enable_store(); a = avail_idx
				:: a = avail_idx; enable_store()
				fi;
#else
				enable_store();			/* K4 */
				/* K5: smp_mb() */
				a = avail_idx;			/* K6 */
#endif
				more = (a != dev_avail);
				if
				:: more -> dev_avail = a
				:: else -> skip
				fi
			:: else -> skip
			fi;
#ifdef SKIP_RECHECK
			more = 0;
#endif
			if
			:: more -> disable_notify()		/* K6: go on */
			:: else -> break
			fi
		fi
	od;
	a = 0; more = 0
}

/* C1..C6: complete_work (vq->mutex held; runs on the worker) */
inline complete_work()
{
	/* C1: llist_del_all(&bvq->completed): acquire */
	n = 0;
	atomic {
		for (i : 0 .. NREQ - 1) {
			mine[i] = on_completed[i];
			on_completed[i] = 0
		}
	};
#ifdef NO_MB_WORK_CLEAR
	if
	:: !cleared -> queued[COMP] = 0; cleared = 1
	:: else -> skip
	fi;
#endif
#ifdef NO_WMB_USED
	/* C3's smp_wmb missing: used->idx may become visible before the
	 * status bytes and the used entries written in C2 */
	atomic {
		for (i : 0 .. NREQ - 1) {
			if
			:: mine[i] -> n++
			:: else -> skip
			fi
		};
		i = 0
	};
	if
	:: n > 0 -> used_idx = dev_used + n
	:: skip
	fi;
	n = 0;
#endif
	/* C2: per request: status byte to guest memory, used entry
	 * (one atomic step: the guest reads none of it before C3) */
	atomic {
		for (i : 0 .. NREQ - 1) {
			if
			:: mine[i] ->
				assert(req_status[i] == ST_OK ||
				       req_status[i] == ST_IOERR);
				assert(!returned[i]);
				returned[i] = 1;
				status[i] = req_status[i];
				used_ring[dev_used] = i;
				dev_used++;
				dev_inuse--;
				n++;
				mine[i] = 0
			:: else -> skip
			fi
		};
		i = 0
	};
	if
	:: n > 0 ->
#ifdef NO_MB_SIGNAL
		/* C4 missing: the used_event/flags load may pass the
		 * used->idx store */
		if
		:: used_idx = dev_used;				/* C3 */
			ev = (EVENT_IDX -> used_event : avail_no_intr)
		:: ev = (EVENT_IDX -> used_event : avail_no_intr);
			used_idx = dev_used
		fi;
#else
		/* C3: vhost_add_used_n: smp_wmb(); used->idx */
		used_idx = dev_used;
		/* C4: vhost_signal -> vhost_notify: smp_mb() */
		/* C5: read used_event / avail->flags */
		ev = (EVENT_IDX -> used_event : avail_no_intr);
#endif
		if
		:: EVENT_IDX ->
			notify = (!signalled_valid ||
				  NEED_EVENT(ev, dev_used, signalled_used));
			signalled_used = dev_used;
			signalled_valid = 1
		:: else -> notify = !ev
		fi;
		if
		:: notify -> call_cnt++				/* C6 */
		:: else -> skip
		fi;
#ifndef NO_KICK_ON_FREE
		/* C7: requests are free again: requeue a starved kick */
		if
		:: starved -> starved = 0; work_queue(KICK, old)
		:: else -> skip
		fi
#else
		skip
#endif
	:: else -> skip
	fi;
	n = 0; ev = 0; notify = 0
}

active proctype Worker()
{
	bool gk, gc, old, more, notify, cleared, slast;
	byte a, i, n, ev, sr;
	bool mine[NREQ];
	bool dev_no_notify;	/* vq->used_flags & VRING_USED_F_NO_NOTIFY */
	byte last_avail;	/* vq->last_avail_idx */
	byte dev_avail;		/* vq->avail_idx (cached avail->idx) */
	byte dev_used;		/* vq->last_used_idx */
	byte signalled_used;	/* vq->signalled_used */
	bool signalled_valid;	/* vq->signalled_used_valid */

end_idle:
	/* W1: woken: llist_del_all(&worker->work_list) */
	atomic {
		(on_worklist[KICK] || on_worklist[COMP]) ->
		gk = on_worklist[KICK];
		gc = on_worklist[COMP];
		on_worklist[KICK] = 0;
		on_worklist[COMP] = 0;
		worker_busy = 1
	};
	do
	:: gk ->
		gk = 0;
		queued[KICK] = 0;				/* W2 */
		vq_mutex = 1;
		if
		:: reinit -> reinit = 0; signalled_valid = 0
		:: else -> skip
		fi;
		if
		:: backend ->
			handle_kick(a, more);
#ifndef NO_COMPLETE_AFTER_KICK
			/* K8: the kick handler ends with vhost_blk_complete() */
			cleared = 1;
			complete_work()
#else
			skip
#endif
		:: else -> skip		/* no backend: leave the ring alone */
		fi;
		vq_mutex = 0
	:: gc ->
		gc = 0;
#ifdef NO_MB_WORK_CLEAR
		cleared = 0;
		complete_work();
		if
		:: !cleared -> queued[COMP] = 0
		:: else -> skip
		fi
#else
		queued[COMP] = 0;				/* W2 */
		vq_mutex = 1;
		complete_work();
		vq_mutex = 0
#endif
	:: !gk && !gc -> break
	od;
	worker_busy = 0;
	goto end_idle
}

/* E1..E5: bio end_io of bio b of request r (irq / softirq context) */
proctype Bio(byte r; byte b)
{
	bool last, old, fail;

end_wait:
	inflight[r] && pending[r] > 0;
	/* the backend decides: this bio succeeds or fails */
	if
	:: fail = 1; ghost_err[r] = 1
	:: fail = 0
	fi;
#ifdef NO_MB_BIO_DEC
	/* the error store may become visible after the decrement */
	if
	:: bio_err[r] = (bio_err[r] || fail);
		atomic { pending[r]--; last = (pending[r] == 0) }
	:: atomic { pending[r]--; last = (pending[r] == 0) };
		bio_err[r] = (bio_err[r] || fail)
	fi;
#else
	if
	:: fail -> bio_err[r] = 1			/* E1 */
	:: else -> skip
	fi;
	/* E2: atomic_dec_and_test(): fully ordered */
	atomic { pending[r]--; last = (pending[r] == 0) };
#endif
	if
	:: !last -> goto done
	:: else -> skip
	fi;
#ifdef NO_RELEASE_LLIST
	/* the llist_add may become visible before the status store */
	if
	:: if					/* E3 */
		:: bio_err[r] -> req_status[r] = ST_IOERR
		:: else -> req_status[r] = ST_OK
		fi;
		inflight[r] = 0;
		on_completed[r] = 1			/* E4 */
	:: inflight[r] = 0;
		on_completed[r] = 1;			/* E4 */
		if					/* E3 */
		:: bio_err[r] -> req_status[r] = ST_IOERR
		:: else -> req_status[r] = ST_OK
		fi
	fi;
#else
	/* E3: the last bio computes req->status */
	if
	:: bio_err[r] -> req_status[r] = ST_IOERR
	:: else -> req_status[r] = ST_OK
	fi;
	inflight[r] = 0;
#ifndef NO_MB_WORK_QUEUE
	/* E4: llist_add(&req->node, &bvq->completed): release */
	on_completed[r] = 1;
#endif
#endif
#ifdef SHORTCUT_WAKE
	if
	:: worker_busy -> goto done	/* "it will see the request anyway" */
	:: else -> skip
	fi;
#endif
	/* E5: vhost_vq_work_queue(vq, &bvq->complete_work) */
#ifdef NO_MB_WORK_QUEUE
	/* Q1 no barrier: the QUEUED test may be performed before the
	 * llist_add of E4 is visible */
	if
	:: on_completed[r] = 1;			/* E4 */
		work_queue(COMP, old)
	:: atomic { old = queued[COMP]; queued[COMP] = 1 };
		on_completed[r] = 1;
		if
		:: !old -> on_worklist[COMP] = 1
		:: else -> skip
		fi
	fi;
#else
	work_queue(COMP, old);
#endif
done:
	/* E6: vhost_blk_req_done: blk->inflight-- (spinlock), wake drain */
	if
	:: last -> dev_inflight--
	:: else -> skip
	fi;
	fail = 0; last = 0; old = 0
}

#if DETACH
/* D1..D5: VHOST_BLK_SET_BACKEND(-1) then SET_BACKEND(fd), concurrently */
active proctype Detacher()
{
	bool old;
	byte i;

	/* D1: vhost_vq_set_backend(vq, NULL) under vq->mutex */
	atomic { !vq_mutex -> backend = 0 };
	/* D2: vhost_blk_drain: wait_event(idle_wait, inflight == 0) */
	dev_inflight == 0;
	/* D3: vhost_dev_flush: the worker ran everything queued before */
	atomic { !on_worklist[KICK] && !on_worklist[COMP] && !worker_busy -> skip };
	/* the uapi promise: every request the device took was returned */
	atomic {
		for (i : 0 .. NREQ - 1) {
			assert(!taken[i] || returned[i])
		};
		i = 0
	};
	/* D4: attach: vhost_vq_set_backend + vhost_vq_init_access */
	atomic { !vq_mutex -> backend = 1; reinit = 1 };
#ifndef NO_KICK_ON_ATTACH
	/* D5: vhost_poll_queue(): serve what the guest added meanwhile */
	work_queue(KICK, old)
#endif
}
#endif

active proctype Submitter()
{
	byte i, nw, old_avail, ev;
	bool need, old;

	i = 0;
	old_avail = 0;
	do
	:: i < NREQ ->
		/* G1: descriptors and avail->ring[i] = request i */
		/* G2: virtio_wmb(); avail->idx = i + 1 */
		nw = i + 1;
		i++;
		if
		:: i < NREQ ->		/* batch: add the next one first */
			avail_idx = nw
		:: true ->
			/* virtqueue_kick_prepare */
#ifdef NO_MB_GUEST_KICK
			if
			:: avail_idx = nw;
				ev = (EVENT_IDX -> avail_event : used_no_notify)
			:: ev = (EVENT_IDX -> avail_event : used_no_notify);
				avail_idx = nw
			fi;
#else
			avail_idx = nw;
			/* G3: virtio_mb() */
			/* G4: read avail_event / used->flags */
			ev = (EVENT_IDX -> avail_event : used_no_notify);
#endif
			if
			:: EVENT_IDX -> need = NEED_EVENT(ev, nw, old_avail)
			:: else -> need = !ev
			fi;
			old_avail = nw;
			/* G5: kick: ioeventfd -> vhost_poll_wakeup -> queue */
			if
			:: need -> work_queue(KICK, old)
			:: !need && SPURIOUS -> work_queue(KICK, old)
			:: !need -> skip
			fi;
			if
			:: SPURIOUS -> work_queue(KICK, old)	/* double kick */
			:: skip
			fi;
			ev = 0; need = 0; old = 0
		fi
	:: else -> break
	od
}

active proctype Reaper()
{
	byte last_used, r, u;
	bool shadow_noint;

	do
	:: reaped == NREQ -> break
	:: else ->
		/* R0: the interrupt: call eventfd -> irqfd -> vring_interrupt */
		atomic { call_cnt > 0 -> call_cnt = 0 };
		do
		:: true ->
			/* R1: virtqueue_disable_cb */
			if
			:: !shadow_noint ->
				shadow_noint = 1;
				if
				:: EVENT_IDX -> used_event = 0
				:: else -> avail_no_intr = 1
				fi
			:: else -> skip
			fi;
			/* R2: virtqueue_get_buf loop */
			do
			:: u = used_idx;
				if
				:: u != last_used ->
					/* virtio_rmb() */
					r = used_ring[last_used];
					assert(r < NREQ);
					assert(!got[r]);
					assert(status[r] == ST_OK ||
					       status[r] == ST_IOERR);
					assert((status[r] == ST_IOERR) ==
					       ghost_err[r]);
					got[r] = 1;
					last_used++;
					reaped++;
					r = 0
				:: else -> break
				fi
			od;
			/* R3: virtqueue_enable_cb_prepare */
			shadow_noint = 0;
#ifdef NO_MB_GUEST_ENABLE_CB
			if
			:: skip;	/* (no nested else in guard position) */
				if
				:: EVENT_IDX -> used_event = last_used
				:: else -> avail_no_intr = 0
				fi;
				u = used_idx
			:: u = used_idx;
				if
				:: EVENT_IDX -> used_event = last_used
				:: else -> avail_no_intr = 0
				fi
			fi;
#else
			if
			:: EVENT_IDX -> used_event = last_used
			:: else -> avail_no_intr = 0
			fi;
			/* R4: virtio_mb() */
			u = used_idx;				/* R5 */
#endif
			if
			:: u == last_used -> u = 0; break
			:: else -> skip
			fi
		od
	od;
	assert(reaped == NREQ)
}

init
{
	byte r, b;

	atomic {
		for (r : 0 .. NREQ - 1) {
			used_ring[r] = NO_ENTRY;
			for (b : 1 .. NBIO) {
				run Bio(r, b)
			}
		}
	}
}

/* Liveness: every request the guest submits is eventually completed
 * by the device AND seen by the guest, i.e. no notification in either
 * direction is lost (a lost wake-up stops the system with reaped < NREQ,
 * which spin stutter-extends into a counterexample). */
ltl all_reaped { <> (reaped == NREQ) }
