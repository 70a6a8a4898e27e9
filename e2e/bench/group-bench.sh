#!/usr/bin/env bash
# Benchmark: consumer groups on oxbow-broker (release build) vs a real
# single-node Apache Kafka 4.1 (KRaft combined mode), same machine, one after
# the other, with the same clients and client settings:
#
# * Rebalance latency, measured with two Java consumers
#   (kafka-verifiable-consumer.sh, whose JSON events carry millisecond
#   timestamps) on a topic of BENCH_RB_PARTITIONS partitions, BENCH_ROUNDS times:
#     join  = from the second member's `startup_complete` (it subscribes right
#             after) until both members hold their final assignment;
#     leave = from SIGTERM to the second member (close() sends LeaveGroup) until
#             the first member's `partitions_assigned` gives it every partition.
#   Median and max of the rounds are reported.
# * kafka-consumer-perf-test.sh --group throughput (and its rebalance.time.ms).
#
# This is a benchmark, not a test: it prints a Markdown table and exits 0 even
# when a run fails (the cell then says so).
#
# Environment:
#   BENCH_ROUNDS         join/leave rounds                       (default 5)
#   BENCH_RB_PARTITIONS  partitions of the rebalance topic       (default 12)
#   BENCH_HEARTBEAT_MS   heartbeat.interval.ms of the members    (default 200)
#   BENCH_RECORDS        records for the consumer perf test      (default 500000)
#   BENCH_RECORD_SIZE    bytes per record                        (default 1024)
#   BENCH_PARTITIONS     partitions of the perf topic            (default 6)
#   BENCH_BROKERS        which brokers, in order                 (default "oxbow kafka")
#   BENCH_KAFKA_HEAP     heap of the Kafka broker                (default "-Xmx1G -Xms1G")
#   BENCH_TOOL_HEAP      heap of the Java tools                  (default "-Xmx1G")
#   BENCH_TIMEOUT        seconds allowed per tool run            (default 900)
#   BENCH_OUT            also write the Markdown table here      (optional)
#   BENCH_KEEP           keep the work directory                 (optional)
#   OXBOW_BROKER_BIN     oxbow binary (default: cargo build --release, target/release/oxbow-broker)
#   OXBOW_CACHE          tool cache (see e2e/scripts/install-tools.sh)
#
# Quick run:  BENCH_RECORDS=50000 BENCH_ROUNDS=3 e2e/bench/group-bench.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-5}"
RB_PARTITIONS="${BENCH_RB_PARTITIONS:-12}"
HEARTBEAT="${BENCH_HEARTBEAT_MS:-200}"
RECORDS="${BENCH_RECORDS:-500000}"
SIZE="${BENCH_RECORD_SIZE:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-6}"
BROKERS="${BENCH_BROKERS:-oxbow kafka}"
KAFKA_HEAP="${BENCH_KAFKA_HEAP:--Xmx1G -Xms1G}"
TOOL_HEAP="${BENCH_TOOL_HEAP:--Xmx1G}"
TIMEOUT="${BENCH_TIMEOUT:-900}"

say() { echo "group-bench: $*" >&2; }
source "$ROOT/e2e/bench/lib.sh"

KAFKA_BIN="$("$ROOT/e2e/scripts/install-tools.sh" --print-bin)" || {
  say "installing tools failed"
  exit 1
}

if [[ " $BROKERS " == *" oxbow "* ]]; then
  oxbow_release_bin || exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-group-bench.XXXXXX")"
BROKER_PID=""
cleanup() {
  if [[ -n $BROKER_PID ]]; then
    kill -TERM "$BROKER_PID" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null
  fi
  if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$WORK"; else say "kept $WORK"; fi
}
trap cleanup EXIT


# The rebalance driver: runs two kafka-verifiable-consumer.sh members and
# times join and leave from their JSON events. Prints one JSON line.
cat >"$WORK/rebalance.py" <<'PY'
import json, os, signal, statistics, subprocess, sys, threading, time

kafka_bin, bs, topic, partitions, rounds, cfg, timeout = sys.argv[1:8]
partitions, rounds, timeout = int(partitions), int(rounds), float(timeout)

