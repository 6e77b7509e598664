#!/usr/bin/env bash
# bench/queuedepth.sh: what a deep queue costs (issue #18), printed as the
# markdown of the "Queue cost in depth" section of bench/RESULTS.md:
#
#   1. the delivery loop's own cost per message while draining 1k..100k
#      (go test -bench BenchmarkDrainLoop ./spool/: no disk, no upstream);
#   2. bench/queuedepth at those depths: memory per queued message, idle
#      CPU while the upstream is down, drain time and CPU against smtp-sink;
#   3. flash wear: file writes, fsyncs and renames per alarm mail and per
#      relayed message on the happy path (strace of queuedepth -wear), and
#      write_bytes from /proc/self/io;
#   4. `plcmail queue list` against `postqueue -p` with QD_LIST (50000)
#      messages in each queue (a throwaway Postfix instance, as run.sh's);
#   5. flash wear under concurrency: `plcmail serve` relaying QD_WEAR_N
#      (5000) messages from 16 smtp-source sessions to smtp-sink, with
#      fsyncs and renames per message counted by perf (syscall tracepoints
#      of the serve process: no strace slowing it down, which would change
#      how many fsyncs the group commit shares) and write_bytes from
#      /proc/PID/io.
#
# QD_LOOP=1 puts the wear parts (3 and 5) on a fresh 1 GiB ext4 file system
# without a journal on a loop device (as the benchmark machine's own disk,
# but with nobody else writing to it), so that the table also says what
# reached the device per message: write requests and bytes from
# /sys/block/loopN/stat, after a syncfs, metadata included. QD_WEAR_ONLY=1
# runs only the wear parts.
#
#   sudo bash bench/queuedepth.sh             # full, about 15 minutes
#   sudo QD_QUICK=1 bash bench/queuedepth.sh  # 1k and 10k, 10k listed
#   sudo QD_WEAR_ONLY=1 QD_LOOP=1 QD_OLD=main bash bench/queuedepth.sh  # flash wear, before and after
#
# Root: smtp-sink and Postfix. Postfix (postfix, smtp-sink, smtp-source)
# and strace are installed with apt-get when missing. Knobs: QD_DEPTHS,
# QD_LIST, QD_IDLE (seconds of idle measurement), QD_KEEP=1 (keep the work
# directory), QD_OLD=REV (also run queuedepth and the list on REV's tree,
# e.g. main, for a "before" table; QD_OLD_DEPTHS limits its depths: the
# old loop's drain grows with the square of the backlog).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEPTHS=${QD_DEPTHS:-1000,10000,50000,100000}
LIST=${QD_LIST:-50000}
IDLE=${QD_IDLE:-20}
if [[ -n ${QD_QUICK:-} ]]; then DEPTHS=1000,10000 LIST=10000 IDLE=5; fi
SINK_PORT=${QD_SINK_PORT:-2726}
PF_PORT=${QD_PF_PORT:-2725}
W=$(mktemp -d /var/tmp/queuedepth.XXXXXX)
chmod 755 "$W" # Postfix and the spool owner traverse it
PF=$W/postfix
PIDS=()
LOOPDEV=""
cleanup() {
	if [[ -f $PF/etc/main.cf ]]; then postfix -c "$PF/etc" stop >/dev/null 2>&1 || true; fi
	for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
	if [[ -n $LOOPDEV ]]; then
		sleep 0.5
		umount "$W/loopfs" 2>/dev/null || true
		losetup -d "$LOOPDEV" 2>/dev/null || true
	fi
	[[ -n ${QD_KEEP:-} ]] || rm -rf "$W"
}
trap cleanup EXIT
die() { echo "queuedepth.sh: $*" >&2; exit 1; }
wait_port() {
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
[[ $(id -u) == 0 ]] || die "run as root (smtp-sink, Postfix)"
need=()
for c in smtp-sink:postfix smtp-source:postfix postqueue:postfix strace:strace perf:linux-perf; do
	command -v "${c%%:*}" >/dev/null || need+=("${c##*:}")
done
if ((${#need[@]})); then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi

build() { # build DIR OUT: queuedepth and plcmail of the tree in DIR
	(cd "$1" && go build -o "$2/queuedepth" ./bench/queuedepth && go build -o "$2/plcmail" ./cmd/plcmail)
}
mkdir -p "$W/new"
build "$REPO" "$W/new"
if [[ -n ${QD_OLD:-} ]]; then
	git -C "$REPO" worktree add -f --detach "$W/oldtree" "$QD_OLD" >/dev/null 2>&1
	cp -r "$REPO/bench/queuedepth" "$W/oldtree/bench/"
	mkdir -p "$W/old"
	build "$W/oldtree" "$W/old"
	git -C "$REPO" worktree remove --force "$W/oldtree"
fi

setsid smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 256 >"$W/sink.log" 2>&1 &
PIDS+=($!)
wait_port "$SINK_PORT" || die "smtp-sink did not start"

echo "## Queue cost in depth"
echo
echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`bash bench/queuedepth.sh\`$( [[ -n ${QD_OLD:-} ]] && echo " (QD_OLD=$QD_OLD)") on $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; spool on $(df -T "$W" | awk 'NR==2 {print $2}'). plcmail $(git -C "$REPO" rev-parse --short HEAD)."
echo
if [[ -z ${QD_WEAR_ONLY:-} ]]; then
echo "Delivery loop's own cost per message while draining (\`go test -run - -bench DrainLoop ./spool/\`: dispatch, index, batch bookkeeping; no disk, no upstream):"
echo
echo '```'
(cd "$REPO" && go test -run - -bench 'DrainLoop' -benchtime 10x ./spool/ 2>&1 | grep '^Benchmark')
echo '```'
echo
run_depth() { # run_depth LABEL BIN
	echo "$1: \`queuedepth -n $DEPTHS -sink 127.0.0.1:$SINK_PORT -idle ${IDLE}s\` (4 KiB messages with a key; idle: upstream refusing connections, after the first probe; RSS and heap after a GC, per queued message; drain: to smtp-sink, from the start of the loop, files included):"
	echo
	"$2/queuedepth" -n "$DEPTHS" -sink "127.0.0.1:$SINK_PORT" -idle "${IDLE}s" -dir "$W/depth"
	echo
}
run_depth "plcmail $(git -C "$REPO" rev-parse --short HEAD)" "$W/new"
[[ -z ${QD_OLD:-} ]] || DEPTHS=${QD_OLD_DEPTHS:-$DEPTHS} run_depth "before ($QD_OLD)" "$W/old"
fi

# ---- flash wear
WEARFS=$W
DEVARG=()
if [[ -n ${QD_LOOP:-} ]]; then
	truncate -s 1G "$W/loop.img"
	mkfs.ext4 -q -O ^has_journal "$W/loop.img"
	LOOPDEV=$(losetup -f --show "$W/loop.img")
	mkdir -p "$W/loopfs"
	mount "$LOOPDEV" "$W/loopfs"
	chmod 755 "$W/loopfs"
	WEARFS=$W/loopfs
	DEVARG=(-dev "$(basename "$LOOPDEV")")
fi
WEARFS_DESC="$(findmnt -no FSTYPE --target "$WEARFS")$([[ -n $LOOPDEV ]] && echo " without a journal on a loop device of its own")"

wear_seq() { # wear_seq LABEL BIN: one message at a time
	local d=$WEARFS/wear-$RANDOM
	mkdir -p "$d"
	echo "$1, happy path, one message at a time (\`queuedepth -wear 200\` under \`strace -f -y\`, counted by bench/wearcount.awk: only operations on the spool that succeeded; spool on $WEARFS_DESC):"
	echo
	strace -f -y -qq -o "$d/strace.txt" -e trace=write,pwrite64,fsync,fdatasync,linkat,rename,renameat,renameat2,unlink,unlinkat,openat \
		"$2/queuedepth" -wear 200 -dir "$d" -sink "127.0.0.1:$SINK_PORT" >"$d/io.txt"
	awk -v SPOOL="$d/wear/" -v N=200 -f "$REPO/bench/wearcount.awk" "$d/strace.txt"
	echo
	echo "Without strace, the kernel's counters for the process (/proc/self/io; syscw includes the SMTP socket's writes)$([[ -n $LOOPDEV ]] && echo "; the device's, after a syncfs"):"
	echo
	rm -rf "$d"
	mkdir -p "$d"
	"$2/queuedepth" -wear 200 -dir "$d" -sink "127.0.0.1:$SINK_PORT" "${DEVARG[@]}"
	rm -rf "$d"
	echo
}
WEAR_N=${QD_WEAR_N:-5000}
WEAR_PORT=${QD_WEAR_PORT:-2727}
WEAR_ROWS=()
wear_serve() { # wear_serve LABEL BIN: 16 SMTP sessions through plcmail serve
	local d=$WEARFS/serve-$RANDOM pid perfpid io0 io1 s0 s1 t0 t1 n0 acc
	mkdir -p "$d/spool"
	printf '[gateway]\nhostname = "gw.test"\nspool_dir = "%s"\nlog_level = "info"\n\n[upstream]\nhost = "127.0.0.1"\nport = %s\nsecurity = "none"\nauth = "none"\nfrom = "plc@example.com"\n\n[smtp]\nlisten = ["127.0.0.1:%s"]\nallowed_networks = ["127.0.0.0/8"]\nmax_connections = 256\nmax_connections_per_ip = 256\n' \
		"$d/spool" "$SINK_PORT" "$WEAR_PORT" >"$d/plcmail.toml"
	setsid "$2/plcmail" -c "$d/plcmail.toml" serve >"$d/serve.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port "$WEAR_PORT" || die "plcmail serve did not start: $(tail -3 "$d/serve.log")"
	perf stat -x, -o "$d/perf.txt" -p "$pid" \
		-e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_renameat,syscalls:sys_enter_linkat,syscalls:sys_enter_unlinkat 2>/dev/null &
	perfpid=$!
	sleep 0.5
	sync -f "$d"
	io0=$(awk '$1 == "write_bytes:" { print $2 }' "/proc/$pid/io")
	s0=($(cat "/sys/block/${DEVARG[1]:-none}/stat" 2>/dev/null || echo 0 0 0 0 0 0 0))
	t0=$(date +%s.%N)
	smtp-source -s 16 -l 4096 -m "$WEAR_N" -f plc@example.com -t ops@example.com "127.0.0.1:$WEAR_PORT"
	t1=$(date +%s.%N)
	for _ in $(seq 1200); do
		n0=$(grep -c 'msg=delivered' "$d/serve.log" || true)
		((n0 >= WEAR_N)) && break
		sleep 0.1
	done
	((n0 >= WEAR_N)) || die "plcmail serve delivered $n0 of $WEAR_N"
	sleep 0.5
	sync -f "$d"
	io1=$(awk '$1 == "write_bytes:" { print $2 }' "/proc/$pid/io")
	s1=($(cat "/sys/block/${DEVARG[1]:-none}/stat" 2>/dev/null || echo 0 0 0 0 0 0 0))
	kill -INT "$perfpid"
	wait "$perfpid" 2>/dev/null || true
	kill -TERM "$pid"
	wait "$pid" 2>/dev/null || true
	acc=$(awk -v n="$WEAR_N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
	WEAR_ROWS+=("$(awk -F, -v label="$1" -v n="$WEAR_N" -v acc="$acc" -v io=$((io1 - io0)) -v dio=$((s1[4] - s0[4])) -v dsec=$((s1[6] - s0[6])) -v dev="${DEVARG[1]:-}" '
		$3 ~ /fsync|fdatasync/ { f += $1 } $3 ~ /renameat|linkat|unlinkat/ { m += $1 }
		END { printf "| %s | %s | %.2f | %.2f | %.0f | %s | %s |", label, acc, f / n, m / n, io / n,
			dev == "" ? "-" : sprintf("%.2f", dio / n), dev == "" ? "-" : sprintf("%.0f", dsec * 512 / n) }' "$d/perf.txt")")
	rm -rf "$d"
}
wear_seq "plcmail $(git -C "$REPO" rev-parse --short HEAD)" "$W/new"
[[ -z ${QD_OLD:-} ]] || wear_seq "before ($QD_OLD)" "$W/old"
# Alternating, so that both see the same load from other work on the CPUs.
for round in 1 2; do
	wear_serve "plcmail $(git -C "$REPO" rev-parse --short HEAD), round $round" "$W/new"
	[[ -z ${QD_OLD:-} ]] || wear_serve "before ($QD_OLD), round $round" "$W/old"
done
echo "Under concurrency: \`smtp-source -s 16 -l 4096 -m $WEAR_N\` through \`plcmail serve\` to smtp-sink (relayed messages; fsyncs and renames counted by \`perf stat -e syscalls:sys_enter_*\` on the serve process, which touches no other file while it relays; write_bytes from /proc/PID/io; spool on $WEARFS_DESC):"
echo
echo "| run | accepted msg/s | fsyncs/msg | renames, links, unlinks/msg | write_bytes/msg | device write requests/msg | device bytes written/msg |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${WEAR_ROWS[@]}"
echo
[[ -n ${QD_WEAR_ONLY:-} ]] && exit 0

# ---- queue list against postqueue -p
mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
maillog_file = $PF/maillog
mail_owner = postfix
setgid_group = postdrop
myhostname = bench-postfix.localdomain
mydestination =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:$SINK_PORT
defer_transports = relay smtp
EOF
cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - 64 smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
chown postfix "$PF/data"
postfix -c "$PF/etc" check >&2
postfix -c "$PF/etc" start >/dev/null 2>&1 || die "postfix did not start"
wait_port "$PF_PORT" || die "postfix is not listening"
smtp-source -s 16 -l 4096 -m "$LIST" -f plc@example.com -t ops@example.com "127.0.0.1:$PF_PORT"
for _ in $(seq 600); do
	n=$(find "$PF/queue/deferred" -type f | wc -l)
	((n >= LIST)) && break
	sleep 1
done
((n >= LIST)) || die "Postfix deferred $n of $LIST"
"$W/new/queuedepth" -fill "$W/plc/spool" -n "$LIST"
printf '[gateway]\nhostname = "gw.test"\nspool_dir = "%s"\n\n[upstream]\nhost = "127.0.0.1"\nport = %s\nsecurity = "none"\nauth = "none"\nfrom = "plc@example.com"\n' \
	"$W/plc/spool" "$SINK_PORT" >"$W/plc/plcmail.toml"
chown -R nobody "$W/plc" 2>/dev/null || true
best() { # best CMD...: the fastest of three runs, in ms, output discarded
	local b=""
	for _ in 1 2 3; do
		local t0=$(date +%s%N)
		"$@" >/dev/null
		local ms=$((($(date +%s%N) - t0) / 1000000))
		[[ -z $b || $ms -lt $b ]] && b=$ms
	done
	echo "$b"
}
pf=$(best postqueue -c "$PF/etc" -p)
plc=$(best "$W/new/plcmail" queue -c "$W/plc/plcmail.toml" list)
echo "Listing $LIST queued messages (4 KiB, one recipient), fastest of three runs, output to /dev/null:"
echo
echo "| command | ms |"
echo "|---|---:|"
echo "| \`postqueue -p\` (Postfix $(postconf -c "$PF/etc" -h mail_version), deferred queue) | $pf |"
echo "| \`plcmail queue list\` | $plc |"
if [[ -n ${QD_OLD:-} ]]; then
	echo "| \`plcmail queue list\` before ($QD_OLD) | $(best "$W/old/plcmail" queue -c "$W/plc/plcmail.toml" list) |"
fi
