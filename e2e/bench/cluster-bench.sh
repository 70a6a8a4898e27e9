#!/usr/bin/env bash
# Benchmark (issue 8): a 3-node oxbow cluster (release build) vs a 3-node Apache Kafka 4.1
# KRaft cluster from the same jars, on this machine, in the same run, with equal failure
# detection (broker.session.timeout.ms, broker.heartbeat.interval.ms, replica.lag.time.max.ms).
# Every node is a combined broker and controller on loopback, as e2e's Cluster.
#
# Rounds alternate the implementations (kafka, oxbow, kafka, oxbow, ...: Kafka first in each
# round because its saturation rate sets the fixed rate of both), and the table reports per
# metric the median of each side with its range and the median of the per-round ratios with
# their range. Measured per round, on a fresh cluster each:
#   * acks=all, RF 3, min.insync.replicas=2 producer (kafka-producer-perf-test.sh) at
#     saturation (--throughput -1): records/s, MB/s, p50, p99;
#   * the same at a fixed rate, half of Kafka's saturation rate of that round: p50, p99;
#   * leader failover: kill -9 of the broker leading most partitions while a confluent-kafka
#     producer writes with acks=all at 1000 records/s; time until, on every partition, a
#     record sent after the kill is acknowledged;
#   * controller failover: kill -9 of the active controller (kafka-metadata-quorum.sh
#     LeaderId); time until a CreateTopics (confluent-kafka AdminClient, retried every 50 ms)
#     succeeds;
#   * catch-up: a broker killed with -9 misses BENCH_CATCHUP_MB MB (acks=1); from the moment
#     it is ready again, MB/s until it is back in every ISR;
#   * rolling restart (step "roll", not in the default steps): SIGTERM, restart and ISR rejoin
#     of each node in turn, the controller last, under a fixed-rate acks=all producer
#     (BENCH_ROLL_RATE, default 500 records/s): its p99 and slowest send;
#   * peak RSS of the largest broker (VmHWM, sampled before every kill and at the end).
#
# This is a benchmark, not a test: it prints a Markdown table and exits 0 even when runs
# fail (the cell then says what failed).
#
# Environment:
#   BENCH_ROUNDS        rounds (default 3)
#   BENCH_RECORDS       records per saturation run                 (default 200000)
#   BENCH_RECORD_SIZE   bytes per record                           (default 1024)
#   BENCH_PARTITIONS    partitions of every bench topic            (default 3)
#   BENCH_FIXED_SECONDS length of the fixed-rate run               (default 20)
#   BENCH_FIXED_RATE    fixed rate in records/s (default: half of Kafka's saturation rate)
#   BENCH_CATCHUP_MB    MB a killed broker misses                  (default 100)
#   BENCH_SESSION_MS    broker.session.timeout.ms, both            (default 9000, Kafka's)
#   BENCH_HEARTBEAT_MS  broker.heartbeat.interval.ms, both         (default 2000, Kafka's)
#   BENCH_LAG_MS        replica.lag.time.max.ms, both              (default 30000, Kafka's)
#   BENCH_BROKERS       implementations per round, in order        (default "kafka oxbow")
#   BENCH_STEPS         measurements per round, in order  (default "sat fixed failover controller
#                       catchup"; e.g. "failover controller" times only the two failovers)
#   BENCH_KAFKA_HEAP    heap of each Kafka node                    (default "-Xmx1G -Xms1G")
#   BENCH_TOOL_HEAP     heap of the perf tools                     (default "-Xmx1G")
#   BENCH_TIMEOUT       seconds allowed per tool run or wait       (default 300)
#   BENCH_OUT           also write the Markdown table here (optional)
#   BENCH_KEEP          keep the work directory (logs) when set
#   OXBOW_BROKER_BIN    oxbow binary (default: cargo build --release)
#
# Quick run:  BENCH_ROUNDS=1 BENCH_RECORDS=20000 BENCH_CATCHUP_MB=20 e2e/bench/cluster-bench.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
RECORDS="${BENCH_RECORDS:-200000}"
SIZE="${BENCH_RECORD_SIZE:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-3}"
FIXED_SECONDS="${BENCH_FIXED_SECONDS:-20}"
CATCHUP_MB="${BENCH_CATCHUP_MB:-100}"
SESSION_MS="${BENCH_SESSION_MS:-9000}"
HEARTBEAT_MS="${BENCH_HEARTBEAT_MS:-2000}"
LAG_MS="${BENCH_LAG_MS:-30000}"
BROKERS="${BENCH_BROKERS:-kafka oxbow}"
KAFKA_HEAP="${BENCH_KAFKA_HEAP:--Xmx1G -Xms1G}"
TOOL_HEAP="${BENCH_TOOL_HEAP:--Xmx1G}"
TIMEOUT="${BENCH_TIMEOUT:-300}"
N=3

