#!/usr/bin/env bash
# Packs the library as the ZIP the Arduino IDE installs with
# Sketch > Include Library > Add .ZIP Library: one folder PlcMail/ at the
# ZIP's root holding library.properties, keywords.txt, README.md, src/ and
# examples/ (the tests in extras/ stay out).
#
# usage: extras/arduino-zip.sh [OUTDIR]   (default: the current directory)
# prints the path of PlcMail-<version>.zip
set -euo pipefail
lib=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)
command -v zip >/dev/null || { echo "missing zip (Debian: zip)" >&2; exit 3; }
version=$(sed -n 's/^version=//p' "$lib/library.properties")
[[ -n $version ]] || { echo "no version= in library.properties" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/PlcMail"
cp -R "$lib/library.properties" "$lib/keywords.txt" "$lib/README.md" "$lib/src" "$lib/examples" "$stage/PlcMail/"
[[ -f $lib/../LICENSE ]] && cp "$lib/../LICENSE" "$stage/PlcMail/"
zip="$out/PlcMail-$version.zip"
rm -f "$zip"
# -X: no extra attributes; sorted names and a fixed date make it reproducible.
(cd "$stage" && find PlcMail -exec touch -h -d '2000-01-01T00:00:00Z' {} + &&
  find PlcMail | LC_ALL=C sort | zip -q -X "$zip" -@)
echo "$zip"
