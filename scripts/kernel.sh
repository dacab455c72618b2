#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Fetch and cache one Debian kernel line for building and testing vhost-blk.
#
#	scripts/kernel.sh path LINE	print $CACHE/kernels/<abi> (fetch it first)
#	scripts/kernel.sh abi LINE	print the abi, e.g. 6.1.0-56-amd64 (no fetch)
#	scripts/kernel.sh version LINE	print the Debian package version (no fetch)
#	scripts/kernel.sh fetch LINE...	fetch, print nothing
#
# LINE is 6.1 (bookworm's linux-image-amd64) or 6.12 (the newest
# linux-image-6.12.*+deb12-amd64-unsigned).  The version is resolved from
# apt every time the apt lists change; image, headers, headers-common,
# kbuild and linux-source are always taken at one and the same version.
#
# Cache layout, $CACHE/kernels/<abi>/:
#   vmlinuz, vmlinux (the same kernel decompressed), config, System.map
#   modules/lib/modules/<abi>/	modules, decompressed, depmod'ed
#   headers/			image of the headers + kbuild packages
#   build -> headers/usr/src/linux-headers-<abi>	the KDIR to build against
#   src/			the few files needed from linux-source
#   VERSION			the Debian package version
#
# Knobs: VHOST_BLK_PIN_6_1 / VHOST_BLK_PIN_6_12=<abi> use that abi instead of
# the newest one; VHOST_BLK_OFFLINE=1 never asks apt, use what is cached.

set -euo pipefail

VB_PROG=kernel.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KCACHE=$VB_CACHE/kernels

# Files taken from the linux-source tarball, relative to its top directory.
# Changing this list re-extracts them on the next run.
SRC_MEMBERS=(
	drivers/vhost
	tools/testing/selftests/kselftest_harness.h
	tools/testing/selftests/kselftest.h
	scripts/checkpatch.pl
	scripts/spelling.txt
	scripts/const_structs.checkpatch
	scripts/checkstack.pl
)

usage()
{
	sed -n '4,9s/^#\t\{0,1\}//p' "$0" >&2
	exit 2
}

check_line()
{
	case "$1" in
	6.1|6.12) ;;
	*) vb_die "unknown kernel line '$1' (use 6.1 or 6.12)" ;;
	esac
}

# A stamp that changes whenever the apt lists change.
apt_lists_stamp()
{
	find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -printf '%f %T@\n' \
		2>/dev/null | sort | md5sum | cut -c1-16
}

apt_lists_present()
{
	[[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' \
		-print -quit 2>/dev/null) ]]
}

apt_update()
{
	vb_log "running apt-get update"
	vb_as_root apt-get update -qq >&2 || vb_die "apt-get update failed"
}

candidate()
{
	apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }'
}

# resolve_abi LINE - print the abi apt offers now for LINE.
resolve_abi()
{
	local line=$1 pin abi

	pin=VHOST_BLK_PIN_${line//./_}
	if [[ -n "${!pin:-}" ]]; then
		printf '%s\n' "${!pin}"
		return
	fi
	case "$line" in
	6.1)
		abi=$(apt-cache depends linux-image-amd64 2>/dev/null |
			sed -n 's/^ *Depends: linux-image-\(6\.1\.[0-9][^ ]*-amd64\)$/\1/p' |
			head -n1)
		;;
	6.12)
		abi=$(apt-cache pkgnames linux-image-6.12. 2>/dev/null |
			sed -n 's/^linux-image-\(6\.12\.[0-9]*+deb12-amd64\)-unsigned$/\1/p' |
			sort -V | tail -n1)
		;;
	esac
	printf '%s\n' "$abi"
}

image_pkg()
{
	case "$1" in
	6.1) echo "linux-image-$2" ;;
	*) echo "linux-image-$2-unsigned" ;;
	esac
}

# resolve LINE - set ABI and VER for LINE, from apt (cached per apt-lists
# state in $KCACHE/resolved-LINE) or, offline, from the last resolution.
resolve()
{
	local line=$1 memo stamp s abi ver

	memo=$KCACHE/resolved-$line
	if [[ "${VHOST_BLK_OFFLINE:-0}" = 1 ]]; then
		[[ -r "$memo" ]] || vb_die "VHOST_BLK_OFFLINE=1 but $line was never fetched"
		read -r s ABI VER <"$memo"
		return
	fi
	apt_lists_present || apt_update
	stamp=$(apt_lists_stamp)-${VHOST_BLK_PIN_6_1:-}-${VHOST_BLK_PIN_6_12:-}
	if [[ -r "$memo" ]]; then
		read -r s abi ver <"$memo"
		if [[ "$s" = "$stamp" ]]; then
			ABI=$abi VER=$ver
			return
		fi
	fi
	abi=$(resolve_abi "$line")
	if [[ -z "$abi" ]]; then
		apt_update
		stamp=$(apt_lists_stamp)-${VHOST_BLK_PIN_6_1:-}-${VHOST_BLK_PIN_6_12:-}
		abi=$(resolve_abi "$line")
	fi
	[[ -n "$abi" ]] || vb_die "apt offers no $line kernel (is bookworm-security in the apt sources?)"
	ver=$(candidate "$(image_pkg "$line" "$abi")")
	[[ -n "$ver" && "$ver" != "(none)" ]] ||
		vb_die "no candidate version for $(image_pkg "$line" "$abi")"
	mkdir -p "$KCACHE"
	printf '%s %s %s\n' "$stamp" "$abi" "$ver" >"$memo.tmp"
	mv "$memo.tmp" "$memo"
	ABI=$abi VER=$ver
}