say() { echo "cluster-bench: $*" >&2; }
source "$ROOT/e2e/bench/lib.sh"

export KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true}"
KAFKA_BIN="$("$ROOT/e2e/scripts/install-tools.sh" --print-bin)" || {
  say "installing tools failed"
  exit 1
}
PY="${OXBOW_CACHE:-$HOME/.cache/oxbow}/venv/bin/python"
if [[ " $BROKERS " == *" oxbow "* ]]; then
  oxbow_release_bin || exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-cluster-bench.XXXXXX")"
declare -a NODE_PID NODE_PORT NODE_CPORT NODE_STARTS
BG_PIDS=()
cleanup() {
  for pid in "${BG_PIDS[@]}" "${NODE_PID[@]}"; do
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$WORK"; else say "kept $WORK"; fi
}
trap cleanup EXIT

# Results: R[<broker>.<metric>.<round>]
declare -A R
RSS_PEAK=0

now_ms() { date +%s%3N; }

# --------------------------------------------------------------------------
# A 3-node cluster
# --------------------------------------------------------------------------
node_props() { # flavor dir i voters
  local flavor=$1 dir=$2 i=$3 voters=$4
  cat <<EOF
node.id=$i
process.roles=broker,controller
listeners=PLAINTEXT://127.0.0.1:${NODE_PORT[$i]},CONTROLLER://127.0.0.1:${NODE_CPORT[$i]}
advertised.listeners=PLAINTEXT://127.0.0.1:${NODE_PORT[$i]}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.quorum.voters=$voters
log.dirs=$dir/n$i/data
default.replication.factor=3
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
# Equal failure detection on both implementations.
broker.session.timeout.ms=$SESSION_MS
broker.heartbeat.interval.ms=$HEARTBEAT_MS
replica.lag.time.max.ms=$LAG_MS
EOF
}

start_node() { # flavor dir i  (config written already); waits until ready
  local flavor=$1 dir=$2 i=$3
  NODE_STARTS[$i]=$((${NODE_STARTS[$i]:-0} + 1))
  local log="$dir/n$i/broker.${NODE_STARTS[$i]}.log"
  case $flavor in
    oxbow)
      NO_COLOR=1 RUST_LOG="${RUST_LOG:-warn}" "$OXBOW_BIN" "$dir/n$i/server.properties" >"$log" 2>&1 &
      NODE_PID[$i]=$!
      ;;
    kafka)
      KAFKA_HEAP_OPTS="$KAFKA_HEAP" LOG_DIR="$dir/n$i" "$KAFKA_BIN/kafka-server-start.sh" \
        "$dir/n$i/server.properties" >"$log" 2>&1 &
      NODE_PID[$i]=$!
      ;;
  esac
}

wait_node() { # flavor dir i
  local flavor=$1 dir=$2 i=$3 log
  log="$dir/n$i/broker.${NODE_STARTS[$i]}.log"
  case $flavor in
    oxbow) wait_port "${NODE_PORT[$i]}" "${NODE_PID[$i]}" "$TIMEOUT" ;;
    kafka) wait_port "${NODE_PORT[$i]}" "${NODE_PID[$i]}" "$TIMEOUT" "$log" "Kafka Server started" ;;
  esac
}

