#!/bin/sh
# size.sh: what the gateway binary costs, and where the bytes go.
#
#   sh bench/size.sh [TOP]        markdown on stdout; TOP packages in the table (default 40)
#
# Builds plcmail the way `make openwrt` does (same tags and flags:
# BUILDTAGS and OPENWRT_BUILDTAGS from the Makefile unless BUILDTAGS is set;
# the text/template overlay of deploy/tmplmethods unless
# TEMPLATE_OVERLAY=no) for mipsle softfloat, arm
# (GOARM=5, OpenWrt's arm_cortex-a7) and arm64, and prints per target the
# stripped size, gzip -9 and xz -9e sizes and, with mtd-utils and
# squashfs-tools installed, the flash it takes on a router:
#
#   - squashfs xz: a squashfs (xz, 256 KiB blocks, BCJ, as OpenWrt's rootfs)
#     holding only the binary, when it is built into the firmware image;
#   - jffs2 zlib: a jffs2 image (64 KiB erase blocks, zlib, the target's
#     byte order) holding only the binary, when opkg installs it onto the
#     overlay of a NOR-flash router: jffs2 compresses each 4 KiB page on its
#     own. OpenWrt's kernels may add lzma to jffs2; zlib is the default and
#     the larger of the two.
#
# The compiler flags are the Makefile's ROUTER_GCFLAGS unless set (one
# -gcflags argument per word; ROUTER_GCFLAGS= builds without). Rows for
# mipsle without the overlay and without ROUTER_GCFLAGS show what each saves.
#
# Then the per-package table: the mipsle binary built again without -s -w,
# `go tool nm -size -sort size` grouped by package (text, rodata and data
# symbols; BSS, which takes no flash, is left out). The symbols add up to less
# than the stripped file: the rest is pclntab (function tables the runtime
# needs for stacks and GC), which grows with the code itself, so the table's
# proportions hold for the whole.
set -eu
top=${1:-40}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
GO=${GO:-go}
# The OpenWrt packages' tags: BUILDTAGS and OPENWRT_BUILDTAGS of the Makefile
# unless set (nodemo: `plcmail demo` without its in-process devices).
tags=${BUILDTAGS-$(sed -n 's/^BUILDTAGS[[:space:]]*?=[[:space:]]*//p' Makefile) $(sed -n 's/^OPENWRT_BUILDTAGS[[:space:]]*?=[[:space:]]*//p' Makefile)}
# ROUTER_GCFLAGS spans lines in the Makefile: join its continuation lines.
gcflags=${ROUTER_GCFLAGS-$(sed -e ':a' -e '/\\$/{N;s/\\\n[[:space:]]*/ /;ba' -e '}' Makefile |
	sed -n 's/^ROUTER_GCFLAGS[[:space:]]*?=[[:space:]]*//p')}
gc=
for f in $gcflags; do gc="$gc -gcflags=$f"; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ov=
[ "${TEMPLATE_OVERLAY:-}" = no ] || ov=-overlay=$(GO=$GO sh deploy/tmplmethods/overlay.sh "$tmp/overlay")

build() { # build OUT GOARCH VARIANT [ldflags [overlay flag [gcflags flags]]]
	out=$1 arch=$2 variant=$3 ld=${4--s -w} o=${5-$ov} g=${6-$gc}
	# $g is split into its -gcflags=... words on purpose.
	# shellcheck disable=SC2086
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOMIPS=$([ "$arch" = mipsle ] && echo "$variant") \
		GOARM=$([ "$arch" = arm ] && echo "$variant") \
		$GO build $o $g -tags "$tags" -trimpath -ldflags "$ld" -o "$out" ./cmd/plcmail
}
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB (%d)", b / 1048576, b }'; }

echo "| target | stripped | gzip -9 | xz -9e | squashfs xz | jffs2 zlib |"
echo "|---|---:|---:|---:|---:|---:|"
row() { # row NAME BINARY ARCH
	b=$2 arch=$3
	s=$(wc -c <"$b")
	gz=$(gzip -9c "$b" | wc -c)
	xzs=$(xz -9e -c "$b" | wc -c)
	rm -rf "$tmp/root" && mkdir -p "$tmp/root/usr/bin" && cp "$b" "$tmp/root/usr/bin/plcmail"
	sq=n/a jf=n/a
	if command -v mksquashfs >/dev/null; then
		mksquashfs "$tmp/root" "$tmp/sq.img" -comp xz -b 256K -Xbcj $([ "$arch" = mipsle ] && echo x86 || echo arm) \
			-noappend -all-root -no-progress -quiet >/dev/null 2>&1 ||
			mksquashfs "$tmp/root" "$tmp/sq.img" -comp xz -b 256K -noappend -all-root -no-progress -quiet >/dev/null
		sq=$(mib "$(wc -c <"$tmp/sq.img")")
	fi
	if command -v mkfs.jffs2 >/dev/null; then
		# -l: little-endian (all three targets); no cleanmarkers padding (-n) as on NOR.
		mkfs.jffs2 -l -n -e 64KiB -r "$tmp/root" -o "$tmp/jffs2.img" 2>/dev/null
		jf=$(mib "$(wc -c <"$tmp/jffs2.img")")
	fi
	echo "| $1 | $(mib "$s") | $(mib "$gz") | $(mib "$xzs") | $sq | $jf |"
}
for t in mipsle/softfloat arm/5 arm64/; do
	arch=${t%/*} variant=${t#*/}
	b=$tmp/plcmail-$arch
	build "$b" "$arch" "$variant"
	row "linux/$arch${variant:+ ($variant)}" "$b" "$arch"
