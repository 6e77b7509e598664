#!/bin/sh
# build.sh: one OpenWrt package (.ipk) from a plcmail binary, with nothing
# but tar and gzip (an ipk is a gzip'd tar of debian-binary, data.tar.gz and
# control.tar.gz, as OpenWrt's own ipkg-build writes it). `make openwrt`
# calls it once per architecture.
#
#   sh deploy/openwrt/ipk/build.sh --binary FILE --arch OPENWRT_ARCH \
#                                  --version VERSION [--out DIR]
#
# Needs GNU tar (--owner, --sort). SOURCE_DATE_EPOCH (default: the last
# commit's time) fixes every timestamp, so the same input gives the same ipk.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ow=$(cd "$here/.." && pwd)
src=$(cd "$ow/../.." && pwd)

binary= arch= version= out=.
while [ $# -gt 0 ]; do
	case $1 in
	--binary) binary=$2; shift ;;
	--arch) arch=$2; shift ;;
	--version) version=$2; shift ;;
	--out) out=$2; shift ;;
	*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[ -f "$binary" ] && [ -n "$arch" ] && [ -n "$version" ] ||
	{ echo "usage: build.sh --binary FILE --arch ARCH --version VERSION [--out DIR]" >&2; exit 2; }
: "${SOURCE_DATE_EPOCH:=$(git -C "$src" log -1 --format=%ct 2>/dev/null || echo 0)}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
d=$tmp/data c=$tmp/control

# --- data: what lands on the router ---------------------------------------------
install -d -m 0755 "$d/usr/bin" "$d/etc/init.d" "$d/etc/config" "$d/lib/upgrade/keep.d"
install -d -m 0750 "$d/etc/plcmail"
install -m 0755 "$binary" "$d/usr/bin/plcmail"
install -m 0755 "$ow/files/plcmail.init" "$d/etc/init.d/plcmail"
install -m 0644 "$ow/files/plcmail.config" "$d/etc/config/plcmail"
install -m 0644 "$ow/files/plcmail.keep" "$d/lib/upgrade/keep.d/plcmail"
# The example config, with the spool on flash (OpenWrt's /var is RAM) and the
# password in the package's secret file.
sed -e 's|^\([[:space:]]*spool_dir[[:space:]]*=[[:space:]]*\)"[^"]*"|\1"/etc/plcmail/spool"|' \
	-e 's|^\([[:space:]]*password_file[[:space:]]*=[[:space:]]*\)"[^"]*"|\1"/etc/plcmail/upstream.secret"|' \
	"$src/configs/plcmail.example.toml" >"$d/etc/plcmail/plcmail.toml"
chmod 0640 "$d/etc/plcmail/plcmail.toml"
: >"$d/etc/plcmail/upstream.secret"
chmod 0600 "$d/etc/plcmail/upstream.secret"

# --- control ------------------------------------------------------------------------
mkdir -p "$c"
size=$(du -sk "$d" | cut -f1)
cat >"$c/control" <<CONTROL
Package: plcmail
Version: $version
Depends: ca-bundle
Source: https://github.com/plcmail/plcmail
SourceName: plcmail
Section: mail
URL: https://github.com/plcmail/plcmail
Maintainer: plcmail developers
Architecture: $arch
Installed-Size: $((size * 1024))
Require-User: plcmail:plcmail:dialout
Description: PLC alarm to e-mail gateway
 Turns alarm frames from a PLC's serial link (and mail from an optional SMTP
 listener) into e-mail, queued durably on flash and relayed over TLS to a
 mail provider. One static binary; config in /etc/plcmail/plcmail.toml.
 USB serial adapters need their kernel module, e.g. kmod-usb-serial-ftdi,
 kmod-usb-serial-ch341 or kmod-usb-acm.
CONTROL
# Kept on upgrade when changed, and saved by sysupgrade.
printf '%s\n' /etc/config/plcmail /etc/plcmail/plcmail.toml /etc/plcmail/upstream.secret >"$c/conffiles"
install -m 0755 "$here/postinst" "$here/prerm" "$c/"

# --- the ipk ------------------------------------------------------------------------
t() { # t DIR OUT.tar.gz ENTRIES...: reproducible, root-owned
	dir=$1 o=$2; shift 2
	(cd "$dir" && tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name \
		--mtime="@$SOURCE_DATE_EPOCH" -cf - "$@") | gzip -9n >"$o"
}
t "$d" "$tmp/data.tar.gz" .
t "$c" "$tmp/control.tar.gz" .
echo 2.0 >"$tmp/debian-binary"
touch -d "@$SOURCE_DATE_EPOCH" "$tmp/debian-binary" "$tmp/data.tar.gz" "$tmp/control.tar.gz"
mkdir -p "$out"
ipk=$out/plcmail_${version}_$arch.ipk
t "$tmp" "$ipk" ./debian-binary ./data.tar.gz ./control.tar.gz
echo "$ipk"
