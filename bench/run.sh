#!/usr/bin/env bash
# bench/run.sh: plcmail side by side with a Postfix relay, in one run.
#
#   bash bench/run.sh                  # full run (< 15 min), writes bench/RESULTS.md
#   BENCH_QUICK=1 bash bench/run.sh    # smaller counts (< 3 min), same table
#
# Needs root (it installs Debian packages when missing and starts a private
# Postfix instance, whose daemons drop privileges to the "postfix" user).
# Everything listens on 127.0.0.1 only; the system's /etc/postfix instance is
# never read for settings, never started and never changed; port 25 is never
# bound. All state lives in one temporary directory that is removed at exit
# (BENCH_KEEP=1 keeps it for inspection).
#
# What is compared (see bench/README.md and the note in RESULTS.md):
#   * SMTP relay: Postfix configured as the classic "relay for the LAN" guide
#     (inet_interfaces, mynetworks, relayhost, VRFY off, size limit) and
#     `plcmail serve` with an [smtp] listener, both relaying to the same
#     smtp-sink, driven by the same smtp-source (16 sessions, 4 KiB, 5000 msgs):
#     accepted msg/s (client wall time) and delivered msg/s (until the relay's
#     queue is empty and it logged every message as accepted upstream); plain and
#     implicit TLS (the sink behind a socat TLS terminator, certificate pinned on
#     both sides). Each runs both twice in mirrored order (ABBA plain, BAAB TLS).
#   * queue drain after an upstream outage (10000 messages queued while the sink
#     is down; then the sink starts and the queue is flushed).
#   * memory: idle, with 200 idle SMTP sessions, peak during the relay run.
#   * size: stripped static plcmail builds per target vs. Postfix's packages.
#   * serial: `plcmail serve` on one end of a socat pty pair, bench/serialbench
#     as the PLC on the other (event to ACK, event to upstream 250, events/s);
#     and the Go benchmarks of bridge/ and protocol/.
#
# Environment knobs: BENCH_QUICK=1, BENCH_KEEP=1, BENCH_DIR (parent of the work
# directory; its filesystem holds both queues), BENCH_NO_INSTALL=1,
# BENCH_SKIP_PLCMAIL=1 (the Postfix half only), BENCH_TIME_LIMIT (seconds),
# BENCH_RESULTS (output file, default bench/RESULTS.md; "-" for none),
# BENCH_PF_PORT (2525), BENCH_PLC_PORT (2527), BENCH_SINK_PORT (2626),
# BENCH_TLS_PORT (2636), BENCH_N_RELAY, BENCH_N_DRAIN (message counts).

set -euo pipefail
export LC_ALL=C
export PATH=$PATH:/usr/sbin:/sbin # smtp-source, smtp-sink, postfix

BENCH_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
	N_RELAY=${BENCH_N_RELAY:-1000}
	N_DRAIN=${BENCH_N_DRAIN:-2000}
	N_SERIAL=200
	TIME_LIMIT=${BENCH_TIME_LIMIT:-180}
	CROSS_TARGETS=("linux/amd64" "linux/arm/7")
else
	N_RELAY=${BENCH_N_RELAY:-5000}
	N_DRAIN=${BENCH_N_DRAIN:-10000}
	N_SERIAL=1000
	TIME_LIMIT=${BENCH_TIME_LIMIT:-900}
	CROSS_TARGETS=("linux/amd64" "linux/arm64" "linux/arm/6" "linux/arm/7" "linux/mipsle/softfloat")
fi
SESSIONS=16
MSG_BYTES=4096
IDLE_SESSIONS=200
PF_PORT=${BENCH_PF_PORT:-2525}
PLC_PORT=${BENCH_PLC_PORT:-2527}
SINK_PORT=${BENCH_SINK_PORT:-2626}
TLS_PORT=${BENCH_TLS_PORT:-2636}
RESULTS=${BENCH_RESULTS:-$REPO/bench/RESULTS.md}
SENDER=bench@client.example
RCPT=alarm@upstream.example

log() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
# calc EXPR: floating point arithmetic with awk (bc is not always installed).
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
fmt() { awk -v v="$1" -v p="${2:-1}" 'BEGIN { if (v == "" || v == "n/a") print "n/a"; else printf "%.*f", p, v }'; }

# ---------------------------------------------------------------- prerequisites

[[ $(id -u) == 0 ]] || die "run as root (installs packages, starts a private Postfix whose daemons run as user postfix)"

need_pkgs=()
command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null && command -v postfix >/dev/null || need_pkgs+=(postfix)
command -v socat >/dev/null || need_pkgs+=(socat)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v python3 >/dev/null || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
	[[ ${BENCH_NO_INSTALL:-0} == 1 ]] && die "missing packages: ${need_pkgs[*]}"
	log "installing ${need_pkgs[*]}"
	# Debian's postfix asks debconf questions; "No configuration" leaves
	# /etc/postfix unconfigured and the system instance stopped, which is all
	# we need: this script only uses its binaries with a private config.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2; }
fi
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "go not found (needed to build plcmail and run its Go benchmarks)"

for p in "$PF_PORT" "$PLC_PORT" "$SINK_PORT" "$TLS_PORT"; do
	if ss -Htln "sport = :$p" | grep -q .; then
		die "port $p is in use on this machine; set BENCH_*_PORT to free ports"
	fi
done

W=$(mktemp -d "${BENCH_DIR:-/tmp}/plcmail-bench.XXXXXX")
chmod 755 "$W"
PF=$W/postfix       # private Postfix instance: etc/ (config_directory), queue/, data/
PLC=$W/plcmail      # plcmail config and spool
mkdir -p "$PF/etc" "$PF/queue" "$PF/data" "$PLC" "$W/tls" "$W/bin"

# ---------------------------------------------------------------- cleanup

