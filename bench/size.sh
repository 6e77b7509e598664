#!/bin/sh
# size.sh: what the gateway binary costs, and where the bytes go.
#
#   sh bench/size.sh [TOP]        markdown on stdout; TOP packages in the table (default 40)
#
# Builds plcmail the way `make cross` / `make openwrt` do (same tags and
# flags: BUILDTAGS from the Makefile unless set) for mipsle softfloat, arm
# (GOARM=5, OpenWrt's arm_cortex-a7) and arm64, and prints per target the
# stripped size, gzip -9 and xz -9e sizes and, when mksquashfs is installed,
# the size of a squashfs (xz, 256 KiB blocks, as OpenWrt's rootfs) holding
# only the binary: the flash the binary takes in a firmware image. An opkg
# install lands on the overlay (jffs2 with zlib, or ubifs with lzo/zstd),
# whose cost lies between the gzip figure and the plain size.
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
tags=${BUILDTAGS-$(sed -n 's/^BUILDTAGS[[:space:]]*?=[[:space:]]*//p' Makefile)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

build() { # build OUT GOARCH VARIANT [ldflags]
	out=$1 arch=$2 variant=$3 ld=${4--s -w}
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOMIPS=$([ "$arch" = mipsle ] && echo "$variant") \
		GOARM=$([ "$arch" = arm ] && echo "$variant") \
		$GO build -tags "$tags" -trimpath -ldflags "$ld" -o "$out" ./cmd/plcmail
}
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB (%d)", b / 1048576, b }'; }

echo "| target | stripped | gzip -9 | xz -9e | squashfs xz |"
echo "|---|---:|---:|---:|---:|"
for t in mipsle/softfloat arm/5 arm64/; do
	arch=${t%/*} variant=${t#*/}
	b=$tmp/plcmail-$arch
	build "$b" "$arch" "$variant"
	s=$(wc -c <"$b")
	gz=$(gzip -9c "$b" | wc -c)
	xzs=$(xz -9e -c "$b" | wc -c)
	sq=n/a
	if command -v mksquashfs >/dev/null; then
		mkdir -p "$tmp/sq-$arch/usr/bin" && cp "$b" "$tmp/sq-$arch/usr/bin/plcmail"
		mksquashfs "$tmp/sq-$arch" "$tmp/sq-$arch.img" -comp xz -b 256K -Xbcj $([ "$arch" = mipsle ] && echo x86 || echo arm) \
			-noappend -all-root -no-progress -quiet >/dev/null 2>&1 ||
			mksquashfs "$tmp/sq-$arch" "$tmp/sq-$arch.img" -comp xz -b 256K -noappend -all-root -no-progress -quiet >/dev/null
		sq=$(mib "$(wc -c <"$tmp/sq-$arch.img")")
	fi
	echo "| linux/$arch${variant:+ ($variant)} | $(mib "$s") | $(mib "$gz") | $(mib "$xzs") | $sq |"
done
echo
echo "Built with \`-tags \"$tags\" -trimpath -ldflags \"-s -w\"\`, $($GO version | cut -d' ' -f3)."
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
