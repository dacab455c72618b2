# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# What the packaging VM suites (tests/vm/60-autoload.sh, 65-dkms.sh) share
# (sourced, after scripts/pkg/vmroot.sh; REPO is the repository):
#
#	ok DESC, notok DESC	one numbered TAP line (scripts/lib.sh)
#	t DESC CMD...		one case from CMD's status, the last lines of
#				its output and its time as comments
#	loaded			vhost_blk is loaded
#	udevd_start		Debian's udevd (scripts/pkg/udev.sh) in the
#				overlay root, as on any Debian system: it
#				applies the rules packages install
#	udevd_stop		stop it (if udevd_start started it)
#	pkg_finish CLEANUP	run CLEANUP, print the plan, exit 1 after a
#				failed case

# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

t()
{
	local name=$1 out rc t0=$SECONDS

	shift
	out=$("$@" 2>&1)
	rc=$?
	[ -n "$out" ] && sed 's/^/# /' <<<"$out" | tail -20
	echo "# $((SECONDS - t0)) s"
	if [ $rc -eq 0 ]; then ok "$name"; else notok "$name (rc $rc)"; fi
	return $rc
}

loaded() { grep -q '^vhost_blk ' /proc/modules; }

UDEVD_STARTED=0

udevd_start()
{
	local udev

	udev=$("$REPO/scripts/pkg/udev.sh" --cached) || return 1
	mkdir -p "$VR_ROOT/run/vbudev"
	ln -sfn "$udev/bin/udevadm" "$VR_ROOT/run/vbudev/systemd-udevd"
	ln -sfn "$udev/bin/udevadm" "$VR_ROOT/run/vbudev/udevadm"
	vr_run /run/vbudev/systemd-udevd --daemon || return 1
	UDEVD_STARTED=1
}

udevd_stop()
{
	[ "$UDEVD_STARTED" = 1 ] && vr_run /run/vbudev/udevadm control --exit >/dev/null 2>&1
	UDEVD_STARTED=0
	return 0
}

pkg_finish()
{
	"$1"
	tap_done
	exit $?
}
