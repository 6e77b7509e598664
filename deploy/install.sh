#!/bin/sh
# install.sh: put plcmail on a gateway (Debian/Raspberry Pi OS/Ubuntu with
# systemd, or OpenWrt with procd) with safe ownership and permissions.
#
#   sh deploy/install.sh [--binary FILE] [--openwrt] [--sendmail [--force]]
#                        [--destdir DIR] [--user|--no-user] [--no-service]
#
# It is idempotent: run it again after an upgrade. It never overwrites an
# existing config or secret, and it re-applies the safe modes every time.
#
# What it does (paths relative to --destdir / $DESTDIR, default /):
#   user/group plcmail, system account without login, member of dialout
#   /usr/local/bin/plcmail            0755 root   (/usr/bin on OpenWrt)
#   /etc/plcmail/                     0750 root:plcmail
#   /etc/plcmail/plcmail.toml         0640 root:plcmail  from configs/plcmail.example.toml, if absent
#   /etc/plcmail/upstream.secret      0600 plcmail       empty, if absent (put the provider password here)
#   /etc/plcmail/*.secret             0600 plcmail       other secrets there: re-owned on every run
#   /var/spool/plcmail/               0700 plcmail       (/etc/plcmail/spool on OpenWrt, whose /var is RAM)
#   /etc/systemd/system/plcmail.service  or  /etc/init.d/plcmail + /lib/upgrade/keep.d/plcmail
#   with --sendmail: /usr/sbin/sendmail and /usr/bin/mailq linked to plcmail,
#   refusing to replace another MTA's sendmail unless --force is given.
#
# --destdir DIR (or DESTDIR=DIR) installs below DIR, for packaging and the
# tests; it leaves this host's accounts alone (as --no-user does: no account
# is created and nothing is chown'ed) unless --user is given as well.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)

binary=
destdir=${DESTDIR:-}
openwrt=auto
mkuser=
service=1
sendmail=0
force=0
example=$src/configs/plcmail.example.toml

usage() {
	sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//' >&2
	exit 2
}
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
	case $1 in
	--binary) [ $# -ge 2 ] || usage; binary=$2; shift ;;
	--binary=*) binary=${1#*=} ;;
	--destdir) [ $# -ge 2 ] || usage; destdir=$2; shift ;;
	--destdir=*) destdir=${1#*=} ;;
	--config-example) [ $# -ge 2 ] || usage; example=$2; shift ;;
	--openwrt) openwrt=1 ;;
	--systemd) openwrt=0 ;;
	--no-user) mkuser=0 ;;
	--user) mkuser=1 ;;
	--no-service) service=0 ;;
	--sendmail) sendmail=1 ;;
	--force) force=1 ;;
	-h|--help) usage ;;
	*) echo "install.sh: unknown option $1" >&2; usage ;;
	esac
	shift
done
destdir=${destdir%/}
if [ -z "$mkuser" ]; then
	if [ -n "$destdir" ]; then mkuser=0; else mkuser=1; fi
fi

if [ "$openwrt" = auto ]; then
	if [ -f "$destdir/etc/openwrt_release" ]; then openwrt=1; else openwrt=0; fi
fi
if [ "$openwrt" = 1 ]; then
	bindir=/usr/bin
	spool=/etc/plcmail/spool
else
	bindir=/usr/local/bin
	spool=/var/spool/plcmail
fi

if [ -z "$binary" ]; then
	for b in "$src/plcmail" ./plcmail; do
		[ -f "$b" ] && { binary=$b; break; }
	done
fi
[ -n "$binary" ] && [ -f "$binary" ] || die "no plcmail binary: build it (make build) or pass --binary FILE"
[ -f "$example" ] || die "missing example config $example"
if [ "$mkuser" = 1 ] && [ "$(id -u)" -ne 0 ]; then
	die "must run as root to create the plcmail user (or pass --no-user)"
fi

# own USER:GROUP MODE PATH: set mode always, ownership when we manage users.
own() {
	if [ "$mkuser" = 1 ]; then chown "$1" "$3"; fi
	chmod "$2" "$3"
}

# --- user -------------------------------------------------------------------
# shadow-utils (useradd) where present. Otherwise (OpenWrt: its busybox has
# no adduser) the account is written into /etc/passwd, /etc/group and
# /etc/shadow directly, which is what OpenWrt's own packages do.
in_file() { grep -q "^$1:" "$2" 2>/dev/null; }
free_id() { # first id from 200 used neither as uid nor as gid
	n=200
	while cut -d: -f3 /etc/passwd /etc/group | grep -qx "$n"; do n=$((n + 1)); done
	echo "$n"
}
add_group() { # add_group NAME [GID]
	gid=${2:-$(free_id)}
	if cut -d: -f3 /etc/group | grep -qx "$gid"; then gid=$(free_id); fi
	echo "$1:x:$gid:" >>/etc/group
}
add_member() { # add_member GROUP USER
	if grep "^$1:" /etc/group | cut -d: -f4 | tr ',' '\n' | grep -qx "$2"; then
		return 1
	fi
	if command -v usermod >/dev/null; then
		usermod -a -G "$1" "$2"
	else
		if grep -q "^$1:.*:\$" /etc/group; then
			sed -i "s/^\($1:.*:\)\$/\1$2/" /etc/group
		else
			sed -i "s/^\($1:.*\)\$/\1,$2/" /etc/group
		fi
	fi
}
if [ "$mkuser" = 1 ]; then
	if ! in_file dialout /etc/group; then
		if command -v groupadd >/dev/null; then groupadd --system dialout; else add_group dialout 20; fi
	fi
	if ! in_file plcmail /etc/passwd && ! id plcmail >/dev/null 2>&1; then
		if command -v useradd >/dev/null; then
			useradd --system --user-group --no-log-init --home-dir "$spool" --no-create-home \
				--shell /usr/sbin/nologin --comment "plcmail gateway" plcmail
		else
			in_file plcmail /etc/group || add_group plcmail
			gid=$(grep "^plcmail:" /etc/group | cut -d: -f3)
			uid=$gid
			if cut -d: -f3 /etc/passwd | grep -qx "$uid"; then uid=$(free_id); fi
			echo "plcmail:x:$uid:$gid:plcmail gateway:$spool:/bin/false" >>/etc/passwd
			if [ -f /etc/shadow ]; then echo "plcmail:*:0:0:99999:7:::" >>/etc/shadow; fi
		fi
		say "created system user plcmail"
	fi
	if add_member dialout plcmail; then
		say "added plcmail to group dialout (serial ports)"
	fi
