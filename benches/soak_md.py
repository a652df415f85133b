"""Writes benches/SOAK.md (on stdout) from the soak's loadgen report; run by `benches/run soak`.

The soak has a file of its own: `benches/run` rewrites RESULTS.md whole from the scenarios of
one run, so a soak run alone would otherwise wipe the standard figures (and they, the soak's).
"""

import json
import os
import re
import subprocess

env = os.environ
W = env["BENCH_WORK"]

try:
    with open(f"{W}/json/soak.json") as f:
        r = json.load(f)
except (OSError, ValueError):
    r = None

MIB = 1048576


def get(d, path, default=None):
    for k in path.split("."):
        if not isinstance(d, dict) or d.get(k) is None:
            return default
        d = d[k]
    return d


def num(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ms(us, digits=2):
    return "-" if us is None else f"{us / 1000:.{digits}f}"


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


quick = env.get("BENCH_QUICK") == "1"
print("# Soak\n")
print(f"Written by `benches/run{' --quick' if quick else ''} soak` from {env['BENCH_STARTED']} to "
      f"{env['BENCH_FINISHED']} at commit {env['BENCH_COMMIT']}"
      + (" (quick: a short smoke run, not the 10-minute soak)" if quick else "") + ". "
      "The other scenarios' figures are in [RESULTS.md](RESULTS.md).\n")
model, mem, kernel = machine()
print(f"Machine: {env['BENCH_NCPU']} CPUs ({model}), {mem}, {kernel}, `ulimit -n` {env['BENCH_NOFILE']}. "
      f"The server ran under `taskset -c {env['BENCH_SERVER_CPUS']}` and loadgen under "
      f"`taskset -c {env['BENCH_LOADGEN_CPUS']}`; the machine is shared with other work, so absolute "
      "figures move between runs: what counts here is whether memory and open files stay level.\n")

if r is None:
    print("**No report: loadgen did not write one** (see the run's output).\n")
else:
    c = r["config"]
    print("## What ran\n")
    print(f"For {num(c['duration_s'])} s at once, against one server in memory mode (SQLite) with SPEC §11's "
          "abuse limits on (each at its default, set explicitly: see the command below):\n")
    print(f"- **fan-out**: {c['sessions']} sessions × {c['participants']} participants sending at "
          f"{c['rate_hz']:g} Hz, each delivery timed from when its update was due;")
    print(f"- **churn**: {c['churn_rate_per_s']:g} cycles/s of create-or-reuse session (a new one every "
          f"{c['reuse']}) → join → connect → phx_join → leave → close;")
    print(f"- **REST**: {c['rest_clients']} clients, each doing create + join + GET {c['rest_rate_hz']:g} times a second;")
    print(f"- all of that spread over {c['source_addrs']} source addresses (127.0.0.2 … 127.0.0.{1 + c['source_addrs']}), "
          "far under the per-address limits;")
    print(f"- **abusers**, all from {c['abuse_addr']}, a round every {c['abuse_every_s']:g} s (the first "
          f"{c['abuse_every_s'] / 2:g} s in, so they are quiet when the server is sampled): "
          f"{c['abuse_half_open']} half-open connections (half send part of a request head, half nothing), "
          f"{c['abuse_sockets']} sockets on one participant's token, a socket sent garbage frames and one sent "
          f"a {num(c['abuse_frame_bytes'])}-byte frame, a handshake flood and a session-creation flood "
          "(each flood stops once refused 20 times).\n")

    print(f"## Samples every {c['sample_every_s']:g} s\n")
    print("RSS and open files are the server process's (`/proc/PID/status` VmRSS, `/proc/PID/fd`); sockets and "
          "sessions from `/health/detailed`; deliveries, loss and latency are those of the fan-out updates due in "
          "the window; churn and REST count what ended in the window (ok / failed).\n")
    print("| time (s) | RSS (MiB) | open files | sockets | sessions live | server CPU % | deliveries / s | lost | "
          "p50 (ms) | p99 (ms) | churn ok / failed | REST ok / failed |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in r.get("samples", []):
        rss = None if s.get("rss_bytes") is None else s["rss_bytes"] / MIB
        first = s["t_s"] == 0
        print(f"| {num(s['t_s'])} | {num(rss, 1)} | {num(s.get('open_files'))} | {num(s.get('sockets'))} | "
              f"{num(s.get('sessions_live'))} | {num(s.get('server_cpu_percent'), 1)} | "
              f"{'-' if first else num(s['deliveries_per_s'])} | {'-' if first else num(s['lost'])} | "
              f"{ms(s.get('p50_us'))} | {ms(s.get('p99_us'))} | "
              f"{'-' if first else str(s['churn_ok']) + ' / ' + str(s['churn_failed'])} | "
              f"{'-' if first else str(s['rest_ok']) + ' / ' + str(s['rest_failed'])} |")
    print()

    f = r.get("flatness", {})
    print(f"## Flatness after the first {num(f.get('warmup_s'))} s\n")
    print(f"**{f.get('verdict', '-')}**\n")
    print("| series | first | last | min | max | least-squares slope per 10 min | flat |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, key, flat, digits in [("RSS (MiB)", "rss_mib", "rss_flat", 1), ("open files", "open_files",
                                                                              "open_files_flat", 0)]:
        t = f.get(key) or {}
        slope = "-" if t.get("slope_per_10min") is None else f"{t['slope_per_10min']:+.2f}"
        verdict = {True: "yes", False: "no"}.get(f.get(flat), "-")
        print(f"| {label} | {num(t.get('first'), digits)} | {num(t.get('last'), digits)} | {num(t.get('min'), digits)} | "
              f"{num(t.get('max'), digits)} | {slope} | {verdict} |")
    print("\nFlat means a slope within 2 % of the mean per 10 minutes (at least 1 MiB, 5 files). Reported, "
          "not asserted: loadgen fails the run only on the checks below.\n")

    lg = r.get("legit", {})
    print("## Legitimate traffic, whole run\n")
    fo = lg.get("fanout", {})
    print("| | |\n|---|---|")
    print(f"| fan-out sockets | {num(get(fo, 'connections.held'))} held of {num(get(fo, 'connections.attempted'))}, "
          f"{num(get(fo, 'connections.failed'))} failed, {num(get(fo, 'connections.closed_early'))} closed early |")
    print(f"| fan-out deliveries | {num(get(fo, 'deliveries.received'))} of {num(get(fo, 'deliveries.expected'))} "
          f"expected, {num(get(fo, 'deliveries.lost'))} lost |")
    print(f"| delivery latency p50 / p99 / p99.9 / max (ms) | {ms(get(fo, 'latency_us.p50'))} / "
          f"{ms(get(fo, 'latency_us.p99'))} / {ms(get(fo, 'latency_us.p999'))} / {ms(get(fo, 'latency_us.max'))} |")
    ch = lg.get("churn", {})
    print(f"| churn cycles | {num(ch.get('ok'))} ok, {num(ch.get('failed'))} failed; p50 / p99 "
          f"{ms(get(ch, 'latency_us.p50'), 1)} / {ms(get(ch, 'latency_us.p99'), 1)} ms |")
    rs = lg.get("rest", {})
    print(f"| REST create + join + GET | {num(rs.get('ok'))} ok, {num(rs.get('failed'))} failed; p99 create / join / "
          f"GET {ms(rs.get('create_p99_us'))} / {ms(rs.get('join_p99_us'))} / {ms(rs.get('get_p99_us'))} ms |")
    print(f"| legitimate requests refused by a limit | {num(lg.get('refused_by_a_limit'))} |")
    print(f"| server CPU, whole run | {num(get(r, 'server.cpu.cpu_percent'), 1)} % of one core |")
    print()

    a = r.get("abuse", {})
    print(f"## What the abusers saw ({a.get('address')}, {num(a.get('rounds'))} rounds)\n")
    print("| abuser | sent | refused as expected | otherwise |")
    print("|---|---:|---|---|")
    cf = a.get("create_flood", {})
    print(f"| session-creation flood | {num(cf.get('requests'))} | {num(cf.get('refused_429'))} × 429, "
          f"{num(cf.get('without_retry_after'))} of them without Retry-After | {num(cf.get('created'))} created "
          f"(the bucket's refill), {num(cf.get('other_status'))} other, {num(cf.get('no_answer'))} unanswered; "
          f"rounds not refused: {num(cf.get('rounds_unrefused'))} |")
    hf = a.get("handshake_flood", {})
    print(f"| handshake flood (a bad token) | {num(hf.get('requests'))} | {num(hf.get('refused_429'))} × 429, "
          f"{num(hf.get('without_retry_after'))} without Retry-After | {num(hf.get('other_status'))} × 403 before "
          f"the bucket was empty, {num(hf.get('no_answer'))} unanswered; rounds not refused: "
          f"{num(hf.get('rounds_unrefused'))} |")
    sc = a.get("socket_cap", {})
    print(f"| sockets on one participant's token | {num(sc.get('opened'))} opened | {num(sc.get('closed_1008'))} "
          f"closed with 1008 `too many sockets` | {num(sc.get('closed_otherwise'))} closed otherwise, "
          f"{num(sc.get('refused_429'))} × 429; rounds not refused: {num(sc.get('rounds_unrefused'))}, rounds "
          f"where a newer socket went first: {num(sc.get('rounds_not_oldest_first'))} |")
    ga = a.get("garbage", {})
    print(f"| garbage frames | {num(ga.get('frames'))} | ignored or answered with errors: the socket still "
          f"answered a heartbeat after them in {num(ga.get('socket_survived'))} rounds | closed over them: "
          f"{num(ga.get('socket_closed'))} |")
    ov = a.get("oversize", {})
    print(f"| oversize frame | {num(ov.get('sent'))} | {num(ov.get('closed_1009'))} closed with 1009 | "
          f"{num(ov.get('closed_otherwise'))} closed otherwise, {num(ov.get('not_closed'))} not closed |")
    ho = a.get("half_open", {})
    print(f"| half-open connections | {num(ho.get('partial_head'))} partial heads, {num(ho.get('silent'))} silent | "
          f"{num(ho.get('closed'))} closed by the server ({num(ho.get('answered_408'))} with 408) after "
          f"{num(get(ho, 'closed_after_ms.min'))}–{num(get(ho, 'closed_after_ms.max'))} ms | "
          f"{num(ho.get('still_open'))} still open after 12 s |")
    print()

    ck = r.get("checks", {})
    print("## Checks (loadgen exits 1 if one fails)\n")
    for line in ck.get("failed", []):
        print(f"- **FAILED**: {line}")
    for line in ck.get("passed", []):
        print(f"- passed: {line}")
    print()
    errs = r.get("errors") or {}
    if errs:
        print("Failures by reason: " + ", ".join(f"`{k}` {v}" for k, v in sorted(errs.items())) + "\n")

print("## Command\n")
print("```")
seen = []
for line in open(f"{W}/commands.txt"):
    line = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:$PORT", line.rstrip())
    line = re.sub(r"\bPORT=\d+", "PORT=$PORT", line)
    line = re.sub(r"sqlite://\S+/db-\d+\.sqlite3", "sqlite://$WORK/db-$PORT.sqlite3", line)
    if line not in seen:
        seen.append(line)
print("\n".join(seen))
print("```")
