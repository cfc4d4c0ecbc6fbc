#!/usr/bin/env python3
"""Turns bench/policy's measurements into reports/bench-policy.md."""
import json, os, platform, sqlite3, subprocess, sys
db, data = sys.argv[1], sys.argv[2]
flows = sqlite3.connect(db).execute("select count(*) from flow").fetchone()[0]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
runs = [l.split() for l in open(os.path.join(data, "policy-runs.txt")) if l.strip()]
out = ["# Policy benchmark\n",
       "Written by `bench/policy` (not a unit test). Medians of interleaved rounds (`bench/interleave.py`) on this machine: %s, %d cores, %s.\n" % (cpu, os.cpu_count(), platform.platform()),
       "Store: `%s`, %d flows (bench/graph's store, from bench/run's synthetic capture), inventory "
       "`bench/graph-inventory.yaml`. `suggest --db STORE --inventory INV -o FILE`, then `simulate --policy FILE --db STORE "
       "--flows none` of that policy on the same store (0 flows blocked is checked below).\n" % (os.path.basename(db), flows),
       "| external peers | rules | policy MB | suggest median s | suggest peak RSS MB | simulate median s | simulate peak RSS MB | blocked | lint median s |",
       "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
verdicts = []
for mode, rules, size, srss, mrss in runs:
    hf = {r["command"]: r for r in json.load(open(os.path.join(data, "policy-%s.json" % mode)))["results"]}
    sim = json.load(open(os.path.join(data, "policy-sim-%s.json" % mode)))["summary"]
    label = {"name": "per address or DNS name (the default)", "prefix": "per /24 or /48 (`--group-external prefix`)"}[mode]
    lint = "%.2f" % hf["lint"]["median"] if "lint" in hf else "–"
    out.append("| %s | %s | %.1f | %.2f | %.0f | %.2f | %.0f | %d | %s |" % (label, rules, int(size) / 1e6, hf["suggest"]["median"],
               int(srss) / 1024, hf["simulate"]["median"], int(mrss) / 1024, sim["blocked"], lint))
    verdicts.append((mode, hf["suggest"]["median"], hf["simulate"]["median"], hf["suggest"], hf["simulate"]))
def phases(m, what):
    for line in open(os.path.join(data, "policy-phases-%s.txt" % m)):
        if line.startswith(what + "_seconds"):
            return ", ".join(p.replace("=", " ") + " s" for p in line.split()[1:])
    return "?"
for what in ("suggest", "simulate"):
    out.append("\nWhere %s's time goes (`FLOWMAP_TIMES=1`, one run): " % what
               + "; ".join("%s — %s" % (m, phases(m, what)) for m, *_ in runs) + ".")
out.append("\nThe synthetic store is hard on a policy: about a fifth of its flows come from IPv6 clients in a public prefix, each its own "
           "external peer by default, and its \"other UDP\" uses random ports — every observed (client, server, port) "
           "becomes a rule. Simulation time is reading the policy (rules in the layout suggest writes are scanned "
           "straight from the file's bytes; any other layout goes through flowmap's own YAML reader, for the subset "
           "configuration files use, and then a tree), indexing the rules (flat open-addressing tables by both sides and port), then evaluating each "
           "flow. From a store with two CPUs, the DNS answers and the flows are read on two more threads while "
           "the policy is read; then the main thread and the one that read flows both evaluate. A policy of a few thousand rules (what a person "
           "reviews) reads in a fraction of a second. `lint --policy FILE` (no traffic) compares each rule only "
           "with earlier rules between overlapping selectors that can share a port with it: most of its time is "
           "reading the policy.")
out.append("\n## Target\n")
for mode, s, m, sr, mr in verdicts:
    out.append("- %s: suggest **%.2f s** (%s), simulate **%.2f s** (%s); target ≤ 3 s each. Single rounds: suggest "
               "%.2f–%.2f s, simulate %.2f–%.2f s." % (
        mode, s, "met" if s <= 3 else "not met", m, "met" if m <= 3 else "not met", sr["min"], sr["max"], mr["min"], mr["max"]))
out.append("\nThe medians are of one bench run on a shared machine whose speed drifts by a quarter or more between "
           "spells: a median close to the target can land on either side of it in another run.")
print("\n".join(out))
