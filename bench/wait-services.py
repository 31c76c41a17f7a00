#!/usr/bin/env python3
"""Waits until COUNT processes run `sleep MARK`; prints the latest of their start times (clock
ticks since boot, /proc/PID/stat field 22) and exits 0, or exits 1 after TIMEOUT seconds.

Usage: wait-services.py COUNT MARK TIMEOUT BASELINE PER_SERVICE

`pgrep -f` reads every process's command line: with 1,000 services that is ~80 ms of CPU per
call, and polling with it would take a core away from the supervisor being measured. So this
first only counts /proc's entries (one directory read) until there are BASELINE + COUNT *
PER_SERVICE processes (PER_SERVICE is 2 for s6, whose s6-supervise runs next to each service; less a margin),
and only then reads command lines: each `sleep MARK` pid once, the others again each round, with
a pause between rounds twice as long as the round took. The start times make the result
independent of how soon this watcher looks: the time is when the last service process was made.
"""
import os
import sys
import time

count, mark, timeout = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3])
baseline, per_service = int(sys.argv[4]), int(sys.argv[5])
deadline = time.monotonic() + timeout


def pids():
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def is_service(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return len(argv) >= 2 and os.path.basename(argv[0]) == b"sleep" and argv[1] == mark


def start_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command may hold spaces or parentheses: fields are counted after the last ')'.
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


# (50 fewer: processes that were there at the baseline may have ended since.)
while time.monotonic() < deadline and len(pids()) < baseline + count * per_service - 50:
    time.sleep(0.01)

counted = set()
while time.monotonic() < deadline:
    began = time.monotonic()
    for pid in pids():
        if pid not in counted and is_service(pid):
            counted.add(pid)
    if len(counted) >= count:
        print(max(start_ticks(pid) for pid in counted))
        sys.exit(0)
    time.sleep(max(0.002, 2 * (time.monotonic() - began)))
print(f"only {len(counted)} of {count} after {timeout} s", file=sys.stderr)
sys.exit(1)
