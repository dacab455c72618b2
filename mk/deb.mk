# SPDX-License-Identifier: GPL-2.0
# Debian packages (packaging engineer): Documentation/admin-guide.rst.
#
#   make deb        build/deb/vhost-blk-dkms_<v>_all.deb (DKMS source, udev
#                   rule) and build/deb/vhost-blk-qemu-patches_<v>_all.deb

.PHONY: deb

deb:
	@scripts/pkg/mkdeb.sh build/deb
