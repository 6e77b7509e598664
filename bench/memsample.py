#!/usr/bin/env python3
"""Memory of a process tree, in KiB, for bench/run.sh.

Usage: memsample.py PIDFILE|PID once     print the current sum once
       memsample.py PIDFILE|PID watch    sample every 200 ms until SIGTERM,
                                         then print the largest sum seen

The sum covers the process and its direct children (Postfix's master and
the daemons it spawns; plcmail is a single process). Each process counts
with its PSS (proportional set size: a shared page is divided among the
processes mapping it, so summing never counts a page twice), read from
/proc/PID/smaps_rollup; where that file is missing (old kernels) VmRSS is
used instead.

One long-running Python process reads /proc directly: forking a tool per
process per sample would burn the CPU of the relay it is measuring.
"""

import os
import signal
import sys
import time


def root_pid(arg):
    if arg.isdigit():
        return int(arg)
    with open(arg) as f:
        return int(f.read().split()[0])


def children(pid):
    kids = []
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        # No children file (kernel without CONFIG_PROC_CHILDREN): scan /proc.
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                            kids.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
    return kids


def proc_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_kb(pid):
    return proc_kb(pid) + sum(proc_kb(c) for c in children(pid))


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("once", "watch"):
        print(__doc__, file=sys.stderr)
        return 2
    pid = root_pid(sys.argv[1])
    if sys.argv[2] == "once":
        print(tree_kb(pid))
        return 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    peak = 0
    while not stop:
        peak = max(peak, tree_kb(pid))
        time.sleep(0.2)
    print(peak, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
