#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 15-trace.sh - the vhost_blk:* trace events (drivers/vhost/blk_trace.h),
# inside the VM (TAP).  They are enabled while vblk_stress runs (random
# request types, layouts, detach/attach) and every vhost_blk_req_start must
# be matched by exactly one later vhost_blk_req_done of the same
# (dev, vq, head), with a valid status and a latency; attach and detach
# events must be there too.
#   VHOST_BLK_TRACE_SECONDS  stress duration (default 10)
set -u
. "$(dirname "$0")/../../scripts/lib.sh"
TOOL=$VB_REPO/build/tools/vblk_stress
SECS=${VHOST_BLK_TRACE_SECONDS:-10}
DEV=/dev/ram2
T=/sys/kernel/tracing
finish() { tap_done; exit $?; }

[ -d $T/events ] || mount -t tracefs nodev $T 2>/dev/null
if [ ! -x "$TOOL" ] || [ ! -d $T/events/vhost_blk ]; then
	notok "trace: $TOOL and $T/events/vhost_blk present"
	finish
fi

echo 0 >$T/tracing_on
: >$T/trace
echo 8192 >$T/buffer_size_kb
echo 1 >$T/events/vhost_blk/enable
echo 1 >$T/tracing_on
timeout $((SECS + 240)) "$TOOL" --dev $DEV --seconds "$SECS" --queues 4 >/tmp/vblk_trace_stress.log 2>&1
rc=$?
echo 0 >$T/tracing_on
echo 0 >$T/events/vhost_blk/enable
out=/tmp/vblk_trace.txt
cat $T/trace >$out
: >$T/trace
echo 1408 >$T/buffer_size_kb

if [ "$rc" -eq 0 ]; then
	ok "trace: vblk_stress with the events enabled ($(tail -n 1 /tmp/vblk_trace_stress.log))"
else
	notok "trace: vblk_stress with the events enabled (exit $rc)"
	sed 's/^/# /' /tmp/vblk_trace_stress.log | tail -n 20
fi

# Pair start/done per (dev, vq, head); report what does not pair.
res=$(awk '
	/vhost_blk_req_start:/ || /vhost_blk_req_done:/ {
		ev = ($0 ~ /req_start:/) ? "s" : "d"
		dev = vq = head = st = lat = ""
		for (i = 1; i <= NF; i++) {
			split($i, kv, "=")
			if (kv[1] == "dev") dev = kv[2]
			else if (kv[1] == "vq") vq = kv[2]
			else if (kv[1] == "head") head = kv[2]
			else if (kv[1] == "status") st = kv[2]
			else if (kv[1] == "latency_ns") lat = kv[2]
		}
		k = dev "/" vq "/" head
		if (ev == "s") {
			starts++
			if (open[k]) bad_double++
			open[k] = 1
		} else {
			dones++
			if (!open[k]) bad_orphan++
			open[k] = 0
			if (st != 0 && st != 1 && st != 2) bad_status++
			if (lat + 0 <= 0) bad_lat++
		}
	}
	/vhost_blk_attach:/ { attach++ }
	/vhost_blk_detach:/ { detach++ }
	/LOST [0-9]+ EVENTS/ { lost++ }
	END {
		for (k in open) if (open[k]) unmatched++
		printf "%d %d %d %d %d %d %d %d %d %d\n", starts, dones, unmatched,
			bad_double, bad_orphan, bad_status, bad_lat, attach, detach, lost
	}' $out)
read -r starts dones unmatched double orphan status lat attach detach lost <<<"$res"
echo "# trace: $starts starts, $dones dones, $attach attach, $detach detach events"
if [ "$lost" -eq 0 ]; then
	ok "trace: no events lost (buffer large enough)"
else
	notok "trace: $lost LOST EVENTS markers in the trace"
fi
if [ "$starts" -ge 5 ] && [ "$starts" -eq "$dones" ] && [ "$unmatched" -eq 0 ] &&
   [ "$double" -eq 0 ] && [ "$orphan" -eq 0 ]; then
	ok "trace: every vhost_blk_req_start has one vhost_blk_req_done ($starts pairs)"
else
	notok "trace: start/done pairs: starts=$starts dones=$dones unmatched=$unmatched restarted=$double orphan=$orphan"
fi
if [ "$dones" -gt 0 ] && [ "$status" -eq 0 ] && [ "$lat" -eq 0 ]; then
	ok "trace: every vhost_blk_req_done has status 0..2 and a latency"
else
	notok "trace: vhost_blk_req_done with a bad status ($status) or no latency ($lat)"
fi
if [ "$attach" -ge 1 ] && [ "$detach" -ge 1 ]; then
	ok "trace: vhost_blk_attach and vhost_blk_detach events"
else
	notok "trace: attach ($attach) / detach ($detach) events missing"
fi
rm -f $out
finish