start_cluster() { # flavor dir -> NODE_*, BS; 1 on failure
  local flavor=$1 dir=$2 i voters=""
  for ((i = 0; i < N; i++)); do
    NODE_PORT[$i]=$(free_port)
    NODE_CPORT[$i]=$(free_port)
    NODE_STARTS[$i]=0
    voters+="${voters:+,}$i@127.0.0.1:${NODE_CPORT[$i]}"
  done
  for ((i = 0; i < N; i++)); do
    mkdir -p "$dir/n$i/data"
    node_props "$flavor" "$dir" "$i" "$voters" >"$dir/n$i/server.properties"
    if [[ $flavor == kafka ]]; then
      "$KAFKA_BIN/kafka-storage.sh" format -t b3hib3ctYmVuY2gtY2x1c3Q -c "$dir/n$i/server.properties" \
        >"$dir/n$i/format.log" 2>&1 || return 1
    fi
  done
  # A KRaft node is not ready before a quorum runs: start all, then wait for each.
  for ((i = 0; i < N; i++)); do start_node "$flavor" "$dir" "$i"; done
  for ((i = 0; i < N; i++)); do wait_node "$flavor" "$dir" "$i" || return 1; done
  BS=$(bootstrap)
  wait_for "3 brokers in Metadata" brokers_are 3
}

bootstrap() { # the running nodes' client addresses
  local i out=""
  for ((i = 0; i < N; i++)); do
    [[ -n ${NODE_PID[$i]:-} ]] && out+="${out:+,}127.0.0.1:${NODE_PORT[$i]}"
  done
  echo "$out"
}

note_rss() { # largest VmHWM of the running nodes so far, in KiB
  local i v
  for ((i = 0; i < N; i++)); do
    [[ -n ${NODE_PID[$i]:-} ]] || continue
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/${NODE_PID[$i]}/status" 2>/dev/null || echo 0)
    ((${v:-0} > RSS_PEAK)) && RSS_PEAK=$v
  done
  return 0
}

kill9_node() { # i
  note_rss
  kill -KILL "${NODE_PID[$1]}" 2>/dev/null
  wait "${NODE_PID[$1]}" 2>/dev/null
  NODE_PID[$1]=""
  BS=$(bootstrap)
}

stop_cluster() {
  local i
  note_rss
  for ((i = 0; i < N; i++)); do
    [[ -n ${NODE_PID[$i]:-} ]] && kill -TERM "${NODE_PID[$i]}" 2>/dev/null
  done
  for ((i = 0; i < N; i++)); do
    [[ -n ${NODE_PID[$i]:-} ]] || continue
    for _ in $(seq 1 600); do kill -0 "${NODE_PID[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${NODE_PID[$i]}" 2>/dev/null
    wait "${NODE_PID[$i]}" 2>/dev/null
    NODE_PID[$i]=""
  done
}

# --------------------------------------------------------------------------
# Cluster state through kcat's Metadata (no JVM per poll)
# --------------------------------------------------------------------------
metadata() { # [topic]
  kcat -b "$BS" -L -J ${1:+-t "$1"} -m 5 2>/dev/null
}

brokers_are() { # n
  [[ $(metadata | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["brokers"]))' 2>/dev/null) == "$1" ]]
}

isr_is() { # topic size: every partition has a leader and an ISR of `size`
  metadata "$1" | python3 -c '
import json, sys
m = json.load(sys.stdin)
ps = [p for t in m["topics"] if t["topic"] == sys.argv[1] and not t.get("error") for p in t["partitions"]]
ok = len(ps) == int(sys.argv[3]) and all(p["leader"] >= 0 and len(p["isrs"]) == int(sys.argv[2]) for p in ps)
sys.exit(0 if ok else 1)' "$1" "$2" "$PARTITIONS" 2>/dev/null
}

leader_of_most() { # topic -> id
  metadata "$1" | python3 -c '
import collections, json, sys
m = json.load(sys.stdin)
c = collections.Counter(p["leader"] for t in m["topics"] if t["topic"] == sys.argv[1] for p in t["partitions"] if p["leader"] >= 0)
print(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0])' "$1" 2>/dev/null
}

