#!/usr/bin/env python3
"""Redis's own counters around a loadgen run, for benches/run's `cluster` scenario.

    redis_counters.py sample OUT.jsonl INTERVAL NODES [SERVERS]
        Every INTERVAL seconds, one line of JSON: the wall time (µs) and, for every Redis node
        (NODES: host:port,host:port,...), `INFO commandstats cpu replication` (calls and usec by
        command, used_cpu_sys + used_cpu_user, role), and for every server (SERVERS: comma list of
        http://IP:PORT) the counters of its /metrics that say what went through Redis. Runs until
        SIGTERM or SIGINT. One connection per node, kept open; its INFO calls are counted by
        Redis as `info` and left out of the command totals below.

    redis_counters.py idle OUT.json SAMPLES.jsonl
        What the nodes do with no server attached: CPU (% of one core) and commands per second
        between the first and the last sample.

    redis_counters.py window REPORT.json SAMPLES.jsonl [IDLE.json]
        Adds "redis" to loadgen's REPORT.json: between the first and the last sample taken inside
        the report's measured window (`window_unix_us`), the commands all nodes processed (and the
        primaries, the replicas, each command) and their CPU, divided by the location updates the
        servers accepted between the same two samples (location_updates_in_total, summed over
        the servers); the servers' published / skipped / received cluster messages per second.
"""

import json
import re
import signal
import socket
import sys
import time
import urllib.request

METRICS = {
    "location_updates_in_total": "updates_in",
    "location_deliveries_out_total": "deliveries_out",
    "pubsub_published_total": "published",
    "pubsub_skipped_total": "skipped",
    "pubsub_received_total": "received",
    "pubsub_dropped_total": "dropped",
    "redis_errors_total": "redis_errors",
    "store_errors_total": "store_errors",
}
# What the sampler itself sends.
OWN = {"info"}


class Node:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.addr = addr
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.file = self.sock.makefile("rb")

    def info(self):
        args = [b"INFO", b"commandstats", b"cpu", b"replication"]
        self.sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        head = self.file.readline()
        if not head.startswith(b"$"):
            raise OSError(f"{self.addr}: unexpected reply {head[:200]!r}")
        n = int(head[1:])
        body = self.file.read(n + 2)[:n].decode()
        out = {"cmds": {}, "cpu": 0.0, "role": None}
        for line in body.splitlines():
            if line.startswith("cmdstat_"):
                name, _, fields = line[len("cmdstat_"):].partition(":")
                f = dict(kv.split("=", 1) for kv in fields.split(","))
                out["cmds"][name] = [int(f["calls"]), int(f["usec"])]
            elif line.startswith("used_cpu_sys:") or line.startswith("used_cpu_user:"):
                out["cpu"] += float(line.split(":", 1)[1])
            elif line.startswith("role:"):
                out["role"] = line.split(":", 1)[1].strip()
        return out


def metrics(url):
    text = urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=5).read().decode()
    out = {v: 0.0 for v in METRICS.values()}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(?:location_sharing_)?([a-z_]+)(\{[^}]*\})?\s+(\S+)$", line)
        if m and m.group(1) in METRICS:
            out[METRICS[m.group(1)]] += float(m.group(3))
    return out


def sample(out, interval, nodes, servers):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    conns = [Node(a) for a in nodes]
    with open(out, "a") as f:
        next_t = time.time()
        while not stop:
            t0 = time.time()
            rec = {"nodes": {}, "servers": {}}
            try:
                for c in conns:
                    rec["nodes"][c.addr] = c.info()
                for u in servers:
                    rec["servers"][u] = metrics(u)
            except (OSError, ValueError) as e:
                rec["error"] = str(e)
            rec["t"] = int((t0 + time.time()) / 2 * 1e6)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            next_t += interval
            while not stop and time.time() < next_t:
                time.sleep(min(0.05, max(0.0, next_t - time.time())))


def load(path):
    out = []
    for line in open(path):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "error" not in r:
            out.append(r)
    return out


def deltas(a, b):
    """Commands (all but the sampler's own) and CPU seconds between two samples, by node role."""
    d = {"commands": 0, "commands_primaries": 0, "commands_replicas": 0, "cpu": 0.0, "cpu_primaries": 0.0,
         "by_command": {}, "own_usec": 0, "nodes": 0, "primaries": 0}
    for addr, nb in b["nodes"].items():
        na = a["nodes"].get(addr)
        if na is None:
            continue
        d["nodes"] += 1
        primary = nb["role"] == "master"
        d["primaries"] += primary
        cpu = nb["cpu"] - na["cpu"]
        d["cpu"] += cpu
        if primary:
            d["cpu_primaries"] += cpu
        for name, (calls, usec) in nb["cmds"].items():
            c0, u0 = na["cmds"].get(name, [0, 0])
            if name in OWN:
                d["own_usec"] += usec - u0
                continue
            n = calls - c0
            if n <= 0:
                continue
            d["commands"] += n
            d["commands_primaries" if primary else "commands_replicas"] += n
            d["by_command"][name] = d["by_command"].get(name, 0) + n
    return d


