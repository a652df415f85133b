#!/usr/bin/env python3
"""Prints docs/CAPACITY.md: what N concurrent participants need, from the measured figures.

    python3 docs/capacity.py > docs/CAPACITY.md           # regenerate
    python3 docs/capacity.py | diff - docs/CAPACITY.md    # check (CI)
    python3 docs/capacity.py OTHER/RESULTS.md             # the same from another RESULTS.md

Inputs, all read here (a figure that is missing or unreadable stops the script with its name):
benches/RESULTS.md (server CPU per delivery, memory per socket, the Redis Cluster section's
SPUBLISH / SET / pgbench rates, and two figures of its hand-written "What limits us" part),
k8s/deployment.yaml and k8s/hpa.yaml (a pod's CPU and memory, the HPA's bounds), and the server's
own timers in src/ (the SQL last-seen flush, the session tick, the store batch delay). Every
other number is an assumption, listed in the first table of the output. Python 3 standard
library only; the output depends on nothing but those files.
"""

import math
import os
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Another RESULTS.md may be named as the only argument (to try a new measurement out).
RESULTS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "benches", "RESULTS.md")

# --- assumptions (printed in the output's first table) ----------------------------------------
SIZES = [10_000, 100_000, 1_000_000]
SESSION = 50  # participants per session (SPEC's MAX_PARTICIPANTS, every session full)
RATE_HZ = 1.0  # location updates per participant per second (everyone's map open)
STAY_MIN = 30  # how long a participant stays: N / (30 × 60) joins/s, as many leaves
SESSION_LIFE_MIN = 60  # how long a session lives: sessions / (60 × 60) creations/s
CORE_TARGET = 0.60  # server cores run at most at 60 %
MEM_TARGET = 0.80  # a pod's memory at most 80 % of its limit
REDIS_TARGET = 0.50  # a Redis primary at most at 50 % of the rate measured
PG_TARGET = 0.50  # PostgreSQL at most at 50 % of the pgbench rate measured
RESIDUAL = 0.01  # affine routing: share of updates whose session also has sockets on a second replica
MIN_SHARDS = 3  # the smallest Redis Cluster: 3 primaries
STORE_PER_POSITION = 2  # SET … PX + SADD per location written to the store
STORE_PER_BATCH = 1  # PEXPIRE of the session's index per batch of positions
STORE_PER_TICK = 3  # HSET + PEXPIRE + EVAL (last-seen, activity) per session actor per tick
SQL_PER_JOIN = 2  # UPDATE sessions (the slot) + INSERT participants, one transaction
SQL_PER_LEAVE = 2  # UPDATE participants + UPDATE sessions, one transaction
SQL_PER_CREATE = 1  # INSERT sessions
SQL_PER_FLUSH = 2  # UPDATE sessions (activity) + UPDATE participants … CASE, one transaction


def die(msg):
    sys.exit(f"docs/capacity.py: {msg}")


def read(rel):
    path = os.path.join(ROOT, rel)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as e:
        die(f"cannot read {rel}: {e}")


# --- benches/RESULTS.md -----------------------------------------------------------------------
try:
    with open(RESULTS, encoding="utf-8") as fh:
        results = fh.read()
except OSError as e:
    die(f"cannot read {RESULTS}: {e}")


def section(pattern, what):
    """The text under the one ### or ## heading matching `pattern` (a regex on the heading)."""
    heads = [(m.start(), m.group(2)) for m in re.finditer(r"^(#{2,3}) (.*)$", results, re.M)]
    hits = [i for i, (_, h) in enumerate(heads) if re.match(pattern, h)]
    if len(hits) != 1:
        die(f"benches/RESULTS.md: expected one section for {what} (heading /{pattern}/), found {len(hits)}"
            + ("; run: benches/redis_cluster.sh spublish /tmp/rc --write" if "Cluster" in pattern else ""))
    i = hits[0]
    end = heads[i + 1][0] if i + 1 < len(heads) else len(results)
    return heads[i][1], results[heads[i][0]:end]