wait_for() { # what command... : polls every 0.2 s up to $TIMEOUT s
  local what=$1
  shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      say "timed out after ${TIMEOUT}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

create_topic() { # topic
  timeout "$TIMEOUT" "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BS" --create --topic "$1" \
    --partitions "$PARTITIONS" --replication-factor 3 --config min.insync.replicas=2 \
    >"$WORK/create-$1.log" 2>&1 && wait_for "$1 fully in sync" isr_is "$1" 3
}

# --------------------------------------------------------------------------
# Measurements (each sets R[...] or a failure text)
# --------------------------------------------------------------------------
perf() { # flavor round topic throughput key
  local b=$1 r=$2 topic=$3 rate=$4 key=$5 n=$RECORDS line out
  [[ $rate != -1 ]] && n=$((rate * FIXED_SECONDS))
  out="$WORK/$b-$r-$key.txt"
  create_topic "$topic" || {
    R[$b.$key.rps.$r]="failed (topic)"
    return 1
  }
  say "$b round $r: producer-perf acks=all $n records, --throughput $rate"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-producer-perf-test.sh" \
    --topic "$topic" --num-records "$n" --record-size "$SIZE" --throughput "$rate" \
    --producer-props "bootstrap.servers=$BS" acks=all >"$out" 2>&1
  local rc=$?
  line=$(grep -E '^[0-9]+ records sent, .* 50th' "$out" | tail -1)
  if [[ $rc != 0 || -z $line ]]; then
    R[$b.$key.rps.$r]="failed (rc=$rc)"
    tail -3 "$out" >&2
    return 1
  fi
  R[$b.$key.rps.$r]=$(sed -E 's/.* sent, ([0-9.]+) records\/sec.*/\1/' <<<"$line")
  R[$b.$key.mbs.$r]=$(sed -E 's/.*records\/sec \(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")
  R[$b.$key.p50.$r]=$(sed -E 's/.* ([0-9.]+) ms 50th.*/\1/' <<<"$line")
  R[$b.$key.p99.$r]=$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$line")
  say "$b round $r $key: $line"
}

leader_failover() { # flavor dir round
  local b=$1 dir=$2 r=$3 topic="bench-failover-$3" victim ms
  create_topic "$topic" || {
    R[$b.failover.$r]="failed (topic)"
    return 1
  }
  victim=$(leader_of_most "$topic")
  note_rss
  # One client process writes (confluent-kafka, acks=all, 1000 records/s over every
  # partition), kills the leader itself and times, per partition, the first record *sent
  # after* the kill that is acknowledged: callbacks of records acknowledged just before the
  # kill, run late on a loaded machine, cannot count.
  ms=$(timeout "$TIMEOUT" "$PY" - "$BS" "$topic" "$PARTITIONS" "${NODE_PID[$victim]}" <<'EOF' 2>"$WORK/$b-$r-failover.err"
import os, signal, sys, time
from confluent_kafka import Producer
bs, topic, parts, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# No idempotence: only the time to the first acknowledgement matters, and a stalled
# idempotent queue (librdkafka waits for its in-flight batches to the dead broker) would be
# measured instead of the broker's failover. Metadata is refreshed every second so the
# client learns the new leaders as soon as the brokers report them.
p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 5,
              "enable.idempotence": False, "message.timeout.ms": 120000,
              "topic.metadata.refresh.interval.ms": 1000})
t0 = None
first = {}
acked = [0]
def delivered(err, msg, sent):
    if err is not None:
        return
    acked[0] += 1
    if t0 is not None and sent >= t0:
        first.setdefault(msg.partition(), time.monotonic())
n = 0
start = time.monotonic()
while True:
    now = time.monotonic()
    if t0 is None and acked[0] >= 2000:
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
    if t0 is not None and len(first) == parts:
        break
    if now - start > 280:
        sys.exit("no acknowledged write on every partition")
    while n < (now - start) * 1000:
        sent = time.monotonic()
        try:
            p.produce(topic, str(n).encode(), partition=n % parts,
                      on_delivery=lambda err, msg, sent=sent: delivered(err, msg, sent))
        except BufferError:
            break  # the queue is full while no leader answers: poll, then go on
        n += 1
    p.poll(0.001)
# For a breakdown against the brokers' logs (BENCH_KEEP): the wall-clock kill time and each
# partition's first acknowledgement after it.
wall0 = time.time() - (time.monotonic() - t0)
print(f"killed pid {pid} at {wall0:.3f} (unix s); first ack after the kill (ms) per partition: "
      + str({k: int((v - t0) * 1000) for k, v in sorted(first.items())}), file=sys.stderr)
print(int((max(first.values()) - t0) * 1000))
EOF
  )
  wait "${NODE_PID[$victim]}" 2>/dev/null
  NODE_PID[$victim]=""
  BS=$(bootstrap)
  if [[ $ms =~ ^[0-9]+$ ]]; then
    R[$b.failover.$r]=$(awk -v ms="$ms" 'BEGIN {printf "%.2f", ms / 1000}')
    say "$b round $r: leader $victim killed; writes on every partition after ${R[$b.failover.$r]} s"
  else
    R[$b.failover.$r]="failed (no writes on every partition)"
    tail -3 "$WORK/$b-$r-failover.err" >&2
  fi
  start_node "$b" "$dir" "$victim"
  wait_node "$b" "$dir" "$victim" && BS=$(bootstrap) && wait_for "$topic back in sync" isr_is "$topic" 3
}