def per(x, n, scale=1.0, digits=3):
    return round(x * scale / n, digits) if n else None


def idle(out, samples_path):
    s = load(samples_path)
    if len(s) < 2:
        json.dump({"error": "fewer than 2 samples"}, open(out, "w"))
        return
    a, b = s[0], s[-1]
    dt = (b["t"] - a["t"]) / 1e6
    d = deltas(a, b)
    json.dump({"seconds": round(dt, 3), "nodes": d["nodes"], "cpu_percent": per(d["cpu"], dt, 100),
               "cpu_percent_primaries": per(d["cpu_primaries"], dt, 100),
               "commands_per_second": per(d["commands"], dt)}, open(out, "w"), indent=1)


def window(report_path, samples_path, idle_path=None):
    report = json.load(open(report_path))
    w = report.get("window_unix_us")
    s = load(samples_path)
    redis = {"error": None}
    inside = [r for r in s if w and w["start"] <= r["t"] <= w["end"]]
    if len(inside) < 2:
        redis["error"] = f"{len(inside)} sample(s) inside the measured window"
    else:
        a, b = inside[0], inside[-1]
        dt = (b["t"] - a["t"]) / 1e6
        d = deltas(a, b)
        sv = {k: sum(b["servers"][u][k] - a["servers"].get(u, {}).get(k, 0) for u in b["servers"])
              for k in METRICS.values()}
        n = sv["updates_in"]
        redis.update({
            "interval_s": round(dt, 3),
            "samples_in_window": len(inside),
            "nodes": d["nodes"],
            "primaries": d["primaries"],
            "updates": int(n),
            "updates_per_second": per(n, dt, 1, 1),
            "commands": d["commands"],
            "commands_per_update": per(d["commands"], n),
            "commands_per_update_primaries": per(d["commands_primaries"], n),
            "commands_per_update_replicas": per(d["commands_replicas"], n),
            "by_command_per_update": {k: per(v, n, 1, 4) for k, v in
                                      sorted(d["by_command"].items(), key=lambda kv: -kv[1])},
            "cpu_seconds": round(d["cpu"], 4),
            "cpu_percent": per(d["cpu"], dt, 100, 1),
            "cpu_us_per_update": per(d["cpu"], n, 1e6, 2),
            "cpu_us_per_update_primaries": per(d["cpu_primaries"], n, 1e6, 2),
            # The sampler's INFO calls, included in the CPU above (their own usec only).
            "sampler_info_us_per_update": per(d["own_usec"], n, 1, 3),
            "published_per_second": per(sv["published"], dt, 1, 1),
            "skipped_per_second": per(sv["skipped"], dt, 1, 1),
            "skipped_percent_of_updates": per(sv["skipped"], n, 100, 1),
            "received_per_second": per(sv["received"], dt, 1, 1),
            "deliveries_out_per_second": per(sv["deliveries_out"], dt, 1, 0),
            "dropped": int(sv["dropped"]),
            "redis_errors": int(sv["redis_errors"]),
            "store_errors": int(sv["store_errors"]),
        })
        if idle_path:
            try:
                base = json.load(open(idle_path))
            except (OSError, ValueError):
                base = {}
            if base.get("cpu_percent") is not None:
                above = max(0.0, d["cpu"] - base["cpu_percent"] / 100 * dt)
                redis["idle_cpu_percent"] = base["cpu_percent"]
                redis["cpu_us_per_update_above_idle"] = per(above, n, 1e6, 2)
    report["redis"] = redis
    with open(report_path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    if redis["error"]:
        print(f"redis_counters: {report_path}: {redis['error']}", file=sys.stderr)
        return 1
    print(f"   Redis: {redis['commands_per_update']} commands and {redis['cpu_us_per_update']} µs of CPU per update "
          f"(all {redis['nodes']} node(s)); skipped {redis['skipped_per_second']}/s, published "
          f"{redis['published_per_second']}/s", file=sys.stderr)
    return 0


def main(argv):
    if len(argv) >= 4 and argv[0] == "sample":
        nodes = [n for n in argv[3].split(",") if n]
        servers = [u for u in (argv[4] if len(argv) > 4 else "").split(",") if u]
        sample(argv[1], float(argv[2]), nodes, servers)
        return 0
    if len(argv) == 3 and argv[0] == "idle":
        idle(argv[1], argv[2])
        return 0
    if len(argv) in (3, 4) and argv[0] == "window":
        return window(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
