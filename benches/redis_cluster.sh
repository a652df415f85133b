#!/usr/bin/env bash
# A local 6-node Redis Cluster (3 primaries, 3 replicas) for tests and benchmarks, and a
# measurement of what one shard's sharded pub/sub carries on this machine (SPEC §12).
#
#   benches/redis_cluster.sh start DIR [BASEPORT]   start nodes on BASEPORT..BASEPORT+5 (default
#                                                   7000; the cluster bus uses port+10000), create
#                                                   the cluster, wait for cluster_state:ok on every
#                                                   node, print the primaries' seed list
#                                                   (redis://127.0.0.1:P1,redis://127.0.0.1:P2,...)
#   benches/redis_cluster.sh seeds DIR              print that seed list again
#   benches/redis_cluster.sh stop DIR               stop the nodes started in DIR (and a standalone
#                                                   redis-server that `spublish` left behind)
#   benches/redis_cluster.sh spublish DIR [BASEPORT] [--write]
#                                                   RUNS (default 3) rounds of redis-benchmark on
#                                                   ONE primary: SPUBLISH to a channel of a slot it
#                                                   owns with 1 and FANOUT (default 8) subscribers,
#                                                   PUBLISH on a standalone redis-server and on the
#                                                   cluster, SET … PX (the store's writes), and
#                                                   pgbench -N on PostgreSQL; prints min/median/max;
#                                                   --write also puts them into benches/RESULTS.md
#                                                   (RESULTS=FILE: another file), which
#                                                   docs/capacity.py reads
#
# spublish uses the cluster already running in DIR, or starts one (and stops it afterwards).
# With 2+ CPUs the measured redis-server runs on CPU 0 (SERVER_CPU) and everything else — the
# other nodes, redis-benchmark, the subscribers — on CPU 1 (CLIENT_CPU): one Redis primary is one
# thread, so its figure is one core's worth, as the server's figures in RESULTS.md are.
# Environment for spublish: RUNS, REQUESTS (200000 per measurement), PIPELINE (16), CLIENTS (50),
# FANOUT (8), PAYLOAD_BYTES (200), SERVER_CPU, CLIENT_CPU, STANDALONE_PORT (BASEPORT+6);
# PG_URL (an admin URL; default BENCH_DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres;
# "none" skips PostgreSQL), PG_CLIENTS (8), PG_SECONDS (10): pgbench runs in a scratch database,
# ls_capacity_pgbench, created for the run and dropped after it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "redis_cluster.sh: $*" >&2; exit 1; }
say() { echo "redis_cluster.sh: $*" >&2; }

for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools)"
done

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# A pid file's process, only when it is a redis-server (never whatever reused the number).
redis_pid() {
  local f=$1 pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [[ $(cat "/proc/$pid/comm") == redis-server* ]] || return 1
  echo "$pid"
}

# Starts one redis-server in DIR/PORT/ (daemonized, no persistence) with extra arguments.
start_node() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir/$port"
  rm -f "$dir/$port/nodes.conf" "$dir/$port/redis.pid"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --dir "$dir/$port" --pidfile "$dir/$port/redis.pid" \
    --logfile "$dir/$port/redis.log" "$@"
}