# A rolling restart as an operator does it: each node in turn gets SIGTERM (controlled shutdown),
# is started again and rejoins every ISR before the next, the active controller last, while
# kafka-producer-perf-test.sh writes at a fixed rate (acks=all, the Java producer's retries).
# Reports the p99 and the slowest send of that run, and prints its 5-second windows whose
# slowest send took over a second.
rolling_restart() { # flavor dir round
  local b=$1 dir=$2 r=$3 topic="bench-roll-$3" rate=${BENCH_ROLL_RATE:-500} secs i ctl order=() line
  create_topic "$topic" || {
    R[$b.roll.p99.$r]="failed (topic)"
    return 1
  }
  ctl=$(timeout "$TIMEOUT" "$KAFKA_BIN/kafka-metadata-quorum.sh" --bootstrap-server "$BS" describe --status 2>/dev/null |
    awk -F'[: \t]+' '/^LeaderId/ {print $2}')
  for ((i = 0; i < N; i++)); do [[ $i != "$ctl" ]] && order+=("$i"); done
  [[ -n $ctl ]] && order+=("$ctl")
  secs=$((20 + 15 * N))
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-producer-perf-test.sh" \
    --topic "$topic" --num-records $((rate * secs)) --record-size 100 --throughput "$rate" \
    --producer-props "bootstrap.servers=$BS" acks=all linger.ms=1 2>&1 |
    while IFS= read -r line; do echo "$(date +%T.%3N) $line"; done >"$WORK/$b-$r-roll.txt" &
  local perf_pid=$!
  BG_PIDS+=("$perf_pid")
  sleep 10
  for i in "${order[@]}"; do
    say "$b round $r: rolling node $i (SIGTERM) at $(date +%T.%3N)"
    note_rss
    kill -TERM "${NODE_PID[$i]}" 2>/dev/null
    for _ in $(seq 1 600); do kill -0 "${NODE_PID[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${NODE_PID[$i]}" 2>/dev/null
    wait "${NODE_PID[$i]}" 2>/dev/null
    start_node "$b" "$dir" "$i"
    wait_node "$b" "$dir" "$i" && BS=$(bootstrap) && wait_for "$topic in sync after node $i" isr_is "$topic" 3 || {
      R[$b.roll.p99.$r]="failed (node $i did not rejoin)"
      return 1
    }
    sleep 2
  done
  wait "$perf_pid"
  line=$(grep -E ' records sent, .* 99th' "$WORK/$b-$r-roll.txt" | tail -1)
  if [[ -z $line ]]; then
    R[$b.roll.p99.$r]="failed (no summary)"
    tail -3 "$WORK/$b-$r-roll.txt" >&2
    return 1
  fi
  R[$b.roll.p99.$r]=$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$line")
  R[$b.roll.max.$r]=$(sed -E 's/.* ([0-9.]+) ms max latency.*/\1/' <<<"$line")
  awk '/records sent/ && !/99th/ && $(NF-3) + 0 > 1000' "$WORK/$b-$r-roll.txt" | sed "s/^/cluster-bench: $b slow window /" >&2
  say "$b round $r roll (order ${order[*]}): $line"
}

