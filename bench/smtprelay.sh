#!/usr/bin/env bash
# bench/smtprelay.sh: plcmail next to decke/smtprelay, a small Go SMTP relay
# without a queue, on the relay measurement of bench/run.sh.
#
#   BENCH_SMTPRELAY_SRC=DIR bash bench/smtprelay.sh     # DIR: a checkout of github.com/decke/smtprelay
#   BENCH_SMTPRELAY_BIN=FILE bash bench/smtprelay.sh    # or a built smtprelay
#
# smtprelay is NOT durable: it has no queue. It answers DATA only after it
# has handed the message to its smarthost (so accepted = delivered for it),
# and while the smarthost is down it refuses mail, which the client must
# keep. plcmail answers 250 once the message is fsynced in its spool and
# delivers afterwards. The row is a peer comparison of the SMTP path, not of
# like guarantees.
#
# Both relay to the same smtp-sink, driven by the same smtp-source as in
# bench/run.sh (16 sessions, 4 KiB, N messages), in the order smtprelay,
# plcmail, plcmail, smtprelay; rows show the mean and each run. smtprelay
# runs with its defaults except listen, remotes, hostname and
# max_connections: its default of 100 makes smtp-source abort on a 421 (it
# opens a new session per message, and the server counts a session until
# its handler has returned), so it runs with BENCH_SMTPRELAY_MAX_CONNECTIONS
# (default -1, no limit) and the table says so.
#
# smtprelay reads SMTPRELAY_* variables as flags, so the knobs here start
# with BENCH_. Knobs: BENCH_N (5000), BENCH_SMTPRELAY_MAX_CONNECTIONS (-1), BENCH_SINK_PORT
# (2646), BENCH_RELAY_PORT (2545), BENCH_PLC_PORT (2547), BENCH_DIR (parent
# of the work directory, which holds plcmail's spool: BENCH_DIR=/dev/shm puts
# it on tmpfs, where fsync costs next to nothing, to see what the fsyncs cost).
# Prints markdown on stdout; logs on stderr.
#
# Implicit TLS upstream: BENCH_UPSTREAM_TLS=1 puts the sink behind a socat
# TLS terminator (port BENCH_TLS_PORT, 2656; a fresh self-signed P-256
# certificate), as bench/run.sh's TLS rows do. plcmail pins the certificate
# (security "tls", tls_fingerprints); smtprelay cannot pin and is told
# smtps://...?skipVerify. The table then also has the terminator's CPU time
# per message while each relay delivered through it.
#
# BENCH_SKIP_SMTPRELAY=1 runs plcmail only (its columns say n/a): for
# profiling plcmail without smtprelay's TLS run, which forks a socat per
# message.
#
# Profiling: BENCH_PPROF=DIR builds plcmail with -tags pprof (a loopback-only
# net/http/pprof endpoint that release builds do not have, see
# cmd/plcmail/pprof.go), serves it on 127.0.0.1:BENCH_PPROF_PORT (2548) and
# writes a CPU profile of each plcmail run's accepting phase to
# DIR/plcmail-RUN.pprof (read with `go tool pprof -top DIR/plcmail-1.pprof`).
# BENCH_PPROF_SECONDS (3) is the profile's length; it starts with smtp-source.
set -euo pipefail
export LC_ALL=C
export PATH=$PATH:/usr/sbin:/sbin
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
N=${BENCH_N:-5000}
SESSIONS=16
MSG_BYTES=4096
MAXCONN=${BENCH_SMTPRELAY_MAX_CONNECTIONS:--1}
SINK_PORT=${BENCH_SINK_PORT:-2646}
RELAY_PORT=${BENCH_RELAY_PORT:-2545}
PLC_PORT=${BENCH_PLC_PORT:-2547}
UP_TLS=${BENCH_UPSTREAM_TLS:-0}
TLS_PORT=${BENCH_TLS_PORT:-2656}
PPROF=${BENCH_PPROF:-}
PPROF_PORT=${BENCH_PPROF_PORT:-2548}
PPROF_SECONDS=${BENCH_PPROF_SECONDS:-3}
SENDER=bench@client.example
RCPT=alarm@upstream.example

