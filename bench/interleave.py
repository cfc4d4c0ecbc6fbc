#!/usr/bin/env python3
"""Times several commands in interleaved rounds (A B C, A B C, …) and writes the result in
hyperfine's JSON layout (results[].command / times / median / min / max).

On a shared machine whose load drifts over minutes, running each command's repetitions back
to back (as hyperfine does) lets the drift decide the comparison; interleaving gives every
command the same conditions.   usage: interleave.py RUNS OUT.json NAME=COMMAND...
"""
import json, os, statistics, subprocess, sys, time

runs, out, specs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
cmds = [s.split("=", 1) for s in specs]
times = {name: [] for name, _ in cmds}
for name, cmd in cmds:  # one warm-up run each
    subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
for _ in range(runs):
    for name, cmd in cmds:
        t0 = time.monotonic()
        subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times[name].append(time.monotonic() - t0)
results = [{"command": name, "times": times[name], "median": statistics.median(times[name]),
            "min": min(times[name]), "max": max(times[name])} for name, _ in cmds]
json.dump({"results": results}, open(out, "w"), indent=1)
for r in results:
    print("%-16s median %.3f s  min %.3f  max %.3f" % (r["command"], r["median"], r["min"], r["max"]))