fi

# --- directories ------------------------------------------------------------
mkdir -p "$destdir$bindir" "$destdir/etc/plcmail" "$destdir$spool"
own root:plcmail 0750 "$destdir/etc/plcmail"
own plcmail:plcmail 0700 "$destdir$spool"
if [ "$mkuser" = 1 ]; then
	# Repair files a `plcmail serve` started by hand as root left behind:
	# the gateway's user must own everything in its spool.
	chown -R plcmail:plcmail "$destdir$spool"
fi

# --- binary -----------------------------------------------------------------
# Copy to a temp name and rename, so a running gateway keeps its old inode.
cp "$binary" "$destdir$bindir/.plcmail.new"
own root:root 0755 "$destdir$bindir/.plcmail.new"
mv -f "$destdir$bindir/.plcmail.new" "$destdir$bindir/plcmail"
say "installed $bindir/plcmail"

# --- config and secret --------------------------------------------------------
conf=$destdir/etc/plcmail/plcmail.toml
if [ -e "$conf" ]; then
	say "kept existing /etc/plcmail/plcmail.toml"
else
	sed -e "s|^\([[:space:]]*spool_dir[[:space:]]*=[[:space:]]*\)\"[^\"]*\"|\1\"$spool\"|" \
		-e "s|^\([[:space:]]*password_file[[:space:]]*=[[:space:]]*\)\"[^\"]*\"|\1\"/etc/plcmail/upstream.secret\"|" \
		"$example" >"$conf.new"
	mv "$conf.new" "$conf"
	say "created /etc/plcmail/plcmail.toml from $(basename "$example"): edit it, then run: plcmail check"
fi
own root:plcmail 0640 "$conf"

secret=$destdir/etc/plcmail/upstream.secret
if [ ! -e "$secret" ]; then
	: >"$secret"
	say "created empty /etc/plcmail/upstream.secret: put the provider password (app password) in it"
fi
# The gateway refuses a secret that group or others can read; keep it so.
own plcmail:plcmail 0600 "$secret"
# Other secrets put there by hand (oauth-client.secret, smtp account
# passwords), often re-created by root: serve, as plcmail, must read them.
for f in "$destdir"/etc/plcmail/*.secret; do
	if [ -f "$f" ] && [ ! -L "$f" ] && [ "$f" != "$secret" ]; then
		own plcmail:plcmail 0600 "$f"
		say "re-owned /etc/plcmail/$(basename "$f") to plcmail, mode 0600"
	fi
done

# --- sendmail / mailq links --------------------------------------------------
link() { # link TARGET PATH
	if [ -L "$destdir$2" ] && [ "$(readlink "$destdir$2")" = "$1" ]; then
		return 0
	fi
	if [ -e "$destdir$2" ] || [ -L "$destdir$2" ]; then
		if [ "$force" != 1 ]; then
			die "$2 exists (another MTA?); not replacing it without --force"
		fi
		say "replacing $2 (--force)"
	fi
	mkdir -p "$(dirname "$destdir$2")"
	ln -sf "$1" "$destdir$2"
	say "linked $2 -> $1"
}
if [ "$sendmail" = 1 ]; then
	link "$bindir/plcmail" /usr/sbin/sendmail
	link "$bindir/plcmail" /usr/bin/mailq
fi

# --- service ------------------------------------------------------------------
if [ "$service" = 1 ]; then
	if [ "$openwrt" = 1 ]; then
		mkdir -p "$destdir/etc/init.d" "$destdir/lib/upgrade/keep.d"
		cp "$here/openwrt/files/plcmail.init" "$destdir/etc/init.d/plcmail"
		chmod 0755 "$destdir/etc/init.d/plcmail"
		# sysupgrade keeps these (config, secret and the queued mail).
		printf '%s\n' /etc/plcmail/ >"$destdir/lib/upgrade/keep.d/plcmail"
		say "installed /etc/init.d/plcmail; after editing the config: /etc/init.d/plcmail enable && /etc/init.d/plcmail start"
	else
		mkdir -p "$destdir/etc/systemd/system"
		cp "$here/plcmail.service" "$destdir/etc/systemd/system/plcmail.service"
		chmod 0644 "$destdir/etc/systemd/system/plcmail.service"
		if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
			systemctl daemon-reload
		fi
		say "installed /etc/systemd/system/plcmail.service; after editing the config: systemctl enable --now plcmail"
	fi
fi