def tables(text):
    """[(caption, header cells, rows of cells)] for each markdown table in text; the caption is the
    last non-blank line before the table."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:| ]+\|$", lines[i + 1]):
            caption = next((l for l in reversed(lines[:i]) if l.strip()), "")
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in lines[j].strip("|").split("|")])
                j += 1
            out.append((caption, header, rows))
            i = j
        else:
            i += 1
    return out


def number(cell, what):
    try:
        return float(cell.replace(",", ""))
    except ValueError:
        die(f"benches/RESULTS.md: {what}: '{cell}' is not a number")


def figure(sec, label, caption=None, col="median"):
    """The `col` cell of the row `label` (exact, or a regex when it is compiled) in a
    figure/min/median/max table of section `sec`, whose caption starts with `caption`."""
    heading, text = sec
    for cap, header, rows in tables(text):
        if caption is not None and not cap.startswith(caption):
            continue
        if col not in header:
            continue
        for row in rows:
            name = row[0]
            ok = label.fullmatch(name) if isinstance(label, re.Pattern) else name == label
            if ok:
                what = f"'{heading[:40]}…' {('/' + caption + '/ ') if caption else ''}{name} ({col})"
                return number(row[header.index(col)], what), name
    die(f"benches/RESULTS.md: no row '{getattr(label, 'pattern', label)}'"
        f"{' under ' + repr(caption) if caption else ''} in section '{heading[:60]}…'")


def prose(pattern, what):
    m = re.search(pattern, results)
    if not m:
        die(f"benches/RESULTS.md: cannot find {what} (/{pattern}/) in its text")
    return number(m.group(1), what)


commit_all = re.search(r"at commit (\w+)\. Mode", results)
if not commit_all:
    die("benches/RESULTS.md: no 'at commit X. Mode' in its first paragraph")
commit_all = commit_all.group(1)

redis = section(r"redis[ :(]", "the redis scenario")
c1, _ = figure(redis, "server CPU per delivery (µs)", "One replica:")
c2, _ = figure(redis, "server CPU per delivery (µs)", "Two replicas")
redis_commit = re.search(r"at commit (\w+)", redis[1])
redis_commit = redis_commit.group(1) if redis_commit else commit_all

idle = section(r"idle:", "the idle scenario")
idle_kib, _ = figure(idle, "server RSS per socket (KiB)")
base_mib, _ = figure(idle, "server RSS before (MiB)")

cap = section(r"capacity:", "the capacity scenario")
m = re.search(r"Largest S: min (\d+), median (\d+), max (\d+)", cap[1])
if not m:
    die("benches/RESULTS.md: capacity section has no 'Largest S: min …, median …, max …'")
largest = int(m.group(2))
steps = []
for _, header, rows in tables(cap[1]):
    if {"S", "sockets", "RSS (MiB)"} <= set(header):
        for row in rows:
            if int(number(row[header.index("S")], "capacity S")) == largest:
                steps.append((number(row[header.index("sockets")], "capacity sockets"),
                              number(row[header.index("RSS (MiB)")], "capacity RSS")))
if not steps:
    die(f"benches/RESULTS.md: capacity table has no step at S = {largest}")
cap_sockets = steps[0][0]
cap_rss = statistics.median(r for _, r in steps)
active_kib = cap_rss * 1024 / cap_sockets  # RSS per socket at the largest S, all of it
sock_kib = max(idle_kib, active_kib)

kernel_kib = prose(r"~([\d.]+) KiB of\s+slab per idle TCP connection", "the kernel's memory per connection")
conn_per_worker = prose(r"admits ([\d,]+)\s+connections per worker thread", "actix-server's connections per worker")

rc = section(r"Redis Cluster: sharded pub/sub throughput per shard", "the Redis Cluster measurement")
rc_commit = re.search(r"at commit (\w+)", rc[1])
rc_date = re.search(r"at (\d{4}-\d\d-\d\dT[\d:]+Z)", rc[1])
if not rc_commit or not rc_date:
    die("benches/RESULTS.md: the Redis Cluster section names no date and commit")
spub1, _ = figure(rc, "SPUBLISH / s per primary, 1 subscriber")
spubf, fan_label = figure(rc, re.compile(r"SPUBLISH / s per primary, (\d+) subscribers"))
fanout = int(re.search(r"(\d+) subscribers", fan_label).group(1))
set_rate, _ = figure(rc, re.compile(r"SET … PX / s per primary.*"))
pub_alone, _ = figure(rc, "PUBLISH / s, standalone redis-server, 1 subscriber")
pub_cluster, _ = figure(rc, re.compile(r"PUBLISH / s on the cluster's primary.*"))
pg_tps, pg_label = figure(rc, re.compile(r"PostgreSQL: pgbench -N transactions / s.*"))
spub1_cpu, _ = figure(rc, "primary CPU, SPUBLISH with 1 subscriber (% of one core)")
spub1_sat, _ = figure(rc, re.compile(r"SPUBLISH, 1 subscriber, per second of the primary's CPU.*"))
set_sat, _ = figure(rc, "SET … PX per second of the primary's CPU")

# --- k8s and src ------------------------------------------------------------------------------
deployment = read("k8s/deployment.yaml")
hpa = read("k8s/hpa.yaml")


def k8s(text, pattern, what, file):
    m = re.search(pattern, text, re.S)
    if not m:
        die(f"{file}: cannot find {what} (/{pattern}/)")
    return m.group(1)


def cpu_cores(q):
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def mem_mib(q):
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)", q)
    if not m:
        die(f"k8s/deployment.yaml: memory '{q}' is not in Ki/Mi/Gi/Ti")
    return float(m.group(1)) * units[m.group(2)]


res = re.search(r"resources:\n(.*?)\n(\s*)(?:securityContext|volumeMounts|lifecycle):", deployment, re.S)
if not res:
    die("k8s/deployment.yaml: cannot find the server container's resources block")
res = res.group(1)
pod_cpu = cpu_cores(k8s(res, r"limits:\s*\n\s*cpu:\s*\"?([\d.]+m?)\"?", "limits.cpu", "k8s/deployment.yaml"))
pod_mem = mem_mib(k8s(res, r"limits:.*?memory:\s*\"?(\w+)\"?", "limits.memory", "k8s/deployment.yaml"))
req_cpu = cpu_cores(k8s(res, r"requests:\s*\n\s*cpu:\s*\"?([\d.]+m?)\"?", "requests.cpu", "k8s/deployment.yaml"))
req_mem = mem_mib(k8s(res, r"requests:.*?memory:\s*\"?(\w+)\"?", "requests.memory", "k8s/deployment.yaml"))
hpa_min = int(k8s(hpa, r"minReplicas:\s*(\d+)", "minReplicas", "k8s/hpa.yaml"))
hpa_max = int(k8s(hpa, r"maxReplicas:\s*(\d+)", "maxReplicas", "k8s/hpa.yaml"))
hpa_cpu = int(k8s(hpa, r"name:\s*cpu\s*\n\s*target:.*?averageUtilization:\s*(\d+)", "the CPU target", "k8s/hpa.yaml"))

persistence = read("src/realtime/session/persistence.rs")
timers = read("src/realtime/session/timers.rs")
flush_s = float(k8s(persistence, r"pub const SQL_FLUSH: Duration = Duration::from_secs\((\d+)\)", "SQL_FLUSH",
                    "src/realtime/session/persistence.rs"))
store_delay_s = float(k8s(persistence, r"pub const STORE_DELAY: Duration = Duration::from_millis\((\d+)\)",
                          "STORE_DELAY", "src/realtime/session/persistence.rs")) / 1000
publisher = read("src/realtime/cluster/publisher.rs")
probe_s = float(k8s(publisher, r"const ALONE_PROBE: Duration = Duration::from_secs\((\d+)\)", "ALONE_PROBE",
                    "src/realtime/cluster/publisher.rs"))
tick_s = float(k8s(timers, r"pub const TICK: Duration = Duration::from_millis\((\d+)\)", "TICK",
                   "src/realtime/session/timers.rs")) / 1000

# --- the model --------------------------------------------------------------------------------
RECIPIENTS = SESSION - 1
per_pod_busy = pod_cpu * CORE_TARGET  # cores of work one pod takes
mem_per_socket_mib = (sock_kib + kernel_kib) / 1024
pod_sockets_mem = int((pod_mem * MEM_TARGET - base_mib) / mem_per_socket_mib)
pod_sockets_conn = int(conn_per_worker * pod_cpu)  # one actix worker per core
pod_sockets_cap = min(pod_sockets_mem, pod_sockets_conn)
# Redis: seconds of one primary per message with k subscribers, a + b·k, through the two measured
# points (1 and `fanout` subscribers); per store command, one SET … PX.
b_sub = max(0.0, (1 / spubf - 1 / spub1) / (fanout - 1))
a_msg = 1 / spub1 - b_sub
t_cmd = 1 / set_rate


def spread_over(replicas):
    """Expected replicas holding a session whose 50 sockets were placed at random on `replicas`."""
    return replicas * (1 - (1 - 1 / replicas) ** SESSION)


def plan(n, affine, skip=True):
    p = {}
    p["sessions"] = n / SESSION
    p["updates"] = n * RATE_HZ
    p["deliveries"] = n * RATE_HZ * RECIPIENTS
    cpd = c1 if affine else c2
    p["cpd"] = cpd
    p["busy"] = p["deliveries"] * cpd / 1e6
    p["cores"] = p["busy"] / CORE_TARGET
    p["pods_cpu"] = math.ceil(p["busy"] / per_pod_busy)
    p["pods_mem"] = math.ceil(n / pod_sockets_cap)
    p["pods"] = max(hpa_min, p["pods_cpu"], p["pods_mem"])
    p["per_pod"] = n / p["pods"]
    p["pod_mib"] = base_mib + p["per_pod"] * mem_per_socket_mib
    p["pod_sockets_cpu"] = per_pod_busy / (RECIPIENTS * RATE_HZ * cpd / 1e6)
    # Replicas a session's sockets are on (its actors, its subscribers).
    k = 1.0 if affine else spread_over(p["pods"])
    p["k"] = k
    if not affine:
        # Sensitivity: each further replica of a session costing what the second one did.
        p["cpd_x"] = c1 + (k - 1) * (c2 - c1)
        p["cores_x"] = p["deliveries"] * p["cpd_x"] / 1e6 / CORE_TARGET
    # Redis pub/sub
    if affine and skip:
        # One probe per session per ALONE_PROBE (received by the publisher's own subscription),
        # plus the straddling sessions' updates (received by two replicas).
        probes, straddling = p["sessions"] / probe_s, p["updates"] * RESIDUAL
        p["published"] = probes + straddling
        p["pubsub_out"] = probes + 2 * straddling
        p["ps_load"] = probes * (a_msg + b_sub) + straddling * (a_msg + 2 * b_sub)
    else:
        subs = 1.0 if affine else k
        p["published"] = p["updates"]
        p["pubsub_out"] = p["updates"] * subs
        p["ps_load"] = p["updates"] * (a_msg + b_sub * subs)
    p["subs"] = p["pubsub_out"] / p["published"]
    # Redis store: positions once (by the replica that received them); per actor a batch per
    # STORE_DELAY at most (or per local update, when fewer), and the tick's last-seen write.
    # An actor writes a batch or a tick's last-seen times only when its own sockets sent something.
    local_updates = SESSION * RATE_HZ / k
    batches = min(1 / store_delay_s, local_updates) * k
    ticks = min(1 / tick_s, local_updates) * k
    per_session = SESSION * RATE_HZ * STORE_PER_POSITION + batches * STORE_PER_BATCH + ticks * STORE_PER_TICK
    p["store_per_update"] = per_session / (SESSION * RATE_HZ)
    p["store"] = p["sessions"] * per_session
    p["shard_load"] = p["ps_load"] + p["store"] * t_cmd
    p["shards"] = max(MIN_SHARDS, math.ceil(p["shard_load"] / REDIS_TARGET))
    # PostgreSQL
    p["joins"] = n / (STAY_MIN * 60)
    p["leaves"] = p["joins"]
    p["creates"] = p["sessions"] / (SESSION_LIFE_MIN * 60)
    p["flushes"] = p["sessions"] * k / flush_s
    p["pg_tx"] = p["joins"] + p["leaves"] + p["creates"] + p["flushes"]
    p["pg_stmt"] = (p["joins"] * SQL_PER_JOIN + p["leaves"] * SQL_PER_LEAVE + p["creates"] * SQL_PER_CREATE
                    + p["flushes"] * SQL_PER_FLUSH)
    # Against what is shipped: the HPA's ceiling, a 3-primary cluster, one PostgreSQL.
    p["use"] = {
        "server replicas": p["pods"] / hpa_max,
        "Redis shards": p["shard_load"] / REDIS_TARGET / MIN_SHARDS,
        "PostgreSQL": p["pg_tx"] / (pg_tps * PG_TARGET),
        "pod memory": p["pod_mib"] / (pod_mem * MEM_TARGET),
    }
    return p


# --- output -----------------------------------------------------------------------------------
def n0(x):
    return f"{x:,.0f}"


def n1(x):
    return f"{x:,.1f}"


def n2(x):
    return f"{x:,.2f}"


def pct(x):
    return f"{100 * x:.0f} %"


def short(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


out = []
w = out.append
w("# Capacity: what 10k, 100k and 1M participants need")
w("")
w("Generated by `python3 docs/capacity.py > docs/CAPACITY.md` from the figures measured in "
  "[benches/RESULTS.md](../benches/RESULTS.md), the pod's size in `k8s/`, and the server's timers in `src/`; "
  "do not edit by hand (check: `python3 docs/capacity.py | diff - docs/CAPACITY.md`). "
  f"Server figures: RESULTS.md at commit {commit_all} (the redis scenario at {redis_commit}); Redis Cluster and "
  f"PostgreSQL figures: `benches/redis_cluster.sh spublish` at {rc_date.group(1)}, commit {rc_commit.group(1)}. "
  "All measured on the project's 2-core VM over loopback, so a delivery's cost includes the receiving "
  "side's TCP work (RESULTS.md, *What limits us*): on a real network the server's share would likely be smaller. "
  "The model is arithmetic on those figures, not a measurement of a cluster.")
w("")
w("## Assumptions and inputs")
w("")
w("| | value | where it comes from |")
w("|---|---|---|")
w(f"| participants per session | {SESSION} (every session full) | assumption (SPEC's `MAX_PARTICIPANTS`) |")
w(f"| updates per participant | {RATE_HZ:g} Hz | assumption: everyone's map open (`FAST_UPDATE_INTERVAL_MS` 1000); sessions nobody looks at are advised 15 s |")
w(f"| recipients per update | {RECIPIENTS} | the other participants |")
w(f"| a participant stays | {STAY_MIN} min | assumption: N / {STAY_MIN * 60} joins/s and as many leaves |")
w(f"| a session lives | {SESSION_LIFE_MIN} min | assumption: sessions / {SESSION_LIFE_MIN * 60} creations/s |")
w(f"| server CPU per delivery, session on one replica | {c1:.2f} µs | RESULTS.md, redis, one replica (PostgreSQL + Redis, 20 × 50, median) |")
w(f"| server CPU per delivery, session spread over replicas | {c2:.2f} µs | RESULTS.md, redis, two replicas (the same load, participants alternating) |")
w("| why light-load figures | | at 60 % of a core the cost per delivery is the light-load one: it falls only once a core saturates (capacity table: 6.2 µs at 50 × 50 and 75 % CPU, 1.3 µs at 300 × 50 and 97 %) |")
w(f"| server cores at most | {pct(CORE_TARGET)} busy | assumption (headroom for bursts, reconnect storms, GC-free but not queue-free) |")
w(f"| a pod | {pod_cpu:g} cores, {pod_mem:,.0f} MiB (limits); requests {req_cpu:g} cores, {req_mem:,.0f} MiB | k8s/deployment.yaml; work scales with cores (one actix worker each; measured on one) |")
w(f"| replicas | {hpa_min} … {hpa_max} | k8s/hpa.yaml (CPU target {hpa_cpu} % of requests) |")
w(f"| memory per socket | {sock_kib:.1f} KiB RSS + {kernel_kib:g} KiB kernel | RESULTS.md: the larger of idle ({idle_kib:g} KiB) and capacity at S = {largest} ({cap_rss:.1f} MiB / {n0(cap_sockets)} sockets = {active_kib:.1f} KiB); the kernel's slab per TCP connection (*What limits us*) |")
w(f"| a pod's memory at most | {pct(MEM_TARGET)} of its limit, {base_mib:g} MiB of it the idle server | assumption; RESULTS.md idle, RSS before |")
w(f"| sockets per pod at most | {n0(pod_sockets_cap)} | the smaller of memory ({n0(pod_sockets_mem)}) and actix's {n0(conn_per_worker)} connections per worker × {pod_cpu:g} ({n0(pod_sockets_conn)}) |")
w(f"| SPUBLISH per Redis primary | {n0(spub1)}/s with 1 subscriber, {n0(spubf)}/s with {fanout} | RESULTS.md, Redis Cluster (median; the primary at {spub1_cpu:.0f} % of its core: a lower bound) |")
w(f"| a message with k subscribers costs a primary | {a_msg * 1e6:.2f} + {b_sub * 1e6:.3f} × k µs | straight line through those two rates |")
w(f"| a store command costs a primary | {t_cmd * 1e6:.2f} µs | RESULTS.md, Redis Cluster, SET … PX ({n0(set_rate)}/s); EVAL and SADD taken as costing the same |")
w(f"| Redis primaries at most | {pct(REDIS_TARGET)} busy; at least {MIN_SHARDS} | assumption; the smallest Redis Cluster |")
w(f"| store commands | {STORE_PER_POSITION} per update, {STORE_PER_BATCH} per batch (≤ 1 per {store_delay_s * 1000:.0f} ms per session actor), {STORE_PER_TICK} per actor per tick ({tick_s * 1000:.0f} ms) | src/store/redis.rs (SET … PX + SADD; PEXPIRE; HSET + PEXPIRE + EVAL), STORE_DELAY and TICK in src/realtime/session/ |")
w(f"| affine routing: published updates | one per session every {probe_s:g} s (1 subscriber: the publisher's own), plus {pct(RESIDUAL)} of all updates (2 subscribers) | src/realtime/cluster/publisher.rs: a session's positions are held back while a publish reached only this replica, except one per `ALONE_PROBE` that asks again; the {pct(RESIDUAL)} is an assumption: sessions straddling two replicas for a while (a drain, a pod added or removed moving the hash, a reconnect) |")
w("| spread routing: replicas a session is on | R × (1 − (1 − 1/R)^50) | 50 sockets placed at random on R replicas; each of them holds an actor, subscribes, and gets every update |")
w(f"| SQL last-seen flush | one transaction of {SQL_PER_FLUSH} statements per session actor every {flush_s:g} s | `SQL_FLUSH` in src/realtime/session/persistence.rs (one `UPDATE … CASE` per session, not per participant) |")
w(f"| SQL per join / leave / creation | {SQL_PER_JOIN} / {SQL_PER_LEAVE} / {SQL_PER_CREATE} statements, one transaction each | src/db/participants.rs |")
w(f"| PostgreSQL at most | {pct(PG_TARGET)} of {n0(pg_tps)} transactions/s | RESULTS.md, Redis Cluster section: `pgbench -N` on this VM's PostgreSQL (a yardstick, not a tuned server) |")
w("")

plans = {(n, a): plan(n, a) for n in SIZES for a in (True, False)}
noskip = {n: plan(n, True, skip=False) for n in SIZES}


def first_out(p):
    worst = max(p["use"], key=lambda k: p["use"][k])
    return worst, p["use"][worst]


def verdict(n, affine):
    p = plans[(n, affine)]
    worst, u = first_out(p)
    others = ", ".join(f"{k} {pct(v)}" for k, v in sorted(p["use"].items(), key=lambda kv: -kv[1]) if k != worst)
    binding = "CPU" if p["pods_cpu"] >= p["pods_mem"] else "memory"
    pod = (f"a pod is {binding}-bound (its CPU allows {n0(p['pod_sockets_cpu'])} sockets, its memory and "
           f"connection cap {n0(pod_sockets_cap)})")
    if u <= 1:
        head = f"nothing runs out; the nearest is {worst} at {pct(u)}"
    elif worst == "server replicas":
        head = f"**server replicas** run out first: {p['pods']} needed, the HPA stops at {hpa_max}"
    elif worst == "Redis shards":
        head = f"**Redis** runs out first: {p['shards']} primaries needed, beyond the {MIN_SHARDS} of the smallest cluster"
    elif worst == "PostgreSQL":
        head = f"**PostgreSQL** runs out first: {n0(p['pg_tx'])} transactions/s against {n0(pg_tps * PG_TARGET)} (half the yardstick)"
    else:
        head = f"**pod memory** runs out first: {n0(p['pod_mib'])} MiB per pod"
    return f"{head} ({others} of what is shipped); {pod}"


w("## Headline: what runs out first")
w("")
w(f"\"Runs out\" is against what is shipped: the HPA's {hpa_max} pods of {pod_cpu:g} cores / {pod_mem:,.0f} MiB, "
  f"a Redis Cluster of {MIN_SHARDS} primaries, one PostgreSQL at half the yardstick above. Percentages are "
  "need ÷ that. Affine = ingress-sockets.yaml hashing on the session id (WEBSOCKET_URL_SID=true); "
  "spread = any replica takes any socket (ingress.yaml alone).")
w("")
for n in SIZES:
    w(f"- **{short(n)}**, affine: {verdict(n, True)}.")
    w(f"  Spread: {verdict(n, False)}.")
w("")
aff, spr = plans[(SIZES[-1], True)], plans[(SIZES[-1], False)]
wall = hpa_max * aff["pod_sockets_cpu"]
after = [k for k, _ in sorted(aff["use"].items(), key=lambda kv: -kv[1]) if k not in ("server replicas", "pod memory")]


def backend(p, name):
    return (f"Redis ({p['shards']} primaries)" if name == "Redis shards"
            else f"PostgreSQL ({n0(p['pg_tx'])} transactions/s, {pct(p['use']['PostgreSQL'])} of its share of the yardstick)")


spread_first = [n for n in SIZES if first_out(plans[(n, False)])[0] != "server replicas" and first_out(plans[(n, False)])[1] > 1]
w("In plain words: the server's own CPU is what grows fastest — every update is 49 socket writes of "
  f"~{c1:.1f} µs each on this VM — so a pod is CPU-bound at about {n0(aff['pod_sockets_cpu'])} participants, far "
  f"below what its memory allows ({n0(pod_sockets_cap)}). With affinity, the HPA's ceiling of {hpa_max} pods is "
  f"therefore the first wall, at about {n0(wall)} participants ({short(SIZES[-1])} needs {aff['pods']} pods, "
  f"{n0(aff['cores'])} cores); at {short(SIZES[-1])} the next are {backend(aff, after[0])} and then "
  f"{backend(aff, after[1])}. Without affinity the shared backends grow with the replicas as well as with the "
  "people: every replica a session touches subscribes to it, receives each of its updates from Redis, and "
  "writes its own last-seen times to the store and to SQL, so Redis and PostgreSQL work is multiplied by the "
  f"replicas a session is spread over ({n1(plans[(SIZES[1], False)]['k'])} at {short(SIZES[1])}, "
  f"{n1(spr['k'])} at {short(SIZES[-1])})"
  + (f"; {'Redis' if first_out(plans[(spread_first[0], False)])[0] == 'Redis shards' else 'PostgreSQL'}, "
     f"not the pods, runs out first from {short(spread_first[0])} on" if spread_first else "")
  + f" ({short(SIZES[-1])}: {backend(spr, 'Redis shards')}, {backend(spr, 'PostgreSQL')}).")
w("")


def table(affine):
    cols = [plans[(n, affine)] for n in SIZES]
    w("| | " + " | ".join(f"{n0(n)}" for n in SIZES) + " |")
    w("|---|" + "---:|" * len(SIZES))

    def row(label, fn):
        w(f"| {label} | " + " | ".join(fn(p) for p in cols) + " |")

    row("sessions (N / 50)", lambda p: n0(p["sessions"]))
    row("updates / s (N × 1 Hz)", lambda p: n0(p["updates"]))
    row("deliveries / s (N × 49)", lambda p: n0(p["deliveries"]))
    row("server CPU per delivery (µs)", lambda p: n2(p["cpd"]))
    row(f"server cores busy / needed at {pct(CORE_TARGET)}", lambda p: f"{n1(p['busy'])} / {n1(p['cores'])}")
    if not affine:
        row("… if each further replica of a session cost what the second did (µs; cores)",
            lambda p: f"{n1(p['cpd_x'])}; {n0(p['cores_x'])}")
    row(f"pods by CPU / by memory / chosen (≥ {hpa_min})",
        lambda p: f"{p['pods_cpu']} / {p['pods_mem']} / **{p['pods']}**")
    row("sockets per pod; its memory (MiB)", lambda p: f"{n0(p['per_pod'])}; {n0(p['pod_mib'])}")
    row("replicas a session is on", lambda p: n1(p["k"]))
    row("Redis: messages published / s", lambda p: n0(p["published"]))
    row("Redis: subscribers per message; deliveries / s", lambda p: f"{n1(p['subs'])}; {n0(p['pubsub_out'])}")
    row("Redis: store commands per update; / s", lambda p: f"{n2(p['store_per_update'])}; {n0(p['store'])}")
    row("Redis: primaries' busy seconds per second", lambda p: n2(p["shard_load"]))
    row(f"Redis: shards (primaries) at {pct(REDIS_TARGET)}, ≥ {MIN_SHARDS}", lambda p: f"**{p['shards']}**")
    if affine:
        w("| … if every update were still published (no skip) | "
          + " | ".join(f"{noskip[n]['shards']}" for n in SIZES) + " |")
    row("PostgreSQL: joins + leaves / s", lambda p: f"{n0(p['joins'])} + {n0(p['leaves'])}")
    row("PostgreSQL: session creations / s", lambda p: n1(p["creates"]))
    row(f"PostgreSQL: last-seen flushes / s (sessions × actors / {flush_s:g} s)", lambda p: n0(p["flushes"]))
    row("PostgreSQL: transactions / s; statements / s", lambda p: f"**{n0(p['pg_tx'])}**; {n0(p['pg_stmt'])}")
    row("first to run out (need ÷ shipped)", lambda p: (f"**{first_out(p)[0]}** ({pct(first_out(p)[1])})"
        if first_out(p)[1] > 1 else f"nothing (nearest: {first_out(p)[0]}, {pct(first_out(p)[1])})"))
    w("")


w("## Affine: a session's sockets on one replica")
w("")
table(True)
w("## Spread: sockets balanced over all replicas")
w("")
table(False)
w("## How it is computed")
w("")
w(f"- **Server**: cores busy = deliveries/s × CPU per delivery; needed = busy / {CORE_TARGET:g}. Pods = the most of "
  f"CPU (busy / ({pod_cpu:g} × {CORE_TARGET:g})), memory (N / sockets per pod) and the HPA's minimum. A pod's memory = "
  f"{base_mib:g} MiB + sockets × {sock_kib + kernel_kib:.1f} KiB. The spread figure ({c2:.2f} µs) was measured with "
  "a session on two replicas; a session on more replicas makes each receive every update from Redis for fewer "
  "local sockets, so the second line extrapolates the measured step from one replica to two "
  f"(+{c2 - c1:.2f} µs per delivery per further replica): a pessimistic bound, since under load Redis reads batch.")
w(f"- **Redis pub/sub**: spread, every update is SPUBLISHed once and delivered to each replica that holds the "
  "session (the publisher's own subscription included, which drops its echo); affine, only the probes and the "
  f"straddling share are. A primary's seconds per message = {a_msg * 1e6:.2f} µs + {b_sub * 1e6:.3f} µs × subscribers, the line through "
  f"the measured rates with 1 and {fanout} subscribers; messages spread evenly over shards (one slot per session). "
  "Presence heartbeats (one per session actor every 15 s) and joins/leaves are left out: well under 1 % of the messages.")
w("- **Redis store**: per session and second, 50 × 2 position commands, one PEXPIRE per batch (a batch per "
  f"{store_delay_s * 1000:.0f} ms per actor at most, or one per local update when fewer arrive) and 3 commands per "
  f"actor per {tick_s * 1000:.0f}-ms tick; each priced as one measured SET … PX. Shards = (pub/sub + store "
  f"seconds) / {REDIS_TARGET:g}, at least {MIN_SHARDS}.")
w(f"- **PostgreSQL**: joins and leaves N / {STAY_MIN * 60} each, creations sessions / {SESSION_LIFE_MIN * 60}, "
  f"last-seen flushes sessions × replicas a session is on / {flush_s:g} s (each actor flushes what its own "
  "sockets saw), every one a transaction; compared with pgbench -N's transactions/s on this VM (three "
  "writes and a read each: no lighter than ours).")
w("")
w("## What this leaves out")
w("")
w("- The rate: at 1 Hz everyone is looking at the map. With `rate_advice` a session nobody looks at sends every "
  "15 s (benches/ADVICE.md), which divides deliveries, cores and pub/sub by up to 15; joins, leaves and "
  "flushes stay.")
hpa_cores, model_cores = req_cpu * hpa_cpu / 100, pod_cpu * CORE_TARGET
if hpa_cores < 0.9 * model_cores:
    w(f"- The HPA: its CPU target is {hpa_cpu} % of the *request* ({req_cpu:g} cores), i.e. it adds pods once they average "
      f"{hpa_cores:.3g} cores, long before the {model_cores:.3g} cores assumed here, and reaches "
      f"its {hpa_max} early; raise requests.cpu towards what a pod uses (and maxReplicas) before counting on the pod counts above.")
else:
    w(f"- The HPA: its CPU target is {hpa_cpu} % of the request ({req_cpu:g} cores): it adds pods once they average "
      f"{hpa_cores:.3g} cores, the {model_cores:.3g} cores a pod is sized for here; past {hpa_max} pods, maxReplicas "
      f"must be raised (and the nodes be there).")
w("- The network: the CPU figures are loopback's, where the kernel's receive path runs on the server's core "
  "(about half the floor's 5.15 µs per write, RESULTS.md); ingress-nginx's own CPU for the sockets is not "
  "counted.")
w(f"- Redis figures are one primary's on a shared 2-core VM with the client on the other core (the primary "
  f"at {spub1_cpu:.0f} % of its core): real primaries on their own cores carry more — rate ÷ CPU share suggests "
  f"{n0(spub1_sat)} SPUBLISH/s and {n0(set_sat)} SET/s for a saturated one, which would cut the shard counts "
  f"above by about {pct(1 - spub1 / spub1_sat)} and {pct(1 - set_rate / set_sat)}. For reference, PUBLISH on a "
  f"standalone redis-server: {n0(pub_alone)}/s; classic PUBLISH on the cluster (every node gets it): {n0(pub_cluster)}/s.")
w("- PostgreSQL's yardstick is this VM's disk with default settings: a managed or tuned server does several "
  "times more; the point is how the load grows (per session, and × replicas per session without affinity).")
print("\n".join(out))