# The package names for LINE at abi ABI, version VER.  The kbuild package is
# whatever the headers package depends on.
packages()
{
	local line=$1 abi=$2 ver=$3 kbuild

	kbuild=$(apt-cache show "linux-headers-$abi=$ver" 2>/dev/null |
		sed -n 's/^Depends:.*\(linux-kbuild-[^ ,]*\).*/\1/p' | head -n1)
	[[ -n "$kbuild" ]] || vb_die "cannot find the kbuild package of linux-headers-$abi"
	printf '%s\n' "$(image_pkg "$line" "$abi")" "linux-headers-$abi" \
		"linux-headers-${abi%-amd64}-common" "$kbuild" "linux-source-$line"
}

# Every package must exist at exactly VER: image, headers and source of one
# kernel build.  The source package's candidate is only reported.
check_versions()
{
	local line=$1 ver=$2 p c
	shift 2

	for p in "$@"; do
		if ! apt-cache madison "$p" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' |
			grep -qxF "$ver"; then
			vb_die "$p is not available at version $ver (apt-get update, or the archive moved on?)"
		fi
	done
	c=$(candidate "linux-source-$line")
	[[ "$c" = "$ver" ]] ||
		vb_warn "linux-source-$line candidate is $c, using $ver to match the image"
}

download()
{
	local dir=$1 ver=$2 p args=()
	shift 2

	for p in "$@"; do
		args+=("$p=$ver")
	done
	vb_log "downloading ${args[*]}"
	(cd "$dir" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "${args[@]}" >&2)
}

extract_image()
{
	local tmp=$1 out=$2 abi=$3 deb moddir

	deb=$(echo "$tmp"/linux-image-*.deb)
	dpkg -x "$deb" "$tmp/img"
	cp "$tmp/img/boot/vmlinuz-$abi" "$out/vmlinuz"
	cp "$tmp/img/boot/config-$abi" "$out/config"
	cp "$tmp/img/boot/System.map-$abi" "$out/System.map" 2>/dev/null || true
	make_vmlinux "$out"
	for moddir in "$tmp/img/lib/modules/$abi" "$tmp/img/usr/lib/modules/$abi"; do
		[[ -d "$moddir" ]] && break
	done
	[[ -d "$moddir" ]] || vb_die "no modules in $deb"
	mkdir -p "$out/modules/lib/modules"
	mv "$moddir" "$out/modules/lib/modules/$abi"
	rm -f "$out/modules/lib/modules/$abi/build" "$out/modules/lib/modules/$abi/source"
	vb_log "decompressing modules"
	find "$out/modules" -name '*.ko.xz' -print0 | xargs -0 -r -P"$(nproc)" -n64 xz -d
	find "$out/modules" -name '*.ko.zst' -print0 |
		xargs -0 -r -P"$(nproc)" -n64 zstd -q -d --rm
	depmod -b "$out/modules" "$abi" || vb_die "depmod failed for $abi"
}

# u32 FILE OFFSET - the little-endian 32-bit value at OFFSET.
u32()
{
	od -An -tu4 -j"$2" -N4 "$1" | tr -d ' '
}

# make_vmlinux DIR - DIR/vmlinux, the ELF kernel from DIR/vmlinuz.  QEMU
# boots it through its PVH entry point, which skips the bzImage's own
# decompression: ~7 s of every TCG boot.  The payload is located with the
# boot protocol header: setup_sects (0x1f1), payload_offset (0x248),
# payload_length (0x24c, the last 4 bytes being the decompressed size).
make_vmlinux()
{
	local dir=$1 z setup off len magic dec

	z=$dir/vmlinuz
	setup=$(od -An -tu1 -j$((0x1f1)) -N1 "$z" | tr -d ' ')
	[[ "$setup" = 0 ]] && setup=4
	off=$(( (setup + 1) * 512 + $(u32 "$z" $((0x248))) ))
	len=$(( $(u32 "$z" $((0x24c))) - 4 ))
	magic=$(od -An -tx1 -j"$off" -N4 "$z" | tr -d ' ')
	case "$magic" in
	fd377a58) dec="xz -dc --single-stream" ;;
	28b52ffd) dec="zstd -dc" ;;
	1f8b08*) dec="gzip -dc" ;;
	*) vb_warn "unknown kernel compression ($magic), booting vmlinuz"; return 0 ;;
	esac
	if dd if="$z" bs=64K iflag=skip_bytes,count_bytes skip="$off" count="$len" \
		status=none | $dec >"$dir/vmlinux.tmp" &&
		[[ "$(od -An -tx1 -N4 "$dir/vmlinux.tmp" | tr -d ' ')" = 7f454c46 ]]; then
		mv "$dir/vmlinux.tmp" "$dir/vmlinux"
	else
		vb_warn "could not extract vmlinux from $z, booting vmlinuz"
		rm -f "$dir/vmlinux.tmp"
	fi
}