controller_failover() { # flavor dir round
  local b=$1 dir=$2 r=$3 leader ms
  leader=$(timeout "$TIMEOUT" "$KAFKA_BIN/kafka-metadata-quorum.sh" --bootstrap-server "$BS" describe --status 2>/dev/null |
    awk -F': *' '/^LeaderId:/ {print $2}')
  if [[ -z $leader || $leader -lt 0 ]]; then
    R[$b.controller.$r]="failed (no LeaderId)"
    return 1
  fi
  note_rss
  local survivors="" i
  for ((i = 0; i < N; i++)); do
    [[ $i != "$leader" ]] && survivors+="${survivors:+,}127.0.0.1:${NODE_PORT[$i]}"
  done
  # The admin client kills the controller itself, after a warm-up CreateTopics, so its
  # connections are up and only the failover is timed.
  ms=$(timeout "$TIMEOUT" "$PY" - "$survivors" "${NODE_PID[$leader]}" "$r" <<'EOF' 2>"$WORK/$b-$r-controller.err"
import os, signal, sys, time
from confluent_kafka.admin import AdminClient, NewTopic
bs, pid, rnd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def create(name):
    # A fresh client per attempt: a cached controller id (KRaft brokers name any broker as
    # the controller in Metadata) could be the dead node's for minutes.
    admin = AdminClient({"bootstrap.servers": bs})
    f = admin.create_topics([NewTopic(name, 1, 1)], request_timeout=2.0, operation_timeout=0)
    f[name].result(timeout=3.0)
create(f"bench-ctl-warm-{rnd}")
os.kill(pid, signal.SIGKILL)
t0 = time.monotonic()
print(f"killed pid {pid} at {time.time():.3f} (unix s)", file=sys.stderr)
n = 0
while True:
    n += 1
    try:
        create(f"bench-ctl-{rnd}-{n}")
        break
    except Exception as e:
        print(f"{time.monotonic() - t0:.3f} s: attempt {n}: {e}", file=sys.stderr)
        time.sleep(0.05)
    if time.monotonic() - t0 > 240:
        sys.exit("CreateTopics never succeeded")
print(int((time.monotonic() - t0) * 1000))
EOF
  )
  wait "${NODE_PID[$leader]}" 2>/dev/null
  NODE_PID[$leader]=""
  BS=$(bootstrap)
  if [[ $ms =~ ^[0-9]+$ ]]; then
    R[$b.controller.$r]=$(awk -v ms="$ms" 'BEGIN {printf "%.2f", ms / 1000}')
    say "$b round $r: controller $leader killed; CreateTopics succeeded after ${R[$b.controller.$r]} s"
  else
    R[$b.controller.$r]="failed (CreateTopics)"
  fi
  start_node "$b" "$dir" "$leader"
  wait_node "$b" "$dir" "$leader" && BS=$(bootstrap) && wait_for "3 brokers" brokers_are 3
}

catch_up() { # flavor dir round
  local b=$1 dir=$2 r=$3 topic="bench-catchup-$3" victim t0 t1
  create_topic "$topic" || {
    R[$b.catchup.$r]="failed (topic)"
    return 1
  }
  victim=$(leader_of_most "$topic")
  kill9_node "$victim"
  if ! wait_for "broker $victim out of every ISR" isr_is "$topic" 2; then
    R[$b.catchup.$r]="failed (not fenced)"
    return 1
  fi
  local n=$((CATCHUP_MB * 1048576 / SIZE))
  say "$b round $r: $n records (acks=1) while broker $victim is down"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-producer-perf-test.sh" \
    --topic "$topic" --num-records "$n" --record-size "$SIZE" --throughput -1 \
    --producer-props "bootstrap.servers=$BS" acks=1 >"$WORK/$b-$r-catchup-produce.txt" 2>&1 || {
    R[$b.catchup.$r]="failed (produce)"
    return 1
  }
  start_node "$b" "$dir" "$victim"
  wait_node "$b" "$dir" "$victim" || {
    R[$b.catchup.$r]="failed (restart)"
    return 1
  }
  t0=$(now_ms)
  BS=$(bootstrap)
  if wait_for "broker $victim back in every ISR" isr_is "$topic" 3; then
    t1=$(now_ms)
    R[$b.catchup.$r]=$(awk -v mb="$CATCHUP_MB" -v ms=$((t1 - t0)) 'BEGIN {printf "%.1f", mb / (ms > 0 ? ms : 1) * 1000}')
    say "$b round $r: caught up $CATCHUP_MB MB in $((t1 - t0)) ms (${R[$b.catchup.$r]} MB/s)"
  else
    R[$b.catchup.$r]="failed (not back in sync)"
  fi
}

