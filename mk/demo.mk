# SPDX-License-Identifier: GPL-2.0
# `make demo` (QEMU engineer): see scripts/demo.sh and Documentation/qemu.rst.

.PHONY: demo qemu guest

demo:
	@scripts/demo.sh

qemu:
	@scripts/qemu-build.sh

guest:
	@scripts/guest-build.sh
