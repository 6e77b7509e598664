# wearcount.awk: counts the file operations on the spool per message from
# an `strace -f -y` log of `queuedepth -wear N` (bench/queuedepth.sh).
# Phases start at the marker files phase-alarm and phase-relayed; only
# operations on paths under SPOOL count, and only those that succeeded.
# Usage: awk -v SPOOL=DIR -v N=100 -f wearcount.awk strace.log
/phase-alarm/   { phase = "alarm"; next }
/phase-relayed/ { phase = "relayed"; next }
phase == "" || index($0, SPOOL) == 0 || $0 ~ /= -1 / { next }
$2 ~ /^(write|pwrite64)\(/ && $0 !~ /= 0$/ { w[phase]++ }
$2 ~ /^(fsync|fdatasync)\(/                { f[phase]++ }
$2 ~ /^fdatasync\(/                        { d[phase]++ }
$2 ~ /^(renameat2?|rename|linkat|unlinkat|unlink)\(/ { m[phase]++ }
END {
	print "| kind | file writes/msg | fsyncs/msg (of which fdatasync) | renames, links, unlinks/msg |"
	print "|---|---:|---:|---:|"
	split("alarm relayed", ks, " ")
	for (i = 1; i <= 2; i++) {
		k = ks[i]
		printf "| %s | %.2f | %.2f (%.2f) | %.2f |\n", k, w[k] / N, f[k] / N, d[k] / N, m[k] / N
	}
}