FIXED_RATE="${BENCH_FIXED_RATE:-}"
STEPS="${BENCH_STEPS:-sat fixed failover controller catchup}"
step() { [[ " $STEPS " == *" $1 "* ]]; }
for ((r = 1; r <= ROUNDS; r++)); do
  for b in $BROKERS; do
    dir="$WORK/$b-$r"
    RSS_PEAK=0
    say "round $r: starting a 3-node $b cluster"
    if ! start_cluster "$b" "$dir"; then
      say "$b cluster did not start; log tails:"
      tail -n 5 "$dir"/n*/broker.*.log >&2
      R[$b.start.$r]="did not start"
      stop_cluster
      continue
    fi
    if step sat; then
      perf "$b" "$r" "bench-sat-$r" -1 sat
      if [[ -z ${BENCH_FIXED_RATE:-} && $b == kafka ]] && num "${R[kafka.sat.rps.$r]:-}"; then
        FIXED_RATE=$(awk -v x="${R[kafka.sat.rps.$r]}" 'BEGIN {printf "%d", x / 2}')
      fi
    fi
    if step fixed; then
      if [[ -n $FIXED_RATE ]]; then
        perf "$b" "$r" "bench-fixed-$r" "$FIXED_RATE" fixed
      else
        R[$b.fixed.rps.$r]="no Kafka rate"
      fi
    fi
    step failover && leader_failover "$b" "$dir" "$r"
    step controller && controller_failover "$b" "$dir" "$r"
    step catchup && catch_up "$b" "$dir" "$r"
    step roll && rolling_restart "$b" "$dir" "$r"
    stop_cluster
    R[$b.rss.$r]=$(awk -v k="$RSS_PEAK" 'BEGIN {printf "%.1f", k / 1024}')
    say "$b round $r: peak RSS of the largest broker ${R[$b.rss.$r]} MiB"
  done
done

# --------------------------------------------------------------------------
# Markdown table: medians with ranges over the rounds
# --------------------------------------------------------------------------
table() {
  echo "### 3-node oxbow vs 3-node Apache Kafka 4.1 (KRaft, combined nodes)"
  echo
  echo "$ROUNDS round(s) alternating ${BROKERS// /, }; median (range) per side and of the per-round" \
    "oxbow/kafka ratios. acks=all, RF 3, min.insync.replicas=2, $PARTITIONS partitions, $SIZE B" \
    "records ($RECORDS at saturation; fixed rate ${FIXED_RATE:-–}/s for ${FIXED_SECONDS}s)." \
    "broker.session.timeout.ms=$SESSION_MS, broker.heartbeat.interval.ms=$HEARTBEAT_MS," \
    "replica.lag.time.max.ms=$LAG_MS on both. $(nproc) cores," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(date -u +%Y-%m-%d)." \
    "Kafka heap \`$KAFKA_HEAP\` per node. Lower is better for latency, failover times and RSS."
  echo
  echo "| metric | oxbow | kafka | oxbow/kafka |"
  echo "| --- | ---: | ---: | ---: |"
  round_row "saturation records/s" "sat.rps"
  round_row "saturation MB/s" "sat.mbs"
  round_row "saturation p50 (ms)" "sat.p50"
  round_row "saturation p99 (ms)" "sat.p99"
  round_row "fixed rate p50 (ms)" "fixed.p50"
  round_row "fixed rate p99 (ms)" "fixed.p99"
  round_row "kill -9 of a leader → writes on every partition (s)" "failover"
  round_row "kill -9 of the controller → CreateTopics works (s)" "controller"
  round_row "restarted broker catch-up (MB/s)" "catchup"
  round_row "rolling restart: p99 of a fixed-rate producer (ms)" "roll.p99"
  round_row "rolling restart: slowest send (ms)" "roll.max"
  round_row "peak RSS of the largest broker (MiB)" "rss"
  local b
  for b in $BROKERS; do
    for ((r = 1; r <= ROUNDS; r++)); do
      [[ -n ${R[$b.start.$r]:-} ]] && echo && echo "_${b} round $r: ${R[$b.start.$r]}_"
    done
  done
  return 0
}

echo
table | tee ${BENCH_OUT:+"$BENCH_OUT"}
exit 0