class Member:
    def __init__(self, name):
        self.events, self.lock = [], threading.Lock()
        self.proc = subprocess.Popen(
            [os.path.join(kafka_bin, "kafka-verifiable-consumer.sh"), "--bootstrap-server", bs,
             "--topic", topic, "--group-id", "rebalance-bench", "--consumer.config", cfg],
            stdout=subprocess.PIPE, stderr=open(os.devnull, "w"), text=True, start_new_session=True)
        threading.Thread(target=self.read, daemon=True).start()
    def read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)
    def snapshot(self):
        with self.lock:
            return list(self.events)
    def owned(self, evs=None):
        owned = set()
        for e in evs if evs is not None else self.snapshot():
            ps = {p["partition"] for p in e.get("partitions", [])}
            if e["name"] == "partitions_assigned":
                owned |= ps
            elif e["name"] == "partitions_revoked":
                owned -= ps
        return owned
    def first(self, name):
        for e in self.snapshot():
            if e["name"] == name:
                return e
        return None
    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

def wait(what, cond):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit(json.dumps({"error": "timed out waiting for " + what}))

half = partitions // 2
a = Member("A")
wait("the first member to own everything", lambda: len(a.owned()) == partitions)
join, leave = [], []
try:
    for r in range(rounds):
        b = Member("B")
        wait("B to start", lambda: b.first("startup_complete"))
        t0 = b.first("startup_complete")["timestamp"]
        wait("join: both members assigned", lambda: len(a.owned()) == partitions - half and len(b.owned()) == half)
        time.sleep(0.5)  # let late events land before reading timestamps
        ta = [e["timestamp"] for e in a.snapshot() if e["name"] == "partitions_assigned"][-1]
        tb = [e["timestamp"] for e in b.snapshot() if e["name"] == "partitions_assigned"][-1]
        join.append(max(ta, tb) - t0)
        n_a = len(a.snapshot())
        t1 = int(time.time() * 1000)
        b.proc.send_signal(signal.SIGTERM)
        wait("leave: A owns everything", lambda: len(a.owned()) == partitions)
        ta = [e["timestamp"] for e in a.snapshot()[n_a:] if e["name"] == "partitions_assigned"][-1]
        leave.append(ta - t1)
        b.stop()
        print("round %d: join %d ms, leave %d ms" % (r + 1, join[-1], leave[-1]), file=sys.stderr)
finally:
    a.stop()
print(json.dumps({"join_median": statistics.median(join), "join_max": max(join),
                  "leave_median": statistics.median(leave), "leave_max": max(leave)}))
PY

cat >"$WORK/member.properties" <<EOF
heartbeat.interval.ms=$HEARTBEAT
session.timeout.ms=10000
partition.assignment.strategy=org.apache.kafka.clients.consumer.RangeAssignor
EOF

declare -A R

rebalance_run() { # broker bootstrap
  local b=$1 bs=$2 out="$WORK/$1-rebalance.txt" line
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic rb \
    --partitions "$RB_PARTITIONS" --replication-factor 1 >/dev/null 2>"$WORK/$b-rb-create.err" ||
    say "$b: creating topic rb failed: $(tail -1 "$WORK/$b-rb-create.err")"
  say "$b: rebalance latency, $ROUNDS join/leave rounds of a second member ($RB_PARTITIONS partitions)"
  KAFKA_HEAP_OPTS="-Xmx256m" timeout "$TIMEOUT" python3 "$WORK/rebalance.py" "$KAFKA_BIN" "$bs" rb \
    "$RB_PARTITIONS" "$ROUNDS" "$WORK/member.properties" 120 >"$out" 2>"$WORK/$b-rebalance.err"
  local rc=$?
  line=$(tail -1 "$out")
  cat "$WORK/$b-rebalance.err" >&2
  if [[ $rc != 0 || $line != *join_median* ]]; then
    R[$b.join]="failed (rc=$rc${line:+: $line})"
    R[$b.leave]="failed (rc=$rc)"
    return
  fi
  for k in join_median join_max leave_median leave_max; do
    R[$b.$k]=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])[sys.argv[2]]))' "$line" "$k")
  done
  R[$b.join]=${R[$b.join_median]}
  R[$b.leave]=${R[$b.leave_median]}
}

