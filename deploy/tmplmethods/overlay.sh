#!/bin/sh
# overlay.sh: write a `go build -overlay` file that builds plcmail with a
# text/template which calls only the methods deploy/tmplmethods/methods.go
# lists (see there why: 1.4 MB of a MIPS binary).
#
#   sh deploy/tmplmethods/overlay.sh DIR    prints DIR/overlay.json
#
# Then: go build -overlay "$(sh deploy/tmplmethods/overlay.sh DIR)" ...
#
# It copies the Go toolchain's text/template/exec.go into DIR with its one
# MethodByName call replaced, and fails (exit 1) when that call is not
# found exactly once or text/template or html/template ask reflect for a
# method anywhere else: a Go release that changed them needs this script
# looked at, not a binary that silently calls other methods.
set -eu
dir=${1:?usage: overlay.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
GO=${GO:-go}
goroot=$($GO env GOROOT)
src=$goroot/src/text/template/exec.go
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
call='ptr.MethodByName(fieldName)'
n=$(grep -c -F "$call" "$src" || true)
[ "$n" = 1 ] || { echo "overlay.sh: $src: expected one $call, found $n" >&2; exit 1; }
others=$(grep -n -E '\.(MethodByName|Method)\(' "$goroot"/src/text/template/*.go "$goroot"/src/html/template/*.go |
	grep -v -E '_test\.go:|//|doc\.go:' | grep -v -F "$call" || true)
[ -z "$others" ] || { echo "overlay.sh: other method lookups in the template packages:" >&2; echo "$others" >&2; exit 1; }
sed "s/ptr\.MethodByName(fieldName)/plcmailMethod(ptr, fieldName)/" "$src" >"$dir/exec.go"
sed '/^package template$/,$!d' "$here/methods.go" >"$dir/zz_plcmail_methods.go"
cat >"$dir/overlay.json" <<JSON
{"Replace": {
	"$src": "$dir/exec.go",
	"$goroot/src/text/template/zz_plcmail_methods.go": "$dir/zz_plcmail_methods.go"
}}
JSON
echo "$dir/overlay.json"