done
if [ -n "$ov" ]; then
	build "$tmp/plain" mipsle softfloat "-s -w" ""
	row "linux/mipsle (softfloat), plain text/template (no overlay)" "$tmp/plain" mipsle
fi
if [ -n "$gc" ]; then
	build "$tmp/inline" mipsle softfloat "-s -w" "$ov" ""
	row "linux/mipsle (softfloat), without ROUTER_GCFLAGS (inlining everywhere)" "$tmp/inline" mipsle
fi
echo
echo "Built with \`${ov:+-overlay (deploy/tmplmethods) }${gc:+$(echo "$gc" | sed 's/^ //') }-tags \"$tags\" -trimpath -ldflags \"-s -w\"\`, $($GO version | cut -d' ' -f3)."
echo

build "$tmp/full" mipsle softfloat ""
# BSS takes no flash: leave out symbols in .bss/.noptrbss (nm calls some "D").
bss=$(readelf -S -W "$tmp/full" | awk '$0 ~ /NOBITS/ { sub(/.*NOBITS[[:space:]]+/, ""); print $1, $3 }' | tr '\n' ' ')
$GO tool nm -size -sort size "$tmp/full" | awk -v top="$top" -v bss="$bss" '
	function hex(s,   i, n, c) {
		n = 0; s = tolower(s)
		for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; n = n * 16 + c }
		return n
	}
	BEGIN { nb = split(bss, b, " ") }
	$3 ~ /^[TtRrDd]$/ {
		a = hex($1); skip = 0
		for (i = 1; i < nb; i += 2) if (a >= hex(b[i]) && a < hex(b[i]) + hex(b[i + 1])) skip = 1
		if (skip) next
		name = $4; for (i = 5; i <= NF; i++) name = name " " $i
		if (name ~ /^(go:|type:)/) { sub(/[.:].*/, "", name); pkg = name ":*" }
		else {
			slash = 0; n = split(name, parts, "/")
			pre = ""; for (i = 1; i < n; i++) pre = pre parts[i] "/"
			last = parts[n]; sub(/\..*/, "", last); pkg = pre last
			if (pkg ~ /\[/) { sub(/\[.*/, "", pkg); pkg = pkg " (generic)" }
		}
		size[pkg] += $2; total += $2
	}
	END {
		for (p in size) printf "%d\t%s\n", size[p], p | "sort -rn > /dev/stderr"
		printf "TOTAL\t%d\n", total
	}' 2>"$tmp/pkgs" >"$tmp/total"
total=$(cut -f2 "$tmp/total")
echo "| package (mipsle softfloat) | bytes | share |"
echo "|---|---:|---:|"
head -n "$top" "$tmp/pkgs" | awk -F'\t' -v t="$total" '{ printf "| %s | %d | %.1f%% |\n", $2, $1, 100 * $1 / t }'
tail -n +"$((top + 1))" "$tmp/pkgs" | awk -F'\t' -v t="$total" '{ s += $1; n++ } END { if (n) printf "| %d more packages | %d | %.1f%% |\n", n, s, 100 * s / t }'
echo "| **all symbols** | $total | 100% |"
echo
echo "Grouped by origin:"
echo
echo "| origin | bytes | share |"
echo "|---|---:|---:|"
awk -F'\t' -v t="$total" '{
	p = $2
	if (p ~ /^github.com\/plcmail\//) o = "plcmail"
	else if (p ~ /^[a-z0-9.-]+\.[a-z]+\//) { split(p, a, "/"); o = a[1] "/" a[2] }
	else o = "Go standard library (incl. runtime, vendor/, go:*, type:*)"
	s[o] += $1
} END { for (o in s) printf "%d\t%s\n", s[o], o }' "$tmp/pkgs" | sort -rn |
	awk -F'\t' -v t="$total" '{ printf "| %s | %d | %.1f%% |\n", $2, $1, 100 * $1 / t }'