extract_headers()
{
	local tmp=$1 out=$2 abi=$3 deb mk

	for deb in "$tmp"/linux-headers-*.deb "$tmp"/linux-kbuild-*.deb; do
		dpkg -x "$deb" "$out/headers"
	done
	rm -rf "$out/headers/lib/modules" "$out/headers/usr/lib/modules"
	# Debian's arch Makefile includes the common one by absolute path.
	mk=$out/headers/usr/src/linux-headers-$abi/Makefile
	[[ -f "$mk" ]] || vb_die "no $mk"
	sed -i "s#/usr/src/linux-headers-#$out/headers/usr/src/linux-headers-#g" "$mk"
	ln -sfn "headers/usr/src/linux-headers-$abi" "$out/build"
}

src_stamp()
{
	printf '%s\n' "${SRC_MEMBERS[@]}" | md5sum | cut -c1-16
}

# extract_src DEB OUT LINE - the SRC_MEMBERS files of the linux-source tarball.
extract_src()
{
	local deb=$1 out=$2 line=$3 top members=() m

	top=linux-source-$line
	for m in "${SRC_MEMBERS[@]}"; do
		members+=("$top/$m")
	done
	rm -rf "$out/src"
	mkdir -p "$out/src"
	vb_log "extracting ${#members[@]} members of $top.tar.xz"
	dpkg-deb --fsys-tarfile "$deb" |
		tar -xOf - "./usr/src/$top.tar.xz" |
		xz -dc -T0 |
		tar -xf - -C "$out/src" --strip-components=1 "${members[@]}" ||
		vb_die "extracting from $deb failed"
	src_stamp >"$out/src/.members"
}

fetch()
{
	local line=$1 out tmp pkgs t0

	resolve "$line"
	out=$KCACHE/$ABI
	ln -sfn "$ABI" "$KCACHE/line-$line"
	if [[ -f "$out/.complete" && "$(cat "$out/src/.members" 2>/dev/null)" = "$(src_stamp)" ]]; then
		# Caches made before vmlinux was extracted.
		[[ -f "$out/vmlinux" ]] || make_vmlinux "$out"
		return 0
	fi
	[[ "${VHOST_BLK_OFFLINE:-0}" = 1 ]] && vb_die "$out is incomplete and VHOST_BLK_OFFLINE=1"

	vb_lock "$KCACHE/.lock"
	# Someone else may have finished it while we waited.
	if [[ -f "$out/.complete" && "$(cat "$out/src/.members" 2>/dev/null)" = "$(src_stamp)" ]]; then
		return 0
	fi
	t0=$(vb_now)
	mapfile -t pkgs < <(packages "$line" "$ABI" "$VER")
	check_versions "$line" "$VER" "${pkgs[@]}"
	tmp=$KCACHE/.tmp-$ABI
	rm -rf "$tmp"
	mkdir -p "$tmp"
	if [[ -f "$out/.complete" ]]; then
		# Only the source member list changed.
		download "$tmp" "$VER" "linux-source-$line"
		extract_src "$tmp"/linux-source-*.deb "$out" "$line"
	else
		vb_log "fetching kernel $line: $ABI ($VER)"
		download "$tmp" "$VER" "${pkgs[@]}" ||
			{ apt_update; download "$tmp" "$VER" "${pkgs[@]}"; } ||
			vb_die "apt-get download failed"
		rm -rf "$out"
		mkdir -p "$out"
		extract_image "$tmp" "$out" "$ABI"
		extract_headers "$tmp" "$out" "$ABI"
		extract_src "$tmp"/linux-source-*.deb "$out" "$line"
		echo "$VER" >"$out/VERSION"
		touch "$out/.complete"
	fi
	rm -rf "$tmp"
	vb_log "kernel $line ($ABI) ready in $(vb_elapsed "$t0" "$(vb_now)")s: $out"
}

main()
{
	local cmd=${1:-} line

	[[ $# -ge 2 ]] || usage
	shift
	case "$cmd" in
	path)
		[[ $# -eq 1 ]] || usage
		check_line "$1"
		fetch "$1"
		echo "$KCACHE/$ABI"
		;;
	abi|version)
		# Resolve only; nothing is downloaded.
		[[ $# -eq 1 ]] || usage
		check_line "$1"
		mkdir -p "$KCACHE"
		resolve "$1"
		if [[ "$cmd" = abi ]]; then echo "$ABI"; else echo "$VER"; fi
		;;
	fetch)
		for line in "$@"; do
			check_line "$line"
			fetch "$line"
		done
		;;
	*)
		usage
		;;
	esac
}

main "$@"
