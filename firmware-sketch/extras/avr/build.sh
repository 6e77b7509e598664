#!/usr/bin/env bash
# Builds the examples and the size-reference sketches for AVR with Debian's
# packages only (arduino-builder, arduino-core-avr, gcc-avr, avr-libc) and
# prints flash and RAM use:
#   SIZE <sketch> <mcu> <flash bytes> <ram bytes>
# then the cost of each part against its reference sketch.
#
# usage: extras/avr/build.sh [OUTDIR]     (default: extras/avr/build)
#        extras/avr/build.sh OUTDIR --one SKETCH.ino FQBN NAME [EXTRA_CFLAGS]
#            builds that one sketch the same way (exit 1 and the log on failure)
# ELF files end up in OUTDIR/<name>/<sketch>.ino.elf.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# PLCMAIL_LIBRARY_DIR: build against another copy of the library (the one
# unpacked from the release ZIP); default this source tree.
lib=$(cd "${PLCMAIL_LIBRARY_DIR:-$here/../..}" && pwd)
out=${1:-$here/build}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in arduino-builder avr-g++ avr-size; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: arduino-builder gcc-avr)" >&2; exit 3; }
done
hw=/usr/share/arduino/hardware
[[ -d $hw/arduino/avr ]] || { echo "missing $hw/arduino/avr (Debian: arduino-core-avr)" >&2; exit 3; }

# The library must sit in a libraries folder under its own name.
mkdir -p "$out/libraries" "$out/tools" "$out/cache"
ln -sfn "$lib" "$out/libraries/PlcMail"

verbosity=(-quiet)
[[ ${PLCMAIL_BUILD_VERBOSE:-} == 1 ]] && verbosity=(-verbose)

# Debian 12's core needs DECIMAL_DIG for C++ (its avr-libc lacks it).
build() { # sketch.ino fqbn name [extra cflags]
  local ino=$1 fqbn=$2 name=$3 extra=${4:-}
  local dir="$out/$name"
  mkdir -p "$dir"
  local hwx=()
  # arduino-builder's own platform.txt (ctags) lives outside the core in Debian.
  [[ -f /usr/share/arduino-builder/platform.txt ]] && hwx=(-hardware /usr/share/arduino-builder)
  # PLCMAIL_BUILD_VERBOSE=1 logs every compiler command (to check the flags).
  if ! arduino-builder -compile "${verbosity[@]}" -warnings all \
      -hardware "$hw" "${hwx[@]}" -tools "$out/tools" -libraries "$out/libraries" \
      -build-cache "$out/cache" \
      -fqbn "$fqbn" -build-path "$dir" \
      -prefs="compiler.cpp.extra_flags=-DDECIMAL_DIG=9 $extra" \
      -prefs="compiler.c.extra_flags=$extra" \
      "$ino" >"$dir/build.log" 2>&1; then
    cat "$dir/build.log" >&2
    echo "BUILD FAILED $name" >&2
    exit 1
  fi
  # Warnings from our library are errors in spirit: show them.
  if grep -E "PlcMail|plcmail_protocol" "$dir/build.log" | grep -qi "warning"; then
    grep -E -A3 "(PlcMail|plcmail_protocol).*warning" "$dir/build.log" >&2
    echo "WARNINGS in $name" >&2
    exit 1
  fi
  local elf
  elf=$(ls "$dir"/*.elf)
  # flash = .text + .data (initialised data is stored in flash);
  # RAM = .data + .bss + .noinit
  avr-size -A "$elf" | awk -v n="$name" '
    $1==".text"{t=$2} $1==".data"{d=$2} $1==".bss"{b=$2} $1==".noinit"{z=$2}
    END{split(n,a,"@"); printf "SIZE %s %s %d %d\n", a[1], a[2], t+d, d+b+z}'
}

if [[ ${2:-} == --one ]]; then
  build "$3" "$4" "$5" "${6:-}"
  exit 0
fi

mega=arduino:avr:mega:cpu=atmega2560
uno=arduino:avr:uno
ex=$lib/examples
sk=$lib/extras/sketches
for m in "$mega@atmega2560" "$uno@atmega328p"; do
  fqbn=${m%@*} mcu=${m#*@}
  build "$sk/Empty/Empty.ino" "$fqbn" "Empty@$mcu"
  build "$sk/SenderBaseline/SenderBaseline.ino" "$fqbn" "SenderBaseline@$mcu"
  build "$ex/UsbSerialAlarms/UsbSerialAlarms.ino" "$fqbn" "UsbSerialAlarms@$mcu"
  build "$sk/SmtpOverSerial/SmtpOverSerial.ino" "$fqbn" "SmtpBaseline@$mcu" -DPLCMAIL_SIZE_BASELINE
  build "$sk/SmtpOverSerial/SmtpOverSerial.ino" "$fqbn" "SmtpOverSerial@$mcu"
done
build "$ex/ControllinoRS485Alarms/ControllinoRS485Alarms.ino" "$mega" "ControllinoRS485Alarms@atmega2560"
# The example's Controllino branch, against a stand-in Controllino.h (the
# CONTROLLINO core is not packaged for Debian).
ln -sfn "$here/../stubs/Controllino" "$out/libraries/Controllino"
build "$ex/ControllinoRS485Alarms/ControllinoRS485Alarms.ino" "$mega" "ControllinoStub@atmega2560" -DPLCMAIL_USE_CONTROLLINO
rm -f "$out/libraries/Controllino"

# The Ethernet example needs the Arduino Ethernet library, which Debian does
# not package; build it only where one is installed.
eth=""
for d in "${ARDUINO_LIBRARIES:-}" "$HOME/Arduino/libraries" /usr/share/arduino/libraries; do
  [[ -n $d && -f $d/Ethernet/src/Ethernet.h ]] && { eth=$d; break; }
done
if [[ -n $eth ]]; then
  ln -sfn "$eth/Ethernet" "$out/libraries/Ethernet"
  build "$ex/EthernetMail/EthernetMail.ino" "$mega" "EthernetMail@atmega2560"
else
  echo "SKIP EthernetMail: no Arduino Ethernet library installed (not packaged in Debian)"
fi
