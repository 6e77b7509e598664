#!/bin/sh
# build.sh: the apk (v3) package of an ipk, for OpenWrt releases that
# replaced opkg with apk (24.10 snapshots onwards). Same files, modes and
# maintainer scripts as the ipk deploy/openwrt/ipk/build.sh made; `make
# openwrt` calls it after that when apk-tools 3 is installed.
#
#   sh deploy/openwrt/apk/build.sh --ipk FILE [--out DIR]
#
# Needs `apk mkpkg` (apk-tools 3; Debian 12 has none, it builds from source
# with meson) and root or fakeroot: apk records the files' owners, which
# must be root. The package is unsigned: install it with
# `apk add --allow-untrusted`.
#
# Mapping: ipk version 1.2.3-1 -> 1.2.3-r1; Depends -> depends; conffiles ->
# /lib/apk/packages/plcmail.conffiles (where OpenWrt's apk packages list
# them for sysupgrade); postinst -> post-install and post-upgrade; prerm ->
# pre-deinstall, and pre-upgrade with PKG_UPGRADE=1 as opkg sets it.
set -eu
ipk= out=.
while [ $# -gt 0 ]; do
	case $1 in
	--ipk) ipk=$2; shift ;;
	--out) out=$2; shift ;;
	*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[ -f "$ipk" ] || { echo "usage: build.sh --ipk FILE [--out DIR]" >&2; exit 2; }
apk mkpkg --help >/dev/null 2>&1 || apk --version 2>/dev/null | grep -q '^apk-tools 3' ||
	{ echo "build.sh: apk-tools 3 (apk mkpkg) not found" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
	command -v fakeroot >/dev/null || { echo "build.sh: run as root or install fakeroot (apk records file owners)" >&2; exit 1; }
	exec fakeroot sh "$0" --ipk "$ipk" --out "$out"
fi
ipk=$(cd "$(dirname "$ipk")" && pwd)/$(basename "$ipk")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/ipk" "$tmp/root" "$tmp/control"
tar -xzf "$ipk" -C "$tmp/ipk"
tar -xzpf "$tmp/ipk/data.tar.gz" -C "$tmp/root" --numeric-owner
tar -xzpf "$tmp/ipk/control.tar.gz" -C "$tmp/control"
field() { sed -n "s/^$1: //p" "$tmp/control/control"; }
name=$(field Package) version=$(field Version) arch=$(field Architecture)
apkver=$(echo "$version" | sed 's/-\([0-9][0-9]*\)$/-r\1/')
mkdir -p "$tmp/root/lib/apk/packages"
cp "$tmp/control/conffiles" "$tmp/root/lib/apk/packages/$name.conffiles"
chmod 0644 "$tmp/root/lib/apk/packages/$name.conffiles"
# The timestamps of the new files as those of the ipk's.
ts=$(stat -c %Y "$tmp/root/usr/bin/$name")
touch -h -d "@$ts" "$tmp/root/lib/apk/packages/$name.conffiles" "$tmp/root/lib/apk/packages" "$tmp/root/lib/apk" "$tmp/root/lib"

# pre-upgrade: prerm as opkg runs it on an upgrade.
{ echo '#!/bin/sh'; echo 'PKG_UPGRADE=1; export PKG_UPGRADE'; sed 1d "$tmp/control/prerm"; } >"$tmp/pre-upgrade"
# The ipk's long description (its continuation lines) as one line.
description=$(sed -n '/^Description: /,$p' "$tmp/control/control" | sed -n 's/^ //p' | tr '\n' ' ' | sed 's/ *$//')
mkdir -p "$out"
apkfile=$out/${name}_${apkver}_$arch.apk
apk mkpkg \
	--info "name:$name" \
	--info "version:$apkver" \
	--info "arch:$arch" \
	--info "description:$description" \
	--info "url:$(field URL)" \
	--info "origin:$name" \
	--info "maintainer:$(field Maintainer)" \
	--info "depends:$(field Depends | tr -d ',')" \
	--script "post-install:$tmp/control/postinst" \
	--script "post-upgrade:$tmp/control/postinst" \
	--script "pre-deinstall:$tmp/control/prerm" \
	--script "pre-upgrade:$tmp/pre-upgrade" \
	--files "$tmp/root" \
	--output "$apkfile"
echo "$apkfile"