log() { printf '%s smtprelay-bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "" || v == "n/a") print "n/a"; else printf "%.1f", v }'; }

command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null || die "smtp-source/smtp-sink missing (Debian package postfix)"
for p in "$SINK_PORT" "$RELAY_PORT" "$PLC_PORT" ${PPROF:+"$PPROF_PORT"} $( ((UP_TLS)) && echo "$TLS_PORT"); do
	! ss -Htln "sport = :$p" | grep -q . || die "port $p is in use; set BENCH_*_PORT"
done

W=$(mktemp -d "${BENCH_DIR:-/tmp}/smtprelay-bench.XXXXXX")
PIDS=()
cleanup() {
	local rc=$?
	set +e
	for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	[[ ${BENCH_KEEP:-0} == 1 ]] && log "kept $W" || rm -rf "$W"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bg() { # bg NAME CMD...: in its own session, output to $W/NAME.log; sets BG_PID
	local name=$1
	shift
	setsid "$@" >"$W/$name.log" 2>&1 &
	BG_PID=$!
	PIDS+=("$BG_PID")
}
wait_port() {
	local end=$(($(date +%s) + $2))
	while (($(date +%s) < end)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# --- binaries
if [[ -n ${BENCH_SMTPRELAY_BIN:-} ]]; then
	RELAY_BIN=$BENCH_SMTPRELAY_BIN
elif [[ -n ${BENCH_SMTPRELAY_SRC:-} ]]; then
	# Its version: BENCH_SMTPRELAY_VERSION, else git describe of the checkout.
	v=${BENCH_SMTPRELAY_VERSION:-$(git -C "$BENCH_SMTPRELAY_SRC" describe --tags --always 2>/dev/null || echo unknown)}
	log "building smtprelay $v from $BENCH_SMTPRELAY_SRC (modules from the Go proxy)"
	(cd "$BENCH_SMTPRELAY_SRC" && CGO_ENABLED=0 go build -trimpath -ldflags "-X main.appVersion=$v" -o "$W/smtprelay" .) ||
		die "smtprelay build failed"
	RELAY_BIN=$W/smtprelay
else
	die "set BENCH_SMTPRELAY_SRC (a checkout of github.com/decke/smtprelay) or BENCH_SMTPRELAY_BIN"
fi
RELAY_VERSION=$("$RELAY_BIN" -version 2>&1 | head -1 || true)
log "building plcmail"
tags=$(sed -n 's/^BUILDTAGS[[:space:]]*?=[[:space:]]*//p' "$REPO/Makefile")
if [[ -n $PPROF ]]; then
	tags="$tags pprof"
	mkdir -p "$PPROF"
	export PLCMAIL_PPROF=127.0.0.1:$PPROF_PORT
fi
(cd "$REPO" && CGO_ENABLED=0 go build -tags "$tags" -trimpath -o "$W/plcmail" ./cmd/plcmail) || die "plcmail build failed"
PLC_VERSION=$(cd "$REPO" && git describe --tags --always --dirty 2>/dev/null || echo dev)

# --- the sink and both relays
declare -A PID
# cputicks PID: user + system CPU time so far, in clock ticks, of the
# processes in PID's session (bg starts each with setsid), with the children
# they have reaped (socat forks one per connection).
cputicks() {
	# A process may end between the glob and cat: cat then fails, which
	# is no error here.
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v sid="$1" '{ sub(/^[0-9]+ \(.*\) /, "") }
		$4 == sid { t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}
bg sink smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 256
wait_port "$SINK_PORT" 10 || die "smtp-sink did not start"
UPSTREAM_DESC="plain upstream"
REMOTE=smtp://127.0.0.1:$SINK_PORT
PLC_UPSTREAM="port     = $SINK_PORT
security = \"none\""
if ((UP_TLS)); then
	mkdir -p "$W/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
		-keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" 2>/dev/null || die "openssl req failed"
	fp=$(openssl x509 -in "$W/tls/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
	bg tls socat "openssl-listen:$TLS_PORT,bind=127.0.0.1,reuseaddr,fork,nodelay,cert=$W/tls/cert.pem,key=$W/tls/key.pem,verify=0" \
		"tcp:127.0.0.1:$SINK_PORT,nodelay"
	PID[tls]=$BG_PID
	wait_port "$TLS_PORT" 10 || die "TLS terminator did not start: $(cat "$W/tls.log")"
	UPSTREAM_DESC="implicit TLS upstream"
	REMOTE="smtps://127.0.0.1:$TLS_PORT?skipVerify=true"
	PLC_UPSTREAM="port     = $TLS_PORT
security = \"tls\"
tls_fingerprints = [\"$fp\"]"
fi
bg smtprelay "$RELAY_BIN" -listen "127.0.0.1:$RELAY_PORT" -remotes "$REMOTE" \
	-hostname bench-smtprelay.localdomain -max_connections "$MAXCONN"
wait_port "$RELAY_PORT" 10 || die "smtprelay did not start: $(tail -3 "$W/smtprelay.log")"
PID[smtprelay]=$BG_PID
mkdir -p "$W/spool"
cat >"$W/plcmail.toml" <<TOML
[gateway]
hostname  = "bench-plcmail.localdomain"
spool_dir = "$W/spool"
log_level = "info"

[upstream]
host     = "127.0.0.1"
$PLC_UPSTREAM
auth     = "none"
from     = "plcmail@bench.localdomain"

[smtp]
listen            = ["127.0.0.1:$PLC_PORT"]
allowed_networks  = ["127.0.0.0/8"]
max_message_bytes = 10240000
max_connections        = 256
max_connections_per_ip = 256
TOML
bg plcmail "$W/plcmail" -c "$W/plcmail.toml" serve
wait_port "$PLC_PORT" 15 || die "plcmail did not start: $(tail -3 "$W/plcmail.log")"
PID[plcmail]=$BG_PID

relay_sent() { grep -c 'delivering mail from peer using smarthost' "$W/smtprelay.log" || true; }
relay_failed() { grep -c 'delivery failed' "$W/smtprelay.log" || true; }
relay_queue() { echo 0; } # no queue: a message is delivered before the 250
plc_sent() { grep -c 'msg=delivered' "$W/plcmail.log" || true; }
plc_queue() { find "$W/spool/queue" -type f 2>/dev/null | wc -l; }

# run WHO PORT QUEUEFN SENTFN: one smtp-source run; appends to ACC[WHO], DEL[WHO].
declare -A ACC DEL CPU TLSCPU
run() {
	local who=$1 port=$2 qfn=$3 sent=$4 base t0 t1 t2 end d acc del c0 cpu
	base=$($sent)
	c0=$(cputicks "${PID[$who]}")
	((UP_TLS)) && local t0tls=$(cputicks "${PID[tls]}")
	local prof=""
	if [[ -n $PPROF && $who == plcmail ]]; then
		PROF_RUN=$((${PROF_RUN:-0} + 1))
		curl -sf -o "$PPROF/plcmail-$PROF_RUN.pprof" \
			"http://$PLCMAIL_PPROF/debug/pprof/profile?seconds=$PPROF_SECONDS" &
		prof=$!
	fi
	t0=$(now)
	if ! timeout 300 smtp-source -s "$SESSIONS" -l "$MSG_BYTES" -m "$N" -f "$SENDER" -t "$RCPT" \
		"127.0.0.1:$port" >"$W/source-$who.log" 2>&1; then
		log "$who: smtp-source failed: $(tail -3 "$W/source-$who.log" | tr '\n' ' ')"
		ACC[$who]+="n/a " DEL[$who]+="n/a "
		return 0
	fi
	t1=$(now)
	end=$(($(date +%s) + 240))
	while (($(date +%s) < end)); do
		(($($qfn) == 0)) && (($($sent) - base >= N)) && break
		sleep 0.05
	done
	t2=$(now)
	d=$(($($sent) - base))
	acc=$(calc "$N / ($t1 - $t0)")
	del=n/a
	((d >= N)) && del=$(calc "$N / ($t2 - $t0)")
	ACC[$who]+="$acc " DEL[$who]+="$del "
	# CPU per message, accepting and delivering, in microseconds.
	cpu=$(calc "($(cputicks "${PID[$who]}") - $c0) * 1000000 / $(getconf CLK_TCK) / $N")
	CPU[$who]+="$cpu "
	((UP_TLS)) && TLSCPU[$who]+="$(calc "($(cputicks "${PID[tls]}") - $t0tls) * 1000000 / $(getconf CLK_TCK) / $N") "
	[[ -z $prof ]] || wait "$prof" || log "$who: no CPU profile"
	log "$who: accepted $(fmt "$acc") msg/s, delivered $(fmt "$del") msg/s ($d delivered), $(fmt "$cpu") µs CPU/msg"
}
mean() { # mean "a b": "mean (a / b)", n/a when one is
	awk -v s="$1" 'BEGIN { n = split(s, a, " "); t = 0
		for (i = 1; i <= n; i++) { if (a[i] == "n/a") { print "n/a"; exit } t += a[i] }
		printf "%.1f (%.1f / %.1f)", t / n, a[1], a[2] }'
}
first() { awk '{ print $1 }' <<<"$1"; }
ratio() { # ratio "plc runs" "relay runs"
	awk -v p="$1" -v r="$2" 'BEGIN { np = split(p, a, " "); nr = split(r, b, " "); sp = sr = 0
		for (i = 1; i <= np; i++) { if (a[i] == "n/a") { print "n/a"; exit } sp += a[i] }
		for (i = 1; i <= nr; i++) { if (b[i] == "n/a") { print "n/a"; exit } sr += b[i] }
		printf "%.2fx", (sp / np) / (sr / nr) }'
}

log "$N messages, $SESSIONS sessions, $MSG_BYTES bytes; order smtprelay, plcmail, plcmail, smtprelay"
SKIP_RELAY=${BENCH_SKIP_SMTPRELAY:-0}
((SKIP_RELAY)) && ACC[smtprelay]="n/a n/a" DEL[smtprelay]="n/a n/a" CPU[smtprelay]="n/a n/a" TLSCPU[smtprelay]="n/a n/a"
((SKIP_RELAY)) || run smtprelay "$RELAY_PORT" relay_queue relay_sent
run plcmail "$PLC_PORT" plc_queue plc_sent
run plcmail "$PLC_PORT" plc_queue plc_sent
((SKIP_RELAY)) || run smtprelay "$RELAY_PORT" relay_queue relay_sent
fails=$(relay_failed)

echo "Measured $(date -u '+%Y-%m-%d %H:%M') UTC with \`bash bench/smtprelay.sh\` ($N messages per run, $SESSIONS sessions, $MSG_BYTES bytes, one upstream smtp-sink; plcmail's spool on $(findmnt -no FSTYPE --target "$W/spool" | head -1); load average at the start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg))."
echo "smtprelay: $RELAY_VERSION, built with $(go version | cut -d' ' -f3), its defaults but \`-max_connections $MAXCONN\`; plcmail $PLC_VERSION."
echo
echo "| measurement | smtprelay (not durable: no queue) | plcmail (250 after fsync) | plcmail / smtprelay |"
echo "|---|---:|---:|---:|"
echo "| relay, $UPSTREAM_DESC: accepted msg/s | $(mean "${ACC[smtprelay]}") | $(mean "${ACC[plcmail]}") | $(ratio "${ACC[plcmail]}" "${ACC[smtprelay]}") |"
echo "| relay, $UPSTREAM_DESC: delivered msg/s, end to end | $(mean "${DEL[smtprelay]}") | $(mean "${DEL[plcmail]}") | $(ratio "${DEL[plcmail]}" "${DEL[smtprelay]}") |"
echo "| relay's CPU time per message, µs (user + system, accepting and delivering; lower is better) | $(mean "${CPU[smtprelay]}") | $(mean "${CPU[plcmail]}") | $(ratio "${CPU[plcmail]}" "${CPU[smtprelay]}") |"
((UP_TLS)) && echo "| TLS terminator's (socat's) CPU time per message while the relay delivered through it, µs | $(mean "${TLSCPU[smtprelay]}") | $(mean "${TLSCPU[plcmail]}") | $(ratio "${TLSCPU[plcmail]}" "${TLSCPU[smtprelay]}") |"
echo
echo "smtprelay logged $fails failed deliveries."