PIDS=()          # processes we started, killed by id at exit
PLC_PID=""
WATCHDOG=""
SAMPLER=""
PF_STARTED=0
cleanup() {
	local rc=$?
	set +e
	trap '' INT TERM # every step below is bounded; let it finish
	if [[ -n $WATCHDOG ]]; then
		kill "$WATCHDOG" 2>/dev/null
		wait "$WATCHDOG" 2>/dev/null
	fi
	[[ -n $PLC_PID ]] && stop_plcmail
	for p in "${PIDS[@]}"; do
		# Background helpers run in their own process group (setsid) so that
		# socat's forked children go with their parent.
		kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
	done
	if [[ $PF_STARTED == 1 ]]; then
		postfix -c "$PF/etc" stop >/dev/null 2>&1
		for _ in $(seq 50); do postfix -c "$PF/etc" status >/dev/null 2>&1 || break; sleep 0.1; done
		postfix -c "$PF/etc" status >/dev/null 2>&1 && postfix -c "$PF/etc" abort >/dev/null 2>&1
	fi
	for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
	[[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null
	((${#PIDS[@]})) && wait "${PIDS[@]}" 2>/dev/null
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept work directory $W"
	else
		rm -rf "$W"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# The whole run is bounded: after TIME_LIMIT the watchdog stops the script's
# children (by parent id) and the script itself, whose EXIT trap cleans up.
(
	sleep "$TIME_LIMIT" &
	trap 'kill $! 2>/dev/null; exit 0' TERM
	wait $!
	log "time limit of $TIME_LIMIT s reached, stopping"
	kill -TERM $$ 2>/dev/null
	pkill -TERM -P $$ 2>/dev/null
) &
WATCHDOG=$!

# budget SECONDS NAME: whether a phase that needs about SECONDS still fits in
# TIME_LIMIT (keeping 15 s for the report); a phase that does not is skipped
# and named in the report, so a slow machine still gets a table.
SKIPPED=()
budget() {
	if (($(date +%s) - BENCH_START + $1 + 15 <= TIME_LIMIT)); then return 0; fi
	log "skipping $2: not enough time left in the ${TIME_LIMIT} s budget"
	SKIPPED+=("$2")
	return 1
}

# bg NAME CMD...: start CMD in its own session, output to $W/NAME.log; sets BG_PID.
bg() {
	local name=$1
	shift
	setsid "$@" >"$W/$name.log" 2>&1 &
	BG_PID=$!
	PIDS+=("$BG_PID")
}
# stop_bg PID: terminate one helper started with bg.
stop_bg() {
	kill -TERM -- "-$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local end=$(($(date +%s) + $2))
	while (($(date +%s) < end)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------- memory probes

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# pf_pss_kb: PSS summed over the Postfix master and its children (see memsample.py).
pf_pss_kb() { python3 "$REPO/bench/memsample.py" "$PF/queue/pid/master.pid" once; }
pf_nproc() {
	local m
	m=$(awk '{ print $1; exit }' "$PF/queue/pid/master.pid")
	echo $((1 + $(wc -w <"/proc/$m/task/$m/children")))
}

# sampler_start/sampler_stop: the peak of pf_pss_kb into $W/peak.txt, sampled every 200 ms by
# one Python process (a peak that falls between samples is missed, which can
# only make Postfix look smaller).
sampler_start() {
	python3 "$REPO/bench/memsample.py" "$PF/queue/pid/master.pid" watch >"$W/peak.txt" &
	SAMPLER=$!
}
sampler_stop() {
	kill -TERM "$SAMPLER" 2>/dev/null || true
	wait "$SAMPLER" 2>/dev/null || true
}

# ---------------------------------------------------------------- sink & TLS

# The upstream: one smtp-sink, restarted only for the outage. It is not asked
# to count (-c): its counter goes through an output buffer that is flushed
# only now and then, so it lags. A message counts as delivered when the relay
# logged it as accepted by the upstream (Postfix "status=sent", plcmail
# "msg=delivered") and its queue file is gone.
start_sink() {
	bg sink smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 256
	SINK_PID=$BG_PID
	wait_port "$SINK_PORT" 10 || die "smtp-sink did not start: $(cat "$W/sink.log")"
}
stop_sink() { stop_bg "$SINK_PID"; }
pf_sent() { grep -c 'status=sent' "$PF/maillog" 2>/dev/null || true; }
plc_sent() { grep -c 'msg=delivered' "$W/plcmail.log" 2>/dev/null || true; }

make_tls() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
		-keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" 2>/dev/null
	TLS_FP=$(openssl x509 -in "$W/tls/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
}
start_tls_terminator() {
	bg tls socat "openssl-listen:$TLS_PORT,bind=127.0.0.1,reuseaddr,fork,nodelay,cert=$W/tls/cert.pem,key=$W/tls/key.pem,verify=0" \
		"tcp:127.0.0.1:$SINK_PORT,nodelay"
	TLS_PID=$BG_PID
	wait_port "$TLS_PORT" 10 || die "TLS terminator did not start: $(cat "$W/tls.log")"
}

# ---------------------------------------------------------------- Postfix

# The relay of the classic guide, in a private instance. Durability: Postfix's
# cleanup daemon fsyncs every queue file before smtpd answers 250 to DATA (there
# is no setting that turns this off), so both sides promise the same thing.
postfix_configure() {
	cat >"$PF/etc/main.cf" <<-EOF
		compatibility_level = 3.6
		queue_directory = $PF/queue
		data_directory = $PF/data
		maillog_file = $PF/maillog
		maillog_file_prefixes = $PF
		mail_owner = postfix
		setgid_group = postdrop
		myhostname = bench-postfix.localdomain
		mydestination =
		local_transport = error:local delivery is disabled
		alias_maps =
		alias_database =
		biff = no
		append_dot_mydomain = no
		readme_directory = no

		# the relay of the guide
		inet_interfaces = 127.0.0.1
		inet_protocols = ipv4
		mynetworks = 127.0.0.0/8
		smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
		disable_vrfy_command = yes
		message_size_limit = 10240000
		relayhost = [127.0.0.1]:$SINK_PORT
		smtp_tls_security_level = none
		smtp_tls_session_cache_database = btree:\${data_directory}/smtp_scache
	EOF
	# Debian's master.cf, without chroot (a chroot needs copies of /etc files
	# inside the queue directory) and with smtpd on a loopback port. smtpd's
	# process limit is raised from 100 to 256 so that 200 idle sessions are
	# really served at once instead of waiting in the kernel's backlog.
	cat >"$PF/etc/master.cf" <<-EOF
		127.0.0.1:$PF_PORT inet n - n - 256 smtpd
		pickup    unix  n       -       n       60      1       pickup
		cleanup   unix  n       -       n       -       0       cleanup
		qmgr      unix  n       -       n       300     1       qmgr
		tlsmgr    unix  -       -       n       1000?   1       tlsmgr
		rewrite   unix  -       -       n       -       -       trivial-rewrite
		bounce    unix  -       -       n       -       0       bounce
		defer     unix  -       -       n       -       0       bounce
		trace     unix  -       -       n       -       0       bounce
		verify    unix  -       -       n       -       1       verify
		flush     unix  n       -       n       1000?   0       flush
		proxymap  unix  -       -       n       -       -       proxymap
		proxywrite unix -       -       n       -       1       proxymap
		smtp      unix  -       -       n       -       -       smtp
		relay     unix  -       -       n       -       -       smtp
		showq     unix  n       -       n       -       -       showq
		error     unix  -       -       n       -       -       error
		retry     unix  -       -       n       -       -       error
		discard   unix  -       -       n       -       -       discard
		local     unix  -       n       n       -       -       local
		anvil     unix  -       -       n       -       1       anvil
		scache    unix  -       -       n       -       1       scache
		postlog   unix-dgram n  -       n       -       1       postlogd
		tlsproxy  unix  -       -       n       -       0       tlsproxy
	EOF
	chown postfix "$PF/data"
}
postfix_start() {
	postfix -c "$PF/etc" check >&2 || die "postfix check failed"
	postfix -c "$PF/etc" start >/dev/null 2>&1 || die "postfix did not start: $(tail -5 "$PF/maillog" 2>/dev/null)"
	PF_STARTED=1
	wait_port "$PF_PORT" 15 || die "postfix is not listening on $PF_PORT: $(tail -5 "$PF/maillog")"
}
postfix_restart() {
	postfix -c "$PF/etc" stop >/dev/null 2>&1
	for _ in $(seq 100); do postfix -c "$PF/etc" status >/dev/null 2>&1 || break; sleep 0.1; done
	postfix -c "$PF/etc" start >/dev/null 2>&1 || die "postfix did not restart: $(tail -5 "$PF/maillog")"
	wait_port "$PF_PORT" 15 || die "postfix is not listening on $PF_PORT after restart"
}
postfix_set() { # postfix_set name=value...: change main.cf and reload
	postconf -c "$PF/etc" -e "$@"
	postfix -c "$PF/etc" reload >/dev/null 2>&1
	sleep 1
}
pf_queue_count() { find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/hold" "$PF/queue/maildrop" -type f 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- plcmail

PLC_OK=0
PLC_WHY="not built yet"
PLC_BIN=$W/bin/plcmail
plc_config() { # plc_config NAME SECURITY PORT MIN_BACKOFF
	local name=$1 security=$2 port=$3 backoff=$4 tlsline=""
	[[ $security == tls ]] && tlsline="tls_fingerprints = [\"$TLS_FP\"]"
	cat >"$PLC/$name.toml" <<-EOF
		# plcmail relaying to the same smtp-sink as Postfix (generated by bench/run.sh)
		[gateway]
		hostname  = "bench-plcmail.localdomain"
		spool_dir = "$PLC/spool"
		log_level = "info"

		[upstream]
		host     = "127.0.0.1"
		port     = $port
		security = "$security"
		auth     = "none"
		from     = "plcmail@bench.localdomain"
		$tlsline

		[queue]
		min_backoff = "$backoff"
		max_backoff = "$backoff"

		[smtp]
		listen            = ["127.0.0.1:$PLC_PORT"]
		allowed_networks  = ["127.0.0.0/8"]
		max_message_bytes = 10240000
		# like Postfix's smtpd process limit below: 200 idle sessions from one address
		max_connections        = 256
		max_connections_per_ip = 256
	EOF
}
plc_serial_config() { # the serial link on the gateway end of a socat pty pair
	cat >"$PLC/serial.toml" <<-EOF
		[gateway]
		hostname  = "bench-plcmail.localdomain"
		spool_dir = "$PLC/spool-serial"
		log_level = "info"

		[upstream]
		host     = "127.0.0.1"
		port     = $SINK_PORT
		security = "none"
		auth     = "none"
		from     = "plcmail@bench.localdomain"

		[queue]
		min_backoff = "1s"
		max_backoff = "1s"

		[[serial]]
		name   = "bench"
		device = "$W/gw.tty"
		baud   = 115200
		heartbeat_timeout = "1h"

		[[alarm]]
		default = true
		to = ["$RCPT"]

		# every event its own mail, so that every event gets its DELIVERY frame
		[flood]
		holdoff = "0s"
		max_mails_per_minute = 1000000
	EOF
}
plc_queue_count() { find "$PLC/spool/queue" -type f 2>/dev/null | wc -l; }

start_plcmail() { # start_plcmail CONFIGNAME [nolisten]: (re)start serve with that config
	stop_plcmail
	PLC_CFG=$PLC/$1.toml
	setsid "$PLC_BIN" -c "$PLC_CFG" serve >>"$W/plcmail.log" 2>&1 &
	PLC_PID=$!
	[[ ${2:-} == nolisten ]] && return 0
	if ! wait_port "$PLC_PORT" 15; then
		PLC_WHY="plcmail serve did not listen on 127.0.0.1:$PLC_PORT: $(tail -3 "$W/plcmail.log" | tr '\n' ' ')"
		stop_plcmail
		return 1
	fi
}
stop_plcmail() {
	[[ -n $PLC_PID ]] || return 0
	kill -TERM "$PLC_PID" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$PLC_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$PLC_PID" 2>/dev/null || true
	wait "$PLC_PID" 2>/dev/null || true
	PLC_PID=""
}

# ---------------------------------------------------------------- measurements

# relay_run WHO PORT QUEUECOUNTFN SENTFN: one smtp-source run; sets ACC_RATE,
# DEL_RATE, DELIVERED.
relay_run() {
	local who=$1 port=$2 qcount=$3 sent=$4 n=$N_RELAY base t0 t1 t2 end
	base=$($sent)
	t0=$(now)
	if ! timeout 300 smtp-source -s "$SESSIONS" -l "$MSG_BYTES" -m "$n" -f "$SENDER" -t "$RCPT" \
		"127.0.0.1:$port" >"$W/source-$who.log" 2>&1; then
		log "$who: smtp-source failed: $(tail -3 "$W/source-$who.log" | tr '\n' ' ')"
		ACC_RATE=n/a DEL_RATE=n/a DELIVERED=0
		return 1
	fi
	t1=$(now)
	end=$(($(date +%s) + 240))
	while (($(date +%s) < end)); do
		if (($($qcount) == 0)) && (($($sent) - base >= n)); then break; fi
		sleep 0.05
	done
	t2=$(now)
	DELIVERED=$(($($sent) - base))
	ACC_RATE=$(calc "$n / ($t1 - $t0)")
	if ((DELIVERED >= n)); then
		DEL_RATE=$(calc "$n / ($t2 - $t0)")
	else
		DEL_RATE=n/a
		log "$who: only $DELIVERED of $n messages delivered within 240 s"
	fi
	log "$who: accepted $(fmt "$ACC_RATE") msg/s, delivered $(fmt "$DEL_RATE") msg/s ($DELIVERED delivered)"
}

# idle_sessions WHO PORT MEMFN: hold 200 EHLO'd sessions, then read memory.
idle_sessions() {
	local who=$1 port=$2 memfn=$3 end
	bg "idle-$who" python3 "$REPO/bench/idle_sessions.py" 127.0.0.1 "$port" "$IDLE_SESSIONS"
	local ip=$BG_PID
	end=$(($(date +%s) + 90))
	while ! grep -q '^ready' "$W/idle-$who.log" && (($(date +%s) < end)); do sleep 0.2; done
	sleep 1
	IDLE_MEM=$($memfn)
	IDLE_OK=$(grep -o 'ok=[0-9]*' "$W/idle-$who.log" | cut -d= -f2)
	stop_bg "$ip"
	log "$who: ${IDLE_OK:-0} idle sessions, $((IDLE_MEM / 1024)) MiB"
}

# drain WHO PORT QUEUECOUNTFN SENTFN FLUSHCMD...: queue N_DRAIN messages with
# the sink down, start the sink, flush, and time until the queue is empty.
drain() {
	local who=$1 port=$2 qcount=$3 sent=$4 n=$N_DRAIN t0 t1 end q base
	shift 4
	base=$($sent)
	stop_sink
	local ts0 ts1
	ts0=$(now)
	timeout 400 smtp-source -s "$SESSIONS" -l "$MSG_BYTES" -m "$n" -f "$SENDER" -t "$RCPT" \
		"127.0.0.1:$port" >"$W/drain-source-$who.log" 2>&1 || log "$who: smtp-source during outage failed: $(tail -2 "$W/drain-source-$who.log" | tr '\n' ' ')"
	ts1=$(now)
	DRAIN_ACC=$(calc "$n / ($ts1 - $ts0)")
	q=$($qcount)
	log "$who: $q messages queued during the outage ($(fmt "$DRAIN_ACC") msg/s accepted)"
	start_sink
	t0=$(now)
	"$@" >"$W/flush-$who.log" 2>&1 || log "$who: flush command failed: $(cat "$W/flush-$who.log")"
	end=$(($(date +%s) + 300))
	while (($($qcount) > 0)) && (($(date +%s) < end)); do sleep 0.1; done
	t1=$(now)
	q=$($qcount)
	DRAIN_DELIVERED=$(($($sent) - base))
	if ((q == 0)); then
		DRAIN_SECS=$(calc "$t1 - $t0")
	else
		DRAIN_SECS=n/a
		log "$who: $q messages still queued after 300 s"
	fi
	log "$who: drained in $(fmt "$DRAIN_SECS" 2) s, $DRAIN_DELIVERED delivered"
}

# ---------------------------------------------------------------- go benchmarks & sizes

go_bench() { # go_bench PKG [PATTERN]: Benchmark lines of the package, or nothing
	(cd "$REPO" && timeout 150 go test -run '^$' -bench "${2:-.}" -benchmem -count 1 -benchtime "${GO_BENCHTIME:-1s}" "./$1/" 2>&1) |
		grep -E '^Benchmark' || true
}

cross_sizes() {
	local t os arch v env out
	SIZES=()
	for t in "${CROSS_TARGETS[@]}"; do
		IFS=/ read -r os arch v <<<"$t"
		env=(GOOS="$os" GOARCH="$arch" CGO_ENABLED=0)
		[[ $arch == arm && -n $v ]] && env+=(GOARM="$v")
		[[ $arch == mipsle && -n $v ]] && env+=(GOMIPS="$v")
		out=$W/bin/plcmail-$os-$arch${v:+-$v}
		if (cd "$REPO" && env "${env[@]}" timeout 300 go build -trimpath -ldflags "-s -w" -o "$out" ./cmd/plcmail) >"$W/build.log" 2>&1; then
			SIZES+=("$t|$(stat -c %s "$out")")
		else
			SIZES+=("$t|n/a")
		fi
	done
}

pkg_kib() { dpkg-query -W -f='${Installed-Size}' "$1" 2>/dev/null || echo 0; }

# ================================================================ the run

log "work directory $W (queues of both relays on $(findmnt -n -o FSTYPE -T "$W"))"
make_tls

log "building plcmail (stripped static binary, the one that is measured)"
if [[ ${BENCH_SKIP_PLCMAIL:-0} == 1 ]]; then
	PLC_WHY="skipped: BENCH_SKIP_PLCMAIL=1"
elif (cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$PLC_BIN" ./cmd/plcmail) >"$W/build.log" 2>&1; then
	PLC_OK=1
else
	PLC_WHY="go build failed: $(head -2 "$W/build.log" | tr '\n' ' ')"
fi

start_sink
start_tls_terminator
postfix_configure
postfix_start
log "postfix running (private instance in $PF)"

if ((PLC_OK)); then
	plc_config plain none "$SINK_PORT" 1s
	plc_config tls tls "$TLS_PORT" 1s
	plc_config drain none "$SINK_PORT" 1h
	if ! "$PLC_BIN" -c "$PLC/plain.toml" check >"$W/check.log" 2>&1; then
		PLC_OK=0
		PLC_WHY="plcmail check rejected the bench config: $(head -3 "$W/check.log" | tr '\n' ' ')"
	elif ! start_plcmail plain; then
		PLC_OK=0
	fi
fi
((PLC_OK)) && log "plcmail serve running" || log "plcmail rows: n/a ($PLC_WHY)"

declare -A R # results: R[key.pf] / R[key.plc]

# --- memory: idle
sleep 3
R[idle.pf]=$(pf_pss_kb)
R[idle_nproc.pf]=$(pf_nproc)
((PLC_OK)) && R[idle.plc]=$(status_kb "$PLC_PID" VmRSS)

# --- relay: the plain mode runs Postfix, plcmail, plcmail, Postfix (ABBA), the TLS mode BAAB, so that
# a drift of the machine's speed during the run hits both sides alike; the
# table shows the mean of the two runs and each run in parentheses.
# relay_pf KEY / relay_plc KEY: one run, appending the rates to R[KEY.acc.*].
relay_pf() {
	relay_run postfix "$PF_PORT" pf_queue_count pf_sent || true
	R[$1acc.pf]+="$ACC_RATE " R[$1del.pf]+="$DEL_RATE "
}
relay_plc() {
	((PLC_OK)) && [[ -n $PLC_PID ]] || return 0
	relay_run plcmail "$PLC_PORT" plc_queue_count plc_sent || true
	R[$1acc.plc]+="$ACC_RATE " R[$1del.plc]+="$DEL_RATE "
}

log "relay (plain upstream): $N_RELAY messages, $SESSIONS sessions, $MSG_BYTES bytes, twice each"
sampler_start
relay_pf ""
sampler_stop
R[peak.pf]=$(cat "$W/peak.txt")
if ((PLC_OK)); then
	echo 5 >"/proc/$PLC_PID/clear_refs" 2>/dev/null || true # reset VmHWM: the peak of this run only
	relay_plc ""
	R[peak.plc]=$(status_kb "$PLC_PID" VmHWM)
	relay_plc ""
fi
relay_pf ""

# --- relay, implicit TLS upstream (certificate pinned on both sides)
if budget "$((QUICK == 1 ? 45 : 220))" "TLS relay"; then
	log "relay (implicit TLS upstream via socat), twice each"
	# Postfix at its best for TLS: connections to the relayhost reused through
	# tlsproxy (master.cf above) as plcmail reuses its own, instead of the
	# default of one handshake per message.
	postfix_set "relayhost = [127.0.0.1]:$TLS_PORT" smtp_tls_wrappermode=yes smtp_tls_security_level=fingerprint \
		smtp_tls_fingerprint_digest=sha256 "smtp_tls_fingerprint_cert_match = $TLS_FP" smtp_tls_connection_reuse=yes
	# The other order than the plain row (plcmail, Postfix, Postfix, plcmail),
	# so that neither side always runs first on a warming machine.
	plc_tls=0
	if ((PLC_OK)) && start_plcmail tls; then plc_tls=1; fi
	((plc_tls)) && relay_plc t
	relay_pf t
	relay_pf t
	((plc_tls)) && relay_plc t
	((plc_tls)) && stop_plcmail
	postfix_set "relayhost = [127.0.0.1]:$SINK_PORT" smtp_tls_wrappermode=no smtp_tls_security_level=none smtp_tls_connection_reuse=no
fi

# --- memory: 200 idle sessions
if budget 30 "idle sessions"; then
	idle_sessions postfix "$PF_PORT" pf_pss_kb
	R[sess.pf]=$IDLE_MEM R[sess_ok.pf]=$IDLE_OK
	if ((PLC_OK)) && start_plcmail plain; then
		plc_rss() { status_kb "$PLC_PID" VmRSS; }
		idle_sessions plcmail "$PLC_PORT" plc_rss
		R[sess.plc]=$IDLE_MEM R[sess_ok.plc]=$IDLE_OK
		stop_plcmail
	fi
fi

# --- queue drain after an outage
if budget "$((QUICK == 1 ? 45 : 160))" "queue drain"; then
	# Postfix keeps idle smtpd processes for max_idle (100 s): restart it so the
	# drain starts from the same state as plcmail, which is restarted too.
	postfix_restart
	log "queue drain: $N_DRAIN messages queued while the upstream is down"
	drain postfix "$PF_PORT" pf_queue_count pf_sent postqueue -c "$PF/etc" -f
	R[drain.pf]=$DRAIN_SECS R[dacc.pf]=$DRAIN_ACC
	if ((PLC_OK)) && start_plcmail drain; then
		drain plcmail "$PLC_PORT" plc_queue_count plc_sent "$PLC_BIN" -c "$PLC/drain.toml" queue flush
		R[drain.plc]=$DRAIN_SECS R[dacc.plc]=$DRAIN_ACC
		stop_plcmail
	fi
fi

# --- serial: the PLC end of a pty pair against plcmail serve
SERIAL=""
if ((PLC_OK)) && budget 30 "serial"; then
	log "serial: $N_SERIAL events over a pty at 115200 baud"
	if (cd "$REPO" && go build -o "$W/bin/serialbench" ./bench/serialbench) >"$W/build.log" 2>&1; then
		bg pty socat "pty,raw,echo=0,link=$W/plc.tty" "pty,raw,echo=0,link=$W/gw.tty"
		PTY_PID=$BG_PID
		for _ in $(seq 50); do [[ -e $W/gw.tty && -e $W/plc.tty ]] && break; sleep 0.1; done
		plc_serial_config
		start_plcmail serial nolisten
		SERIAL=$(timeout 120 "$W/bin/serialbench" -tty "$W/plc.tty" -n "$N_SERIAL" 2>"$W/serialbench.err") ||
			log "serial: $(cat "$W/serialbench.err")"
		[[ -n $SERIAL ]] && log "serial: $SERIAL"
		stop_plcmail
		stop_bg "$PTY_PID"
	else
		log "serial: cannot build bench/serialbench: $(head -3 "$W/build.log")"
	fi
fi
# sv KEY: one value of serialbench's key=value line
sv() { tr ' ' '\n' <<<"$SERIAL" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

# --- sizes
log "sizes: cross builds ${CROSS_TARGETS[*]}"
SIZES=()
if ((PLC_OK)) && budget 30 "cross builds"; then cross_sizes; fi
PF_PKGS=(postfix libssl3 libsasl2-2 libsasl2-modules-db libdb5.3 libicu72 libnsl2)
PF_KIB=0
PF_PKG_TXT=""
for p in "${PF_PKGS[@]}"; do
	k=$(pkg_kib "$p")
	PF_KIB=$((PF_KIB + ${k:-0}))
	PF_PKG_TXT+="$p $(awk -v k="${k:-0}" 'BEGIN { printf "%.1f", k / 1024 }') MiB, "
done

# --- Go benchmarks
log "go benchmarks: protocol/, bridge/ and the relay cycle in spool/"
PROTO_BENCH="" BRIDGE_BENCH="" SPOOL_BENCH=""
budget 25 "protocol benchmark" && PROTO_BENCH=$(go_bench protocol)
budget 25 "bridge benchmark" && BRIDGE_BENCH=$(go_bench bridge)
budget 25 "spool benchmark" && SPOOL_BENCH=$(go_bench spool 'RelayCycle')

# ================================================================ report

# mean "V1 V2 ...": the mean of the values, n/a if any run failed.
mean() {
	awk -v l="${1:-}" 'BEGIN { n = split(l, v, " "); if (n == 0) { print "n/a"; exit }
		for (i = 1; i <= n; i++) { if (v[i] == "n/a") { print "n/a"; exit } s += v[i] }
		printf "%.6f", s / n }'
}
# runs "V1 V2": the individual runs, for the table.
runs() {
	local v out=""
	for v in ${1:-}; do out+="$(fmt "$v") / "; done
	[[ -n $out ]] && echo " (${out% / })"
}
mib() { [[ -z ${1:-} || $1 == n/a ]] && echo n/a || awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { # ratio PLC PF
	[[ -z ${1:-} || -z ${2:-} || $1 == n/a || $2 == n/a ]] && { echo n/a; return; }
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx", a / b }'
}
na="n/a ($PLC_WHY)"
plc() { if ((PLC_OK)); then echo "${1:-n/a}"; else echo "$na"; fi; }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }
# relay_row LABEL KEY: the mean of R[KEY.pf] and of R[KEY.plc], each with its runs.
relay_row() {
	local pf=${R[$2.pf]:-} pl=${R[$2.plc]:-}
	row "$1" "$(fmt "$(mean "$pf")")$(runs "$pf")" "$(plc "$(fmt "$(mean "$pl")")$(runs "$pl")")" "$(ratio "$(mean "$pl")" "$(mean "$pf")")"
}
# bench_rows PREFIX LINES: one row per Go benchmark line: its name, then its figures.
bench_rows() {
	local line
	while read -r line; do
		echo "| $1$(awk '{ print $1 }' <<<"$line") | $(cut -d' ' -f3- <<<"$(tr -s ' \t' '  ' <<<"$line")") |"
	done <<<"$2"
}

# pf_version: the Postfix that ran (its own mail_version, read through the
# private instance's config: without -c postconf needs /etc/postfix/main.cf).
pf_version() {
	postconf -c "$PF/etc" -h mail_version 2>/dev/null ||
		dpkg-query -W -f '${Version}' postfix 2>/dev/null || echo unknown
}

table() {
	echo "| measurement | Postfix $(pf_version) relay | plcmail | plcmail / Postfix |"
	echo "|---|---:|---:|---:|"
	relay_row "relay, plain upstream: accepted msg/s (higher is better)" acc
	relay_row "relay, plain upstream: delivered msg/s, end to end" del
	relay_row "relay, implicit TLS upstream: accepted msg/s" tacc
	relay_row "relay, implicit TLS upstream: delivered msg/s, end to end" tdel
	row "queue drain after outage: seconds to empty $N_DRAIN msgs (lower is better)" "$(fmt "${R[drain.pf]:-n/a}" 2)" "$(plc "$(fmt "${R[drain.plc]:-n/a}" 2)")" "$(ratio "${R[drain.plc]:-}" "${R[drain.pf]:-}")"
	row "queueing during the outage: accepted msg/s" "$(fmt "${R[dacc.pf]:-n/a}")" "$(plc "$(fmt "${R[dacc.plc]:-n/a}")")" "$(ratio "${R[dacc.plc]:-}" "${R[dacc.pf]:-}")"
	row "memory idle, MiB (Postfix: PSS summed over its ${R[idle_nproc.pf]} processes)" "$(mib "${R[idle.pf]:-}")" "$(plc "$(mib "${R[idle.plc]:-}")")" "$(ratio "${R[idle.plc]:-}" "${R[idle.pf]:-}")"
	row "memory with $IDLE_SESSIONS idle SMTP sessions, MiB (sessions that got 250 to EHLO)" "$(mib "${R[sess.pf]:-}") (${R[sess_ok.pf]:-0})" "$(plc "$(mib "${R[sess.plc]:-}") (${R[sess_ok.plc]:-0})")" "$(ratio "${R[sess.plc]:-}" "${R[sess.pf]:-}")"
	row "memory peak during the plain relay run, MiB" "$(mib "${R[peak.pf]:-}")" "$(plc "$(mib "${R[peak.plc]:-}")")" "$(ratio "${R[peak.plc]:-}" "${R[peak.pf]:-}")"
	local amd=n/a s
	for s in "${SIZES[@]}"; do [[ ${s%%|*} == linux/amd64 ]] && amd=${s##*|}; done
	[[ $amd != n/a ]] && amd=$((amd / 1024))
	row "size on disk, MiB (Postfix: installed size of its packages; plcmail: linux/amd64 binary)" "$(mib "$PF_KIB")" "$(plc "$(mib "$amd")")" "$(ratio "$amd" "$PF_KIB")"
}

plc_table() {
	local s
	echo "| plcmail alone | value |"
	echo "|---|---:|"
	for s in "${SIZES[@]}"; do
		local sz=${s##*|}
		[[ $sz != n/a ]] && sz="$(awk -v b="$sz" 'BEGIN { printf "%.2f MiB (%d bytes)", b / 1048576, b }')"
		echo "| stripped static binary, ${s%%|*} (plain go build; the router builds of the Size section use the template overlay) | $sz |"
	done
	((${#SIZES[@]})) || echo "| stripped static binaries | $na |"
	if [[ -n $PROTO_BENCH ]]; then
		bench_rows "protocol: " "$PROTO_BENCH"
	else
		echo "| protocol decode throughput | n/a (no benchmark in protocol/ yet) |"
	fi
	if [[ -n $SERIAL ]]; then
		echo "| serial through \`plcmail serve\`, pty at 115200 baud, $(sv events) events of $(sv frame_bytes) bytes: event frame to ACK, p50 / p99 / max | $(sv ack_p50_ms) / $(sv ack_p99_ms) / $(sv ack_max_ms) ms (the frame itself takes $(sv wire_ms) ms on the wire) |"
		echo "| serial: event frame to upstream acceptance (DELIVERY frame after the sink's 250), p50 / p99 | $(sv upstream_p50_ms) / $(sv upstream_p99_ms) ms |"
		echo "| serial: events/s, stop-and-wait as the firmware sends, paced at line rate | $(sv frames_per_s) (line limit $(sv line_max_frames_per_s)); ACKed queued $(sv acked_queued), delivered $(sv delivered), duplicates $(sv acked_duplicate), NAKs $(sv nak) |"
	else
		echo "| serial through \`plcmail serve\` | $( ((PLC_OK)) && echo "n/a (serialbench failed, see log)" || echo "$na") |"
	fi
	if [[ -n $BRIDGE_BENCH ]]; then
		bench_rows "serial (bridge): " "$BRIDGE_BENCH"
	else
		echo "| serial: frame to ACK, frame to upstream, frames/s | n/a (no benchmark in bridge/ yet) |"
	fi
	[[ -n $SPOOL_BENCH ]] && bench_rows "spool, Enqueue+Delivered from 16 goroutines (new files vs recycled): " "$SPOOL_BENCH"
	return 0
}

CMD="${BENCH_QUICK:+BENCH_QUICK=$BENCH_QUICK }bash bench/run.sh"
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
FS_TYPE=$(findmnt -n -o FSTYPE -T "$W" | head -1)
FS_OPTS=$(findmnt -n -o OPTIONS -T "$W" | head -1)
# ext4 journals through jbd2, which lists each journaled device in /proc/fs/jbd2.
FS_DEV=$(findmnt -n -o SOURCE -T "$W" | head -1)
FS_JOURNAL=""
if [[ $FS_TYPE == ext4 ]]; then
	if ls /proc/fs/jbd2 2>/dev/null | grep -q "^${FS_DEV##*/}-"; then FS_JOURNAL=", with a journal"; else FS_JOURNAL=", without a journal"; fi
fi
COMMIT=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(cd "$REPO" && git status --porcelain -- . ':!bench/RESULTS.md' 2>/dev/null | grep -q . && echo " (working tree with uncommitted changes)" || true)
report() {
	cat <<-EOF
		# plcmail vs. Postfix: benchmark results

		Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`$CMD\` (${N_RELAY} relay messages, ${N_DRAIN} for the drain; run time $(($(date +%s) - BENCH_START)) s).

		Machine: $(nproc) CPUs ($CPU), $MEM RAM, Linux $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME"); both queues on $FS_TYPE ($FS_OPTS$FS_JOURNAL). Load average (1/5/15 min) $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end: other work on the machine shares its $(nproc) CPUs.
		Software: plcmail $COMMIT$DIRTY built with $(go version | awk '{ print $3 }'); Postfix $(pf_version) (Debian package); client smtp-source and upstream smtp-sink from the same package; TLS terminator socat $(socat -V 2>/dev/null | awk '/socat version/ { print $3; exit }').

	EOF
	table
	((${#SKIPPED[@]})) && printf '\nSkipped to stay within %s s (n/a above): %s.\n' "$TIME_LIMIT" "$(IFS=,; echo "${SKIPPED[*]}" | sed 's/,/, /g')"
	echo
	plc_table
	cat <<-EOF

		Postfix packages counted in "size on disk": ${PF_PKG_TXT%, } (libc not counted; plcmail does not use it).

		## How to read these numbers

		- **Ratios are the trustworthy part.** Both relays ran in the same invocation, on the same machine, against the same
		  smtp-sink, driven by the same smtp-source command (\`smtp-source -s $SESSIONS -l $MSG_BYTES -m $N_RELAY\`, a new
		  connection per message as embedded boards do), one after the other with nothing else of ours running. Each relay
		  row runs both twice, in mirrored order (plain: Postfix, plcmail, plcmail, Postfix; TLS: plcmail, Postfix, Postfix, plcmail) and shows the mean, with each run in parentheses: when the two runs
		  of one side differ a lot, the machine was busy and the ratio deserves less trust.
		- **Absolute figures are indicative only.** This is a small shared machine with 2 cores and other jobs; messages per
		  second and MiB move between runs. Compare a row with its neighbour, not with another run.
		- **Durability is equal.** Postfix's cleanup daemon fsyncs each queue file before smtpd says 250 (not configurable);
		  plcmail's spool writes each message into a file, fsyncs it, renames it into queue/ and fsyncs the directory
		  before the listener says 250. The file is a new one, or one of a delivered message that plcmail recycles
		  (spool/spool_recycle.go): on ext4 without a journal, creating files right after many were deleted is
		  expensive for both relays, and recycling is how plcmail avoids most of it. Both queues live on the same
		  filesystem (above).
		- **Accepted msg/s** is the client's view: messages divided by smtp-source's wall time (each 250 to DATA means the
		  message is on disk). **Delivered msg/s** runs from the same start until the relay's queue is empty *and* the relay
		  has logged every message as accepted by the sink (Postfix \`status=sent\`, plcmail \`msg=delivered\`).
		- **Implicit TLS**: the sink sits behind \`socat openssl-listen\` (port $TLS_PORT, a fresh self-signed P-256 cert).
		  Both relays pin that certificate's SHA-256 fingerprint (Postfix \`smtp_tls_security_level = fingerprint\` with
		  \`smtp_tls_wrappermode = yes\`; plcmail \`security = "tls"\` with \`tls_fingerprints\`), so both verify the peer.
		- **Delivery, each with its defaults.** Postfix opens up to 20 parallel connections to the relayhost
		  (\`default_destination_concurrency_limit\`) and reuses plain ones (connection cache). TLS ones it reuses only
		  with \`smtp_tls_connection_reuse = yes\` and a tlsproxy service, which the TLS rows turn on (not a default: with
		  the default each message pays a handshake, and Postfix's TLS delivery rate is several times lower). plcmail delivers over
		  \`queue.connections\` (default 4) parallel connections, each reused for up to \`queue.batch_size\` (100) messages,
		  and makes the removal of a delivered message durable (a directory fsync shared by concurrent removals) so that
		  it cannot reappear after a power loss and be mailed twice; Postfix only unlinks it.
		- **Queue drain**: the sink is stopped, $N_DRAIN messages are queued through SMTP, the sink is started and each relay is
		  told to retry now (\`postqueue -f\` for Postfix, \`plcmail queue flush\` for plcmail); the figure is the time from
		  the flush until the relay's queue directory is empty. The row below it is how fast each accepted mail while the
		  upstream was down.
		- **Memory**: plcmail is one process (VmRSS; the peak is VmHWM, reset before the run). Postfix is many processes; we sum
		  their PSS (shared libraries and shared pages divided among the processes that map them, so nothing is counted
		  twice), sampled every 200 ms for the peak (a sampled peak can only under-state Postfix). For the idle sessions
		  Postfix's smtpd process limit is raised to 256, otherwise only 100 of the 200 sessions would be served.
		- **Size**: plcmail is a static binary built with \`CGO_ENABLED=0 go build -trimpath -ldflags "-s -w"\`; Postfix is the
		  Installed-Size of its Debian packages plus the TLS, SASL, database and ICU libraries it links.
		- **Serial** rows are plcmail only (Postfix has no serial side). They run the real \`plcmail serve\` with a
		  [[serial]] link on one end of a socat pty pair and bench/serialbench as the PLC on the other: EVENT frames
		  written as the firmware does (stop-and-wait, the last byte held back for the frame's time on a 115200 baud
		  line, since a pty has no baud rate), one mail per event to the same smtp-sink; the upstream figure ends at the
		  DELIVERY frame the gateway sends after the sink's 250. The bridge's own Go benchmark (in-process, no serve)
		  follows.
		- Settings that differ from each program's defaults are in bench/run.sh: Postfix gets the guide's main.cf (relayhost,
		  mynetworks, inet_interfaces, VRFY off, size limit) and no chroot; plcmail retries after 1 s during the relay runs and
		  waits for the flush (1 h backoff) in the drain test.
	EOF
	if [[ -n $PROTO_BENCH$BRIDGE_BENCH$SPOOL_BENCH ]]; then
		echo
		echo "Go benchmark output:"
		echo
		echo '```'
		[[ -n $PROTO_BENCH ]] && echo "$PROTO_BENCH"
		[[ -n $BRIDGE_BENCH ]] && echo "$BRIDGE_BENCH"
		[[ -n $SPOOL_BENCH ]] && echo "$SPOOL_BENCH"
		echo '```'
	fi
}

OUT=$(report)
echo "$OUT"
if [[ $RESULTS != - ]]; then
	# The size section (bench/size.sh, measured separately) stays.
	SIZE_SECTION=$([[ -f $RESULTS ]] && sed -n '/^<!-- bench\/size.sh/,$p' "$RESULTS" || true)
	{ echo "$OUT"; [[ -z $SIZE_SECTION ]] || printf '\n%s\n' "$SIZE_SECTION"; } >"$RESULTS"
	log "wrote $RESULTS"
fi
log "done in $(($(date +%s) - BENCH_START)) s"