consumer_perf_run() { # broker bootstrap
  local b=$1 bs=$2 out="$WORK/$1-consume.txt" line
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic perf \
    --partitions "$PARTITIONS" --replication-factor 1 >/dev/null 2>"$WORK/$b-perf-create.err" ||
    say "$b: creating topic perf failed: $(tail -1 "$WORK/$b-perf-create.err")"
  say "$b: loading $RECORDS records of $SIZE B"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-producer-perf-test.sh" \
    --topic perf --num-records "$RECORDS" --record-size "$SIZE" --throughput -1 \
    --producer-props "bootstrap.servers=$bs" acks=1 >"$WORK/$b-produce.txt" 2>&1 || {
    R[$b.c.rps]="load failed"
    tail -3 "$WORK/$b-produce.txt" >&2
    return
  }
  say "$b: kafka-consumer-perf-test.sh --group --messages $RECORDS"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-consumer-perf-test.sh" \
    --bootstrap-server "$bs" --topic perf --messages "$RECORDS" --timeout 60000 \
    --group "perf-group" >"$out" 2>&1
  local rc=$?
  # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
  # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
  line=$(grep -A1 '^start.time' "$out" | tail -1)
  if [[ $rc != 0 || -z $line || $line == start.time* ]]; then
    R[$b.c.rps]="failed (rc=$rc)"
    tail -5 "$out" >&2
    return
  fi
  R[$b.c.mbs]=$(awk -F', *' '{printf "%.2f", $4}' <<<"$line")
  R[$b.c.rps]=$(awk -F', *' '{printf "%.0f", $6}' <<<"$line")
  R[$b.c.rebalance]=$(awk -F', *' '{printf "%.0f", $7}' <<<"$line")
  R[$b.c.fetchrps]=$(awk -F', *' '{printf "%.0f", $10}' <<<"$line")
  say "$b consume: $line"
}

for b in $BROKERS; do
  dir="$WORK/$b"
  port=$(free_port)
  say "starting $b on 127.0.0.1:$port"
  if ! start_broker "$b" "$dir" "$port"; then
    say "$b did not start; log tail:"
    tail -20 "$dir/broker.log" >&2
    R[$b.start]="did not start"
    stop_broker
    continue
  fi
  bs="127.0.0.1:$port"
  rebalance_run "$b" "$bs"
  consumer_perf_run "$b" "$bs"
  stop_broker
done

cell() { echo "${R[$1]:-–}"; }
row() { # label key
  printf '| %s | %s | %s | %s |\n' "$1" "$(cell "oxbow.$2")" "$(cell "kafka.$2")" \
    "$(ratio "${R[oxbow.$2]:-}" "${R[kafka.$2]:-}")"
}

table() {
  echo "### Consumer groups: oxbow-broker vs Apache Kafka 4.1 (single node)"
  echo
  echo "Rebalance: two kafka-verifiable-consumer.sh members (range, heartbeat.interval.ms=$HEARTBEAT," \
    "session.timeout.ms=10000), $RB_PARTITIONS partitions, $ROUNDS rounds, median (max)." \
    "Throughput: kafka-consumer-perf-test.sh --group, $RECORDS records of $SIZE B, $PARTITIONS partitions." \
    "$(nproc) cores, $(date -u +%Y-%m-%d). Lower is better for latencies."
  echo
  echo "| metric | oxbow | kafka | oxbow/kafka |"
  echo "| --- | ---: | ---: | ---: |"
  row "join: second member → both assigned, median (ms)" "join"
  row "join, max (ms)" "join_max"
  row "leave: close() → other owns all, median (ms)" "leave"
  row "leave, max (ms)" "leave_max"
  row "consumer-perf-test --group records/s" "c.rps"
  row "consumer-perf-test --group MB/s" "c.mbs"
  row "consumer-perf-test fetch records/s (after rebalance)" "c.fetchrps"
  row "consumer-perf-test rebalance.time.ms" "c.rebalance"
  for b in $BROKERS; do
    [[ -n ${R[$b.start]:-} ]] && echo && echo "_${b}: ${R[$b.start]}_"
  done
  return 0
}

echo
table | tee ${BENCH_OUT:+"$BENCH_OUT"}
exit 0
