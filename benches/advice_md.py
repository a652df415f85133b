"""Writes benches/ADVICE.md (on stdout) from the advice scenario's loadgen reports; run by
`benches/run advice`.

Each repeat is a baseline run (clients ignore `rate_advice` and send at 1 Hz) and one run per
number of viewers of clients that follow it, each against a fresh server. The box is shared and
noisy: what is quoted is the ratio of updates (and deliveries) with the advice to without, repeat
by repeat, as min / median / max; absolute timings are left out on purpose.
"""

import json
import re
import os
import statistics
import subprocess

env = os.environ
W = env["BENCH_WORK"]
runs = int(env["BENCH_ADVICE_RUNS"])
hold = env["BENCH_ADVICE_HOLD"]
viewers = env["BENCH_ADVICE_VIEWERS"].split()
quick = env.get("BENCH_QUICK") == "1"


def load(name):
    try:
        with open(f"{W}/json/{name}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def mmm(vals, digits=0):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    return f"{fmt(min(vals), digits)} / {fmt(statistics.median(vals), digits)} / {fmt(max(vals), digits)}"


def machine():
    model, mem = "unknown", "unknown"
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
        mem = f"{kb / 1048576:.1f} GiB"
    except (OSError, StopIteration):
        pass
    kernel = subprocess.run(["uname", "-sr"], capture_output=True, text=True).stdout.strip()
    return model, mem, kernel


base = [load(f"advice-base-{i}") for i in range(1, runs + 1)]
follow = {v: [load(f"advice-follow{v}-{i}") for i in range(1, runs + 1)] for v in viewers}
glance_runs = [load(f"advice-glance-{i}") for i in range(1, runs + 1)]
glance = env.get("BENCH_ADVICE_GLANCE", "")
first = next((r for r in base + [r for rs in follow.values() for r in rs] if r), None)
participants = get(first, "config.participants") or 50
hours = get(first, "config.evening_hours") or 4

print("# Battery-aware update rates: updates with and without `rate_advice`\n")
print(f"Written by `benches/run{' --quick' if quick else ''} advice` from {env['BENCH_STARTED']} to "
      f"{env['BENCH_FINISHED']} at commit {env['BENCH_COMMIT']}"
      + (" (quick: one short repeat, a smoke check, not a figure to quote)" if quick else "") + ". "
      "The other scenarios' figures are in [RESULTS.md](RESULTS.md).\n")
model, mem, kernel = machine()
print(f"Machine: {env['BENCH_NCPU']} CPUs ({model}), {mem}, {kernel}. The server ran under "
      f"`taskset -c {env['BENCH_SERVER_CPUS']}` and loadgen under `taskset -c {env['BENCH_LOADGEN_CPUS']}`; "
      "the machine is shared with other work, so only ratios are quoted, never timings.\n")
print("## What ran\n")
print(f"One session of {participants} participants, one WebSocket each, against a fresh server (memory mode, "
      "`FAST_UPDATE_INTERVAL_MS=1000` and `IDLE_UPDATE_INTERVAL_MS=15000`, their defaults) per run. Right after "
      "joining, V participants send `viewing` `{\"visible\": true}` and the others `{\"visible\": false}`. "
      f"{hold} s measured after 5 s for the advice to settle; {runs} repeat(s), each a baseline run and one "
      "run per V:\n")
print(f"- **baseline** (`--ignore-advice`, V = {viewers[0]}): every client sends at 1 Hz whatever it is told;")
print("- **following**: every client sends at most once per advised interval (1 Hz until its first advice, "
      "and at once when an advice speeds it up past an update it owes);")
if glance:
    on, off = (float(x) for x in glance.split(","))
    print(f"- **glancing** (`--glance {glance}`): following, and the 3 viewers start hidden and each looks "
          f"for {on:g} s out of every {on + off:g} s, their looks evenly staggered, so that somebody has the map "
          f"open {min(1.0, 3 * on / (on + off)):.0%} of the time: an evening in miniature.\n")
else:
    print()
print("SPEC §8: a participant's advice is fast while at least one *other* participant has the map open "
      "(`watchers` ≥ 1), idle otherwise. So with V ≥ 2 every participant is watched by somebody and stays fast; "
      "with V = 1 only the viewer itself (watched by nobody) goes idle; with V = 0 everybody does.\n")

pushes = [get(r, "advice.pushes") for rs in follow.values() for r in rs if r]
if pushes and not any(pushes):
    print("**The server pushed no `rate_advice`** (a server without SPEC §8): every client stayed at the "
          "full rate, and the figures below say nothing about the advice.\n")
print("## Updates and deliveries\n")
print("| run | V | updates / s | deliveries / s | lost | clients at the end (median) | "
      f"updates per session in {hours:g} h |")
print("|---|---:|---:|---:|---:|---:|---:|")


def row(label, v, rs):
    fast = [get(r, "advice.clients_fast_at_end") for r in rs if r]
    idle = [get(r, "advice.clients_idle_at_end") for r in rs if r]
    fi = f"{fmt(statistics.median(fast))} fast, {fmt(statistics.median(idle))} idle" if fast and idle else "-"
    print(f"| {label} | {v} | {mmm([get(r, 'updates.per_second') for r in rs], 1)} | "
          f"{mmm([get(r, 'deliveries.per_second') for r in rs], 0)} | "
          f"{mmm([get(r, 'deliveries.lost') for r in rs], 0)} | {fi} | "
          f"{mmm([get(r, 'evening.updates_per_session') for r in rs], 0)} |")


row("baseline (advice ignored)", viewers[0], base)
for v in viewers:
    row("following the advice", v, follow[v])
if glance:
    row(f"glancing ({glance} s)", 3, glance_runs)
print("\nEach cell is min / median / max over the repeats. The full rate is "
      f"{participants} updates/s ({participants * 3600 * hours:,.0f} updates per session in {hours:g} h).\n")

print("## Ratio with the advice to without\n")
print("Per repeat, the run that follows the advice over that repeat's baseline (min / median / max):\n")
print("| V | updates | deliveries | fewer updates in the evening (per session) |")
print("|---:|---:|---:|---:|")
variants = [(v, follow[v]) for v in viewers] + ([("3 glancing", glance_runs)] if glance else [])
for v, rs in variants:
    ups, dels, saved = [], [], []
    for b, f in zip(base, rs):
        bu, fu = get(b, "updates.per_second"), get(f, "updates.per_second")
        bd, fd = get(b, "deliveries.per_second"), get(f, "deliveries.per_second")
        if bu and fu is not None:
            ups.append(fu / bu)
        if bd and fd is not None:
            dels.append(fd / bd)
        be, fe = get(b, "evening.updates_per_session"), get(f, "evening.updates_per_session")
        if be is not None and fe is not None:
            saved.append(be - fe)
    print(f"| {v} | {mmm(ups, 3)} | {mmm(dels, 3)} | {mmm(saved, 0)} |")
print()

label, pool = (f"glancing, --glance {glance}", glance_runs) if glance else (f"following, V = {viewers[0]}", follow[viewers[0]])
sample = next((r for r in pool if r), None)
if sample and sample.get("intervals"):
    print(f"## One run's intervals ({label}, first repeat)\n")
    print("| from (s) | updates / s | deliveries / s | advice pushes | fast | idle | not advised |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i in sample["intervals"]:
        print(f"| {fmt(i['t_s'])} | {fmt(i.get('updates_per_second'), 1)} | {fmt(i.get('deliveries_per_second'), 0)} | "
              f"{i['advice_pushes']} | {i['fast']} | {i['idle']} | {i['unadvised']} |")
    print()

print("## Commands\n")
print("```")
print("benches/run advice            # ADVICE_HOLD (s), ADVICE_RUNS, ADVICE_VIEWERS (\"3 1 0\") to change it")
seen = []
for line in open(f"{W}/commands.txt"):
    line = line.rstrip()
    if not line.startswith("advice-"):
        continue
    line = line.split(": ", 1)[1]

    line = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:$PORT", line)
    line = re.sub(r"--json \S+", "--json NAME.json", line)
    if line not in seen:
        seen.append(line)
print("\n".join(seen))
print("```")
