#!/usr/bin/env python3
"""RSS sampler for scripts/bench-large.sh.

Usage: rss-sampler.py OUT INTERVAL_S NAME=PID...

Every INTERVAL_S seconds, for each NAME=PID, writes one line to OUT:
  <unix ms> <name> <VmRSS kB summed over PID and its descendants> <memfd kB>
where memfd kB is the size of the memfd files the processes hold open (edgecache keeps
sealed in-memory copies of large bodies to send with sendfile; their pages are shared
memory that VmRSS does not count unless mapped). Stops when every PID is gone or on SIGTERM.
"""
import os
import signal
import sys
import time

out_path, interval = sys.argv[1], float(sys.argv[2])
targets = [a.split("=", 1) for a in sys.argv[3:]]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def tree(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(f.read().split())
        except OSError:
            pass
    return seen


def rss_kb(p):
    try:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memfd_kb(p):
    total = 0
    try:
        fds = os.listdir(f"/proc/{p}/fd")
    except OSError:
        return 0
    for fd in fds:
        path = f"/proc/{p}/fd/{fd}"
        try:
            if os.readlink(path).startswith("/memfd:"):
                total += os.stat(path).st_size
        except OSError:
            pass
    return total // 1024


with open(out_path, "a", buffering=1) as out:
    while True:
        alive = False
        now = int(time.time() * 1000)
        for name, pid in targets:
            procs = tree(pid)
            if not os.path.exists(f"/proc/{pid}"):
                continue
            alive = True
            out.write(f"{now} {name} {sum(rss_kb(p) for p in procs)} {sum(memfd_kb(p) for p in procs)}\n")
        if not alive:
            break
        time.sleep(interval)
