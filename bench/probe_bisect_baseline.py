#!/usr/bin/env python3
"""Bench-only baseline for `idlereset probe`: the sequential approach a user would script.

Bisects the idle timeout between LO and HI seconds: each step opens one connection, stays idle
for the midpoint, then sends a line and waits for the answer (the lab database answers every
line). Each guess costs a full idle wait, so the total is a sum of waits. Prints JSON.
"""
import json, socket, sys, time

host, port, lo, hi, precision = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
t0 = time.monotonic()
steps = 0
while hi - lo > precision:
    mid = (lo + hi) / 2
    steps += 1
    s = socket.create_connection((host, port), timeout=5)
    time.sleep(mid)
    try:
        s.settimeout(3)
        s.sendall(b"PING\n")
        ok = s.recv(16) != b""
    except OSError:
        ok = False
    s.close()
    if ok:
        lo = mid
    else:
        hi = mid
print(json.dumps({"low": lo, "high": hi, "elapsed_s": time.monotonic() - t0, "steps": steps}))