wait_ping() {
  local port=$1 i
  for i in $(seq 1 100); do
    [ "$(cli "$port" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  die "redis-server on port $port does not answer (see its redis.log)"
}

# field PORT NAME COMMAND...: the value of NAME:value in the reply of COMMAND (INFO, CLUSTER INFO).
field() {
  local port=$1 name=$2
  shift 2
  cli "$port" "$@" 2>/dev/null | tr -d '\r' | sed -n "s/^$name://p"
}

ports_of() { [ -f "$1/ports" ] || die "no cluster in $1 (run: $0 start $1)"; cat "$1/ports"; }

primaries() {
  local dir=$1 p
  for p in $(ports_of "$dir"); do
    if [ "$(field "$p" role INFO replication)" = master ]; then echo "$p"; fi
  done | sort -n
}

seeds() {
  local dir=$1 list=() p
  for p in $(primaries "$dir"); do list+=("redis://127.0.0.1:$p"); done
  [ ${#list[@]} -gt 0 ] || die "no primary answers in $dir"
  (IFS=,; echo "${list[*]}")
}

cluster_running() {
  local dir=$1 p
  [ -f "$dir/ports" ] || return 1
  for p in $(cat "$dir/ports"); do
    redis_pid "$dir/$p/redis.pid" >/dev/null || return 1
    [ "$(field "$p" cluster_state CLUSTER INFO)" = ok ] || return 1
  done
}

cmd_start() {
  local dir=$1 base=${2:-7000} ports=() p i ok
  [[ $base =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ $((base + 5 + 10000)) -le 65535 ] \
    || die "BASEPORT must be 1024..55530 (the cluster bus uses port+10000)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/ports" ]; then
    for p in $(cat "$dir/ports"); do
      redis_pid "$dir/$p/redis.pid" >/dev/null && die "a node started in $dir still runs (run: $0 stop $dir)"
    done
  fi
  for i in 0 1 2 3 4 5; do ports+=($((base + i))); done
  for p in "${ports[@]}"; do
    listening "$p" && die "port $p is taken"
    listening $((p + 10000)) && die "port $((p + 10000)) (cluster bus of $p) is taken"
  done
  echo "${ports[*]}" >"$dir/ports"
  for p in "${ports[@]}"; do
    start_node "$dir" "$p" --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" \
      --cluster-node-timeout 1000
  done
  for p in "${ports[@]}"; do wait_ping "$p"; done
  local addrs=()
  for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
  if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1; then
    cat "$dir/create.log" >&2
    die "redis-cli --cluster create failed"
  fi
  # Every node: the cluster is ok, knows all 6 nodes and all 16384 slots; every replica has
  # caught up with its primary.
  for i in $(seq 1 300); do
    ok=1
    for p in "${ports[@]}"; do
      local info
      info=$(cli "$p" CLUSTER INFO 2>/dev/null | tr -d '\r')
      grep -qx 'cluster_state:ok' <<<"$info" && grep -qx 'cluster_known_nodes:6' <<<"$info" \
        && grep -qx 'cluster_slots_assigned:16384' <<<"$info" || { ok=0; break; }
      if [ "$(field "$p" role INFO replication)" = slave ]; then
        [ "$(field "$p" master_link_status INFO replication)" = up ] || { ok=0; break; }
      fi
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  [ "$ok" = 1 ] || die "the cluster in $dir did not reach cluster_state:ok within 30 s (see $dir/create.log)"
  [ "$(primaries "$dir" | wc -l)" = 3 ] || die "expected 3 primaries in $dir"
  say "cluster up in $dir: nodes ${ports[*]}, primaries $(primaries "$dir" | tr '\n' ' ')"
  seeds "$dir" | tee "$dir/seeds"
}

cmd_stop() {
  local dir=$1 f pid pids=()
  [ -d "$dir" ] || die "no directory $dir"
  for f in "$dir"/*/redis.pid; do
    pid=$(redis_pid "$f") || continue
    kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    [ -e "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null
  done
  rm -f "$dir"/*/redis.pid
  say "stopped ${#pids[@]} redis-server(s) of $dir"
}

# ---------------------------------------------------------------------------------------------
# spublish

# A subscriber that costs little: raw RESP over a socket, counting the messages that carry the
# payload's marker, until a message equal to the sentinel arrives; prints the count.
subscriber_py='
import socket, sys
port, verb, channel, marker, sentinel, ready = sys.argv[1:7]
s = socket.create_connection(("127.0.0.1", int(port)))
def bulk(x): return b"$%d\r\n%s\r\n" % (len(x), x)
s.sendall(b"*2\r\n" + bulk(verb.encode()) + bulk(channel.encode()))
marker, end = marker.encode(), b"\r\n" + sentinel.encode() + b"\r\n"
buf, n, told = b"", 0, False
assert len(end) <= len(marker)
keep = len(marker) - 1  # shorter than a marker: nothing in it was counted; a split one is whole next time
while True:
    data = s.recv(1 << 20)
    if not data:
        print("disconnected", n); sys.exit(1)
    buf += data
    if not told and b"subscribe" in buf:
        open(ready, "w").close(); told = True
    if end in buf:
        n += buf[:buf.index(end)].count(marker)
        print(n); break
    n += buf.count(marker)
    buf = buf[-keep:]
'

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# percent C0 C1 T0 T1: CPU ticks between C0 and C1 as % of one core over the wall time T0..T1.
percent() {
  awk -v c0="$1" -v c1="$2" -v t0="$3" -v t1="$4" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.1f", 100 * (c1 - c0) / hz / (t1 - t0) }'
}

# measure LABEL PORT VERB(SSUBSCRIBE|SUBSCRIBE|-) NSUBS -- redis-benchmark command...
# Appends "LABEL rps server_cpu_% replica_cpu_% delivered" to $out (replica: the measured
# primary's replica, when PORT is that primary; else 0).
measure() {
  local label=$1 port=$2 verb=$3 nsubs=$4
  shift 5
  local pid subs=() i ready t0 t1 c0 c1 r0=0 r1=0 csv rps delivered=0 rpid=
  pid=$(redis_pid "$work/pidof.$port") || die "no redis-server pid for port $port"
  [ "$port" = "$primary" ] && rpid=$replica_pid
  for i in $(seq 1 "$nsubs"); do
    ready="$work/ready.$label.$i"
    rm -f "$ready"
    "${pin_client[@]}" python3 -c "$subscriber_py" "$port" "$verb" "$channel" "$marker" __end__ "$ready" \
      >"$work/sub.$label.$i" 2>&1 &
    subs+=($!)
  done
  for i in $(seq 1 "$nsubs"); do
    for _ in $(seq 1 100); do [ -f "$work/ready.$label.$i" ] && break; sleep 0.05; done
    [ -f "$work/ready.$label.$i" ] || die "$label: subscriber $i did not subscribe"
  done
  t0=$(date +%s.%N)
  c0=$(cpu_ticks "$pid")
  [ -n "$rpid" ] && r0=$(cpu_ticks "$rpid")
  csv=$("${pin_client[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -n "$requests" -P "$pipeline" -c "$clients" \
    -r 100000 --csv "$@" 2>&1) || die "$label: redis-benchmark failed: $csv"
  c1=$(cpu_ticks "$pid")
  [ -n "$rpid" ] && r1=$(cpu_ticks "$rpid")
  t1=$(date +%s.%N)
  # The row's last 7 fields are numbers; the first (the command) may hold commas and quotes.
  rps=$(tail -n 1 <<<"$csv" | awk -F, '{v=$(NF-6); gsub(/"/, "", v); print v}')
  [[ $rps =~ ^[0-9.]+$ ]] || die "$label: cannot read requests/s from: $csv"
  grep -qi 'error\|moved' <<<"$csv" && die "$label: redis-benchmark reported errors: $csv"
  if [ "$nsubs" -gt 0 ]; then
    # A last message tells the subscribers that everything before it has arrived.
    cli "$port" "$1" "$channel" __end__ >/dev/null
    for i in "${!subs[@]}"; do
      local waited=0 got
      while [ -e "/proc/${subs[$i]}" ] && [ "$waited" -lt 600 ]; do sleep 0.05; waited=$((waited + 1)); done
      if [ -e "/proc/${subs[$i]}" ]; then
        kill "${subs[$i]}" 2>/dev/null || true
        die "$label: subscriber $((i + 1)) did not see the end within 30 s"
      fi
      wait "${subs[$i]}" || die "$label: subscriber $((i + 1)) failed: $(cat "$work/sub.$label.$((i + 1))")"
      got=$(cat "$work/sub.$label.$((i + 1))")
      [ "$got" = "$requests" ] || die "$label: subscriber $((i + 1)) got $got of $requests messages"
      delivered=$((delivered + got))
    done
  fi
  local cpu rcpu=0
  cpu=$(percent "$c0" "$c1" "$t0" "$t1")
  [ -n "$rpid" ] && rcpu=$(percent "$r0" "$r1" "$t0" "$t1")
  echo "$label $rps $cpu $rcpu $delivered" >>"$out"
  say "  $label: $rps requests/s; redis-server CPU $cpu % of one core (its replica: $rcpu %); delivered $delivered = $requests x $nsubs subscriber(s)"
}

# pgbench_run LABEL: one pgbench -N run on the scratch database; appends "LABEL tps 0 0 0".
pgbench_run() {
  local label=$1 text tps
  text=$(pgbench -n -N -c "$pg_clients" -j 2 -T "$pg_seconds" "$pg_db_url" 2>&1) || die "pgbench failed: $text"
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$text")
  [[ $tps =~ ^[0-9.]+$ ]] || die "cannot read tps from pgbench: $text"
  echo "$label $tps 0 0 0" >>"$out"
  say "  $label: $tps transactions/s (pgbench -N, $pg_clients clients, $pg_seconds s)"
}

# On exit: the standalone redis-server goes, and the cluster too when spublish started it.
spublish_cleanup() {
  local pid
  if pid=$(redis_pid "$spub_dir/standalone/redis.pid"); then kill "$pid" 2>/dev/null || true; fi
  rm -f "$spub_dir/standalone/redis.pid"
  if [ "$spub_pg" = 1 ]; then
    psql "$pg_url" -qAtc "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 || say "could not drop database $pg_db"
  fi
  if [ "$spub_started" = 1 ]; then
    cmd_stop "$spub_dir" >/dev/null 2>&1 || true
  fi
}

cmd_spublish() {
  local dir=$1 base=${2:-7000} write=$3
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  command -v redis-benchmark >/dev/null || die "redis-benchmark not found (it comes with redis-tools)"
  runs=${RUNS:-3} requests=${REQUESTS:-200000} pipeline=${PIPELINE:-16} clients=${CLIENTS:-50}
  fanout=${FANOUT:-8} payload_bytes=${PAYLOAD_BYTES:-200}
  spub_dir=$dir spub_started=0 spub_pg=0
  trap spublish_cleanup EXIT
  if ! cluster_running "$dir"; then
    say "no cluster running in $dir: starting one on $base..$((base + 5))"
    spub_started=1
    cmd_start "$dir" "$base" >/dev/null
  fi
  read -r -a ports <<<"$(cat "$dir/ports")"
  local standalone_port=${STANDALONE_PORT:-$((ports[0] + 6))}
  work="$dir/spublish"
  rm -rf "$work"
  mkdir -p "$work"
  out="$work/figures"
  : >"$out"

  # The measured primary: the lowest-numbered one; a channel like the server's (ls:bus:{session})
  # whose slot it owns.
  local primary session slot mine ranges r lo hi
  primary=$(primaries "$dir" | head -n 1)
  ranges=$(cli "$primary" CLUSTER NODES | tr -d '\r' | awk '$3 ~ /myself/ { for (i = 9; i <= NF; i++) print $i }')
  for _ in $(seq 1 200); do
    session=$(cat /proc/sys/kernel/random/uuid)
    channel="ls:bus:{$session}"
    slot=$(cli "$primary" CLUSTER KEYSLOT "$channel")
    mine=0
    for r in $ranges; do
      lo=${r%-*} hi=${r#*-}
      if [ "$slot" -ge "$lo" ] && [ "$slot" -le "$hi" ]; then mine=1; fi
    done
    [ "$mine" = 1 ] && break
  done
  [ "$mine" = 1 ] || die "found no session id whose slot primary $primary owns"
  # A payload shaped like the server's: the origin replica's id, a newline, a location event.
  marker="0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7"
  local event user
  user=$(cat /proc/sys/kernel/random/uuid)
  event='{"t":"location","view":{"user_id":"'$user'","lat":48.856613,"lng":2.352222,"accuracy":12.5,"heading":270.0,"speed":1.4,"timestamp":1767225600123}}'
  payload="$marker"$'\n'"$event"
  while [ ${#payload} -lt "$payload_bytes" ]; do payload+=" "; done
  payload=${payload:0:$payload_bytes}

  # Pin: the measured server alone on one core, the rest on the other.
  pin_client=()
  local ncpu
  ncpu=$(nproc)
  server_cpu=${SERVER_CPU:-0} client_cpu=${CLIENT_CPU:-1}
  if [ "$ncpu" -ge 2 ]; then
    pin_client=(taskset -c "$client_cpu")
    for p in "${ports[@]}"; do
      local pid
      pid=$(redis_pid "$dir/$p/redis.pid") || die "node $p is not running"
      if [ "$p" = "$primary" ]; then taskset -acp "$server_cpu" "$pid" >/dev/null; else taskset -acp "$client_cpu" "$pid" >/dev/null; fi
    done
  fi
  for p in "${ports[@]}"; do cp "$dir/$p/redis.pid" "$work/pidof.$p"; done
  local replica_port=
  for p in "${ports[@]}"; do
    if [ "$(field "$p" master_port INFO replication)" = "$primary" ]; then replica_port=$p; fi
  done
  [ -n "$replica_port" ] || die "primary $primary has no replica"
  replica_pid=$(redis_pid "$dir/$replica_port/redis.pid")

  # PostgreSQL (PG_URL, an admin connection; PG_URL=none skips it): pgbench -N on a scratch
  # database of its own, created now and dropped at exit.
  pg_url=${PG_URL:-${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
  pg_clients=${PG_CLIENTS:-8} pg_seconds=${PG_SECONDS:-10} pg_db=ls_capacity_pgbench
  if [ "$pg_url" != none ]; then
    command -v pgbench >/dev/null && command -v psql >/dev/null || die "pgbench/psql not found (PG_URL=none skips PostgreSQL)"
    pg_db_url="${pg_url%/*}/$pg_db"
    psql "$pg_url" -qAtc "DROP DATABASE IF EXISTS $pg_db" >/dev/null && psql "$pg_url" -qAtc "CREATE DATABASE $pg_db" >/dev/null \
      || die "cannot create database $pg_db through $pg_url"
    spub_pg=1
    pgbench -i -q -s 4 "$pg_db_url" >"$work/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(cat "$work/pgbench-init.log")"
  fi

  listening "$standalone_port" && die "port $standalone_port (standalone redis-server) is taken; set STANDALONE_PORT"
  rm -rf "$dir/standalone"
  mkdir -p "$dir/standalone"
  redis-server --port "$standalone_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$dir/standalone" --pidfile "$dir/standalone/redis.pid" --logfile "$dir/standalone/redis.log"
  wait_ping "$standalone_port"
  cp "$dir/standalone/redis.pid" "$work/pidof.$standalone_port"
  [ "$ncpu" -ge 2 ] && taskset -acp "$server_cpu" "$(cat "$dir/standalone/redis.pid")" >/dev/null

  say "primary $primary (slots $ranges), channel $channel (slot $slot), payload ${#payload} bytes"
  say "redis-benchmark -n $requests -P $pipeline -c $clients; $runs run(s); server on CPU ${server_cpu}, clients on CPU ${client_cpu}"
  local i
  for i in $(seq 1 "$runs"); do
    say "run $i/$runs"
    measure "spublish-1-$i" "$primary" SSUBSCRIBE 1 -- SPUBLISH "$channel" "$payload"
    measure "spublish-$fanout-$i" "$primary" SSUBSCRIBE "$fanout" -- SPUBLISH "$channel" "$payload"
    measure "publish-standalone-$i" "$standalone_port" SUBSCRIBE 1 -- PUBLISH "$channel" "$payload"
    measure "publish-cluster-$i" "$primary" SUBSCRIBE 1 -- PUBLISH "$channel" "$payload"
    measure "set-$i" "$primary" - 0 -- SET "ls:loc:{$session}:__rand_int__" "$event" PX 30000
  done
  # PostgreSQL after Redis: its background writers (checkpoints, autovacuum) outlive a run.
  if [ "$pg_url" != none ]; then
    for i in $(seq 1 "$runs"); do pgbench_run "pgbench-$i"; done
  fi

  local commit date
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  FIG="$out" RUNS_N="$runs" FANOUT_N="$fanout" REQ="$requests" PIPE="$pipeline" CLI="$clients" \
    BYTES="${#payload}" COMMIT="$commit" DATE="$date" VERSION="$(redis-server --version | sed 's/ sha=.*//')" \
    CPUS="$ncpu" SRV_CPU="$server_cpu" CLI_CPU="$client_cpu" MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    PG="$pg_url" PG_CLIENTS="$pg_clients" PG_SECONDS="$pg_seconds" PG_VERSION="$( [ "$pg_url" = none ] || psql "$pg_url" -qAtc 'SHOW server_version' 2>/dev/null)" \
    PG_FSYNC="$( [ "$pg_url" = none ] || psql "$pg_url" -qAtc 'SHOW fsync' 2>/dev/null)" \
    python3 - "$write" "${RESULTS:-$root/benches/RESULTS.md}" <<'PY'
import os, statistics, sys

env = os.environ
write, results = sys.argv[1] == "1", sys.argv[2]
runs, fanout = int(env["RUNS_N"]), env["FANOUT_N"]
rows = {}
for line in open(env["FIG"]):
    label, rps, cpu, rcpu, delivered = line.split()
    kind = label.rsplit("-", 1)[0]
    rows.setdefault(kind, []).append((float(rps), float(cpu), float(rcpu), int(delivered)))


def mmm(kind, col, fmt):
    vals = [r[col] for r in rows[kind]]
    return " | ".join(fmt.format(v) for v in (min(vals), statistics.median(vals), max(vals)))


def per_cpu(kind):
    vals = [r[0] / (r[1] / 100) for r in rows[kind] if r[1] > 0]
    return " | ".join(f"{v:,.0f}" for v in (min(vals), statistics.median(vals), max(vals)))


n = "{:,.0f}"
p = "{:.1f}"
table = [
    "| figure | min | median | max |",
    "|---|---:|---:|---:|",
    f"| SPUBLISH / s per primary, 1 subscriber | {mmm('spublish-1', 0, n)} |",
    f"| SPUBLISH / s per primary, {fanout} subscribers | {mmm(f'spublish-{fanout}', 0, n)} |",
    f"| PUBLISH / s, standalone redis-server, 1 subscriber | {mmm('publish-standalone', 0, n)} |",
    f"| PUBLISH / s on the cluster's primary (classic pub/sub: every node gets it), 1 subscriber | {mmm('publish-cluster', 0, n)} |",
    f"| SET … PX / s per primary (a store write, hash-tagged key) | {mmm('set', 0, n)} |",
    f"| SPUBLISH, 1 subscriber, per second of the primary's CPU (rate ÷ its CPU share) | {per_cpu('spublish-1')} |",
    f"| SPUBLISH, {fanout} subscribers, per second of the primary's CPU | {per_cpu(f'spublish-{fanout}')} |",
    f"| SET … PX per second of the primary's CPU | {per_cpu('set')} |",
    f"| primary CPU, SPUBLISH with 1 subscriber (% of one core) | {mmm('spublish-1', 1, p)} |",
    f"| its replica's CPU meanwhile (% of one core) | {mmm('spublish-1', 2, p)} |",
    f"| primary CPU, SPUBLISH with {fanout} subscribers (% of one core) | {mmm(f'spublish-{fanout}', 1, p)} |",
    f"| primary CPU, classic PUBLISH on the cluster (% of one core) | {mmm('publish-cluster', 1, p)} |",
    f"| primary CPU, SET … PX (% of one core) | {mmm('set', 1, p)} |",
    f"| standalone CPU, PUBLISH with 1 subscriber (% of one core) | {mmm('publish-standalone', 1, p)} |",
]
if "pgbench" in rows:
    table.append(f"| PostgreSQL: pgbench -N transactions / s ({env['PG_CLIENTS']} clients, {env['PG_SECONDS']} s) | {mmm('pgbench', 0, n)} |")
lines = [
    "### Redis Cluster: sharded pub/sub throughput per shard",
    "",
    f"Measured by `benches/redis_cluster.sh spublish DIR --write` at {env['DATE']} at commit {env['COMMIT']} "
    f"({env['VERSION']}; {runs} runs). A 6-node cluster on this machine (3 primaries, 3 replicas, "
    "`--cluster-node-timeout 1000 --save '' --appendonly no`); one primary measured, on CPU "
    f"{env['SRV_CPU']} alone (a Redis primary is one thread), everything else — the other nodes, "
    f"`redis-benchmark`, the subscribers — on CPU {env['CLI_CPU']}. Each figure is `redis-benchmark -n "
    f"{env['REQ']} -P {env['PIPE']} -c {env['CLI']}` of one command with a {env['BYTES']}-byte payload "
    "(the server's shape: origin replica id, newline, a location event) to `ls:bus:{<session id>}`, a "
    "channel whose slot the measured primary owns (checked with `CLUSTER KEYSLOT`), with subscribers "
    "attached that count what they receive: every message reached every subscriber in every run (checked; "
    "the script fails otherwise). The standalone redis-server has the same settings, without the cluster.",
    "",
    *table,
    "",
    "CPU is the measured redis-server's (and its replica's) over the benchmark's wall time. Below 100 % the "
    f"primary was not the limit: CPU {env['CLI_CPU']}, shared by redis-benchmark, the subscribers and the "
    "other nodes (and, on this shared VM, other work), was — so these rates are what one primary was seen "
    "to carry, a lower bound on what it can; rate ÷ CPU share estimates what a saturated primary would "
    "carry, if its cost per message stayed the same. A sharded message also goes from the primary to its replica over the cluster bus (Redis 7.0 "
    "sends every pub/sub message there with a full cluster-bus header, which carries the 2 KB slot "
    "bitmap), and classic PUBLISH on a cluster goes to every node: hence both cost more than PUBLISH on a "
    "standalone redis-server.",
]
if "pgbench" in rows:
    lines += [
        "",
        f"PostgreSQL: `pgbench -n -N -c {env['PG_CLIENTS']} -j 2 -T {env['PG_SECONDS']}` (each transaction an "
        "UPDATE, a SELECT and an INSERT) on a scratch database (scale 4) of the machine's PostgreSQL "
        f"{env['PG_VERSION']} (fsync {env['PG_FSYNC']}, default settings, not pinned): a yardstick for small "
        "write transactions on this disk, not a tuned server's figure.",
    ]
lines += [
    "",
    f"Machine: {env['CPUS']} CPUs, {env['MODEL']}. `docs/capacity.py` reads this table; `benches/run` leaves "
    "this section as it is (it is no scenario's). To measure again:",
    "",
    "```",
    "benches/redis_cluster.sh spublish /tmp/rc --write   # starts a cluster on ports 7000-7005 unless one runs in /tmp/rc",
    "```",
]
section = "\n".join(lines) + "\n"
print(section)
if write:
    text = open(results).read()
    head = "### Redis Cluster: sharded pub/sub throughput per shard"
    if head in text:
        start = text.index(head)
        rest = text[start + len(head):]
        nxt = [i for i in (rest.find("\n### "), rest.find("\n## ")) if i >= 0]
        end = start + len(head) + (min(nxt) + 1 if nxt else len(rest))
        text = text[:start] + section + "\n" + text[end:]
    else:
        anchor = "## What limits us"
        if anchor not in text:
            sys.exit(f"{results}: no '{anchor}' heading to put the section before")
        i = text.index(anchor)
        text = text[:i] + section + "\n" + text[i:]
    open(results, "w").write(text)
    print(f"written into {results}", file=sys.stderr)
PY
}

[ $# -ge 1 ] || { usage; exit 2; }
case "$1" in
  -h | --help) usage ;;
  start) [ $# -ge 2 ] || die "usage: start DIR [BASEPORT]"; cmd_start "$2" "${3:-7000}" ;;
  seeds) [ $# -eq 2 ] || die "usage: seeds DIR"; seeds "$(cd "$2" && pwd)" ;;
  stop) [ $# -eq 2 ] || die "usage: stop DIR"; cmd_stop "$2" ;;
  spublish)
    [ $# -ge 2 ] || die "usage: spublish DIR [BASEPORT] [--write]"
    d=$2 b=7000 w=0
    for a in "${@:3}"; do
      case "$a" in
        --write) w=1 ;;
        *) [[ $a =~ ^[0-9]+$ ]] || die "unknown argument '$a'"; b=$a ;;
      esac
    done
    cmd_spublish "$d" "$b" "$w"
    ;;
  *) usage >&2; exit 2 ;;
esac
