#!/usr/bin/env bash
# Benchmark: consumer groups on oxbow-broker (release build) vs a real single-node Apache
# Kafka 4.1 (KRaft combined mode) from the same jars, on the same machine, in the same run,
# with the same clients and settings, for both group protocols: classic (JoinGroup/SyncGroup,
# the Java consumer's eager RangeAssignor) and consumer (KIP-848 ConsumerGroupHeartbeat, the
# broker's `range` assignor via group.remote.assignor).
#
# Both brokers are started once; then every measurement alternates between them (oxbow,
# kafka, oxbow, kafka, ...) for BENCH_ROUNDS rounds, so machine noise hits both alike.
#
# * Rebalance latency. Per round, broker and protocol: a fresh topic of BENCH_RB_PARTITIONS
#   partitions, a confluent-kafka producer writing one record to every partition each
#   BENCH_PRODUCE_MS ms for the whole run, and Java members (kafka-verifiable-consumer.sh,
#   whose JSON events carry millisecond wall-clock timestamps): member A alone, then
#   BENCH_CYCLES times a member B joins and leaves. Times, with "the group consumes again at T"
#   meaning: every member holds its final assignment (the last partitions_assigned /
#   partitions_revoked event after the change is at or before T) AND on every partition its
#   final owner, after it was last assigned that partition, has consumed a record whose
#   produce() call came after the change (its records_consumed event is at or before T):
#     join  = from B's `startup_complete` (it subscribes right after) until the group
#             consumes again with A and B holding half of the partitions each;
#     leave = from SIGTERM to B (its close() leaves the group) until the group consumes again
#             with A owning every partition.
#   The "assigned" rows stop at the first condition alone (the final assignment held).
#   A round's value is the median of its cycles.
# * kafka-consumer-perf-test.sh --group throughput (fresh group per round), BENCH_STEPS perf.
#
# Heartbeats are equal for both protocols and brokers: the classic members'
# heartbeat.interval.ms and both brokers' group.consumer.heartbeat.interval.ms are
# BENCH_HEARTBEAT_MS; the classic session.timeout.ms and both brokers'
# group.consumer.session.timeout.ms are BENCH_SESSION_MS (no member dies here, so the
# session is only an upper bound).
#
# The table reports per metric the median (range) of each side over the rounds and the median
# (range) of the per-round oxbow/kafka ratios.
#
# This is a benchmark, not a test: it prints a Markdown table and exits 0 even when a run
# fails (the cell then says so).
#
# Environment:
#   BENCH_ROUNDS         alternating rounds                        (default 3)
#   BENCH_CYCLES         join/leave cycles per round, broker and protocol (default 5)
#   BENCH_PROTOCOLS      group protocols, in order                 (default "classic consumer")
#   BENCH_STEPS          measurements per round                    (default "rebalance perf")
#   BENCH_RB_PARTITIONS  partitions of the rebalance topic         (default 12)
#   BENCH_HEARTBEAT_MS   heartbeat interval, see above             (default 200)
#   BENCH_SESSION_MS     session timeout, see above                (default 10000)
#   BENCH_PRODUCE_MS     one record per partition every this many ms (default 50)
#   BENCH_RECORDS        records for the consumer perf test        (default 500000)
#   BENCH_RECORD_SIZE    bytes per record                          (default 1024)
#   BENCH_PARTITIONS     partitions of the perf topic              (default 6)
#   BENCH_BROKERS        which brokers, in order                   (default "oxbow kafka")
#   BENCH_KAFKA_HEAP     heap of the Kafka broker                  (default "-Xmx1G -Xms1G")
#   BENCH_TOOL_HEAP      heap of the perf tools                    (default "-Xmx1G")
#   BENCH_TIMEOUT        seconds allowed per tool run              (default 900)
#   BENCH_OUT            also write the Markdown table here        (optional)
#   BENCH_KEEP           keep the work directory (logs, events)    (optional)
#   BENCH_MEMBER_LOG4J_OPTS  KAFKA_LOG4J_OPTS of the members only (e.g. a log4j2 file with
#                        org.apache.kafka.clients.consumer.internals at DEBUG), to see their
#                        heartbeats in member-*.log                 (optional)
#   OXBOW_BROKER_BIN     oxbow binary (default: cargo build --release, target/release/oxbow-broker)
#   OXBOW_CACHE          tool cache (see e2e/scripts/install-tools.sh)
#
# Quick run:  BENCH_ROUNDS=1 BENCH_CYCLES=1 BENCH_STEPS=rebalance e2e/bench/group-bench.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
CYCLES="${BENCH_CYCLES:-5}"
PROTOCOLS="${BENCH_PROTOCOLS:-classic consumer}"
STEPS="${BENCH_STEPS:-rebalance perf}"
RB_PARTITIONS="${BENCH_RB_PARTITIONS:-12}"
HEARTBEAT="${BENCH_HEARTBEAT_MS:-200}"
SESSION="${BENCH_SESSION_MS:-10000}"
PRODUCE_MS="${BENCH_PRODUCE_MS:-50}"
RECORDS="${BENCH_RECORDS:-500000}"
SIZE="${BENCH_RECORD_SIZE:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-6}"
BROKERS="${BENCH_BROKERS:-oxbow kafka}"
KAFKA_HEAP="${BENCH_KAFKA_HEAP:--Xmx1G -Xms1G}"
TOOL_HEAP="${BENCH_TOOL_HEAP:--Xmx1G}"
TIMEOUT="${BENCH_TIMEOUT:-900}"
PY="${OXBOW_CACHE:-$HOME/.cache/oxbow}/venv/bin/python"

say() { echo "group-bench: $*" >&2; }
source "$ROOT/e2e/bench/lib.sh"
step() { [[ " $STEPS " == *" $1 "* ]]; }

KAFKA_BIN="$("$ROOT/e2e/scripts/install-tools.sh" --print-bin)" || {
  say "installing tools failed"
  exit 1
}

if [[ " $BROKERS " == *" oxbow "* ]]; then
  oxbow_release_bin || exit 1
fi

# Consumer-protocol sessions and heartbeats are the broker's: the same on both. Kafka refuses
# an interval below its minimum (5 s by default), so the minimums come down with them.
BROKER_EXTRA_PROPS="group.consumer.heartbeat.interval.ms=$HEARTBEAT
group.consumer.min.heartbeat.interval.ms=$HEARTBEAT
group.consumer.session.timeout.ms=$SESSION
group.consumer.min.session.timeout.ms=$SESSION"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-group-bench.XXXXXX")"
declare -A PID PORT
cleanup() {
  local b p
  for b in $BROKERS; do
    p=${PID[$b]:-}
    [[ -z $p ]] && continue
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$WORK"; else say "kept $WORK"; fi
}
trap cleanup EXIT

# The rebalance driver: a producer feeding every partition, member A, and BENCH_CYCLES joins
# and leaves of member B, timed from the members' JSON events. Prints one JSON line.
cat >"$WORK/rebalance.py" <<'PY'
import bisect, json, os, signal, statistics, subprocess, sys, threading, time
from confluent_kafka import Producer

(kafka_bin, bs, topic, group, protocol, partitions, cycles, heartbeat, session, produce_ms,
 timeout, logdir) = sys.argv[1:13]
partitions, cycles, timeout = int(partitions), int(cycles), float(timeout)
produce_s = int(produce_ms) / 1000.0

def now_ms():
    return int(time.time() * 1000)

class Feed:
    """One record to every partition each produce_ms, remembering per partition when each
    delivered offset was handed to produce() (wall-clock ms, the members' clock)."""
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {p: [] for p in range(partitions)}     # nondecreasing send times
        self.offsets = {p: [] for p in range(partitions)}
        self.errors = 0
        self.stopping = False
        self.producer = Producer({"bootstrap.servers": bs, "acks": 1, "linger.ms": 0,
                                  "enable.idempotence": False})
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
    def delivered(self, err, msg, sent):
        with self.lock:
            if err is not None:
                self.errors += 1
                return
            p = msg.partition()
            # Delivery reports of one partition come in offset order; keep send times sorted.
            i = bisect.bisect_right(self.sent[p], sent)
            self.sent[p].insert(i, sent)
            self.offsets[p].insert(i, msg.offset())
    def run(self):
        n = 0
        next_tick = time.monotonic()
        while not self.stopping:
            for p in range(partitions):
                sent = now_ms()
                try:
                    self.producer.produce(topic, str(n).encode(), partition=p,
                                          on_delivery=lambda err, msg, sent=sent: self.delivered(err, msg, sent))
                except BufferError:
                    # The local queue is full (the broker stalls): skip this record, the next
                    # tick tries again; a record that was never sent cannot end a measurement.
                    self.producer.poll(0)
                n += 1
            next_tick += produce_s
            while True:
                left = next_tick - time.monotonic()
                self.producer.poll(max(0.0, left))
                if left <= 0:
                    break
        self.producer.flush(10)
    def first_offset_after(self, p, t):
        """The lowest delivered offset of p handed to produce() at or after t, or None."""
        with self.lock:
            i = bisect.bisect_left(self.sent[p], t)
            return self.offsets[p][i] if i < len(self.offsets[p]) else None
    def stop(self):
        self.stopping = True
        self.thread.join(30)

class Member:
    def __init__(self, name):
        self.name, self.events, self.lock = name, [], threading.Lock()
        args = [os.path.join(kafka_bin, "kafka-verifiable-consumer.sh"), "--bootstrap-server", bs,
                "--topic", topic, "--group-id", group, "--group-protocol", protocol]
        if protocol == "classic":
            cfg = os.path.join(logdir, "classic-member.properties")
            with open(cfg, "w") as f:
                f.write("heartbeat.interval.ms=%s\n" % heartbeat)
            args += ["--session-timeout", session, "--consumer.config", cfg,
                     "--assignment-strategy", "org.apache.kafka.clients.consumer.RangeAssignor"]
        else:
            args += ["--group-remote-assignor", "range"]
        self.err = open(os.path.join(logdir, "member-%s.log" % name), "w")
        env = dict(os.environ)
        if os.environ.get("BENCH_MEMBER_LOG4J_OPTS"):
            env["KAFKA_LOG4J_OPTS"] = os.environ["BENCH_MEMBER_LOG4J_OPTS"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     start_new_session=True, env=env)
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
    def first(self, name):
        for e in self.snapshot():
            if e["name"] == name:
                return e
        return None
    def stop(self):
        # The events stay in the work directory (BENCH_KEEP) for a look at where time went.
        with open(os.path.join(logdir, "member-%s.events" % self.name), "w") as f:
            for e in self.snapshot():
                f.write(json.dumps(e) + "\n")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

def owned(evs):
    s = set()
    for e in evs:
        ps = {p["partition"] for p in e.get("partitions", [])}
        if e["name"] == "partitions_assigned":
            s |= ps
        elif e["name"] == "partitions_revoked":
            s -= ps
    return s

def settled(members, want, t):
    """(assigned, consuming) timestamps once the group consumes again after the change at t
    (see the script's header), or None while it does not. want(sets) accepts the members'
    owned partition sets as final."""
    snaps = [m.snapshot() for m in members]
    sets = [owned(evs) for evs in snaps]
    if not want(sets):
        return None
    assigned = t
    for evs in snaps:
        for e in evs:
            if e["name"] in ("partitions_assigned", "partitions_revoked") and e["timestamp"] >= t:
                assigned = max(assigned, e["timestamp"])
    consuming = assigned
    for evs, mine in zip(snaps, sets):
        last_assigned = {}
        for i, e in enumerate(evs):
            if e["name"] == "partitions_assigned":
                for p in e["partitions"]:
                    last_assigned[p["partition"]] = i
        for p in mine:
            o = feed.first_offset_after(p, t)
            if o is None:
                return None
            hit = next((e["timestamp"] for e in evs[last_assigned[p] + 1:]
                        if e["name"] == "records_consumed"
                        and any(s["partition"] == p and s["maxOffset"] >= o for s in e["partitions"])),
                       None)
            if hit is None:
                return None
            consuming = max(consuming, hit)
    return assigned, consuming

def wait(what, cond):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(json.dumps({"error": "timed out waiting for " + what}))

half = partitions // 2
every = set(range(partitions))
feed = Feed()
a = Member("A")
res = {"join": [], "join_assigned": [], "leave": [], "leave_assigned": []}
try:
    wait("A to start", lambda: a.first("startup_complete"))
    ta = a.first("startup_complete")["timestamp"]
    wait("A to own and consume everything", lambda: settled([a], lambda s: s[0] == every, ta))
    for c in range(cycles):
        b = Member("B%d" % (c + 1))
        wait("B to start", lambda: b.first("startup_complete"))
        t0 = b.first("startup_complete")["timestamp"]
        split = lambda s: (len(s[0]) == partitions - half and len(s[1]) == half
                           and s[0] | s[1] == every)
        assigned, consuming = wait("join: both members consuming their halves",
                                   lambda: settled([a, b], split, t0))
        res["join_assigned"].append(assigned - t0)
        res["join"].append(consuming - t0)
        t1 = now_ms()
        b.proc.send_signal(signal.SIGTERM)
        assigned, consuming = wait("leave: A consuming everything",
                                   lambda: settled([a], lambda s: s[0] == every, t1))
        res["leave_assigned"].append(assigned - t1)
        res["leave"].append(consuming - t1)
        b.stop()
        print("cycle %d: join %d ms (assigned %d), leave %d ms (assigned %d); B started at %d,"
              " SIGTERM at %d (unix ms)"
              % (c + 1, res["join"][-1], res["join_assigned"][-1], res["leave"][-1],
                 res["leave_assigned"][-1], t0, t1), file=sys.stderr)
finally:
    a.stop()
    feed.stop()
if feed.errors:
    print("%d records failed to deliver" % feed.errors, file=sys.stderr)
print(json.dumps({k: statistics.median(v) for k, v in res.items()}))
PY

# Results: R[<broker>.<metric>.<round>], a number or a failure text.
declare -A R

rebalance_run() { # broker round protocol
  local b=$1 r=$2 proto=$3 bs="127.0.0.1:${PORT[$1]}" topic="rb-$3-$2" log="$WORK/$1-$3-$2" line rc k
  mkdir -p "$log"
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic "$topic" \
    --partitions "$RB_PARTITIONS" --replication-factor 1 >/dev/null 2>"$log/create.err" ||
    say "$b: creating topic $topic failed: $(tail -1 "$log/create.err")"
  say "$b round $r $proto: $CYCLES join/leave cycles of a second member ($RB_PARTITIONS partitions)"
  KAFKA_HEAP_OPTS="-Xmx256m" timeout "$TIMEOUT" "$PY" "$WORK/rebalance.py" "$KAFKA_BIN" "$bs" \
    "$topic" "bench-$proto-$r" "$proto" "$RB_PARTITIONS" "$CYCLES" "$HEARTBEAT" "$SESSION" \
    "$PRODUCE_MS" 120 "$log" >"$log/result.json" 2>"$log/driver.err"
  rc=$?
  line=$(tail -1 "$log/result.json")
  sed "s/^/group-bench: $b round $r $proto /" "$log/driver.err" >&2
  if [[ $rc != 0 || $line != *join_assigned* ]]; then
    for k in join join_assigned leave leave_assigned; do R[$b.$proto.$k.$r]="failed (rc=$rc)"; done
    say "$b round $r $proto failed: rc=$rc ${line}"
    return
  fi
  for k in join join_assigned leave leave_assigned; do
    R[$b.$proto.$k.$r]=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])[sys.argv[2]]))' "$line" "$k")
  done
}

perf_load() { # broker
  local b=$1 bs="127.0.0.1:${PORT[$1]}"
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic perf \
    --partitions "$PARTITIONS" --replication-factor 1 >/dev/null 2>"$WORK/$b-perf-create.err" ||
    say "$b: creating topic perf failed: $(tail -1 "$WORK/$b-perf-create.err")"
  say "$b: loading $RECORDS records of $SIZE B"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-producer-perf-test.sh" \
    --topic perf --num-records "$RECORDS" --record-size "$SIZE" --throughput -1 \
    --producer-props "bootstrap.servers=$bs" acks=1 >"$WORK/$b-produce.txt" 2>&1 || {
    R[$b.load]="load failed"
    tail -3 "$WORK/$b-produce.txt" >&2
  }
}

perf_run() { # broker round
  local b=$1 r=$2 bs="127.0.0.1:${PORT[$1]}" out="$WORK/$1-consume-$2.txt" line rc
  if [[ -n ${R[$b.load]:-} ]]; then
    R[$b.c.rps.$r]=${R[$b.load]}
    return
  fi
  say "$b round $r: kafka-consumer-perf-test.sh --group --messages $RECORDS"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-consumer-perf-test.sh" \
    --bootstrap-server "$bs" --topic perf --messages "$RECORDS" --timeout 60000 \
    --group "perf-group-$r" >"$out" 2>&1
  rc=$?
  # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
  # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
  line=$(grep -A1 '^start.time' "$out" | tail -1)
  if [[ $rc != 0 || -z $line || $line == start.time* ]]; then
    R[$b.c.rps.$r]="failed (rc=$rc)"
    tail -5 "$out" >&2
    return
  fi
  R[$b.c.mbs.$r]=$(awk -F', *' '{printf "%.2f", $4}' <<<"$line")
  R[$b.c.rps.$r]=$(awk -F', *' '{printf "%.0f", $6}' <<<"$line")
  R[$b.c.rebalance.$r]=$(awk -F', *' '{printf "%.0f", $7}' <<<"$line")
  R[$b.c.fetchrps.$r]=$(awk -F', *' '{printf "%.0f", $10}' <<<"$line")
  say "$b round $r consume: $line"
}

STARTED=""
for b in $BROKERS; do
  PORT[$b]=$(free_port)
  say "starting $b on 127.0.0.1:${PORT[$b]}"
  if ! start_broker "$b" "$WORK/$b" "${PORT[$b]}"; then
    say "$b did not start; log tail:"
    tail -20 "$WORK/$b/broker.log" >&2
    R[$b.start]="did not start"
    stop_broker
    continue
  fi
  PID[$b]=$BROKER_PID
  BROKER_PID=""
  STARTED+=" $b"
  step perf && perf_load "$b"
done

UPTIME_START=$(uptime)
for ((r = 1; r <= ROUNDS; r++)); do
  if step rebalance; then
    for proto in $PROTOCOLS; do
      for b in $STARTED; do rebalance_run "$b" "$r" "$proto"; done
    done
  fi
  if step perf; then
    for b in $STARTED; do perf_run "$b" "$r"; done
  fi
done
UPTIME_END=$(uptime)

# --------------------------------------------------------------------------
# Markdown table: medians with ranges over the rounds
# --------------------------------------------------------------------------
table() {
  echo "### Consumer groups: oxbow-broker vs Apache Kafka 4.1 (single node), $ROUNDS alternating rounds"
  echo
  step rebalance && echo "Rebalance: kafka-verifiable-consumer.sh members on $RB_PARTITIONS partitions fed one record" \
    "per partition every $PRODUCE_MS ms, $CYCLES join/leave cycles of a second member per round," \
    "broker and protocol (a round's value is their median); classic: RangeAssignor (eager)," \
    "heartbeat.interval.ms=$HEARTBEAT, session.timeout.ms=$SESSION; consumer:" \
    "group.remote.assignor=range, group.consumer.heartbeat.interval.ms=$HEARTBEAT and" \
    "group.consumer.session.timeout.ms=$SESSION on both brokers. \"Consuming again\": every member" \
    "holds its final assignment and every partition's final owner has consumed a record produced" \
    "after the change."
  echo "Median (range) per side and of the per-round oxbow/kafka ratios." \
    "$(nproc) cores, $(date -u +%Y-%m-%d). Lower is better for latencies."
  echo
  echo "| metric | oxbow | kafka | oxbow/kafka |"
  echo "| --- | ---: | ---: | ---: |"
  local proto
  if step rebalance; then
    for proto in $PROTOCOLS; do
      round_row "$proto join: second member starts → both consuming again (ms)" "$proto.join"
      round_row "$proto join: second member starts → both assigned (ms)" "$proto.join_assigned"
      round_row "$proto leave: SIGTERM → the other consuming everything (ms)" "$proto.leave"
      round_row "$proto leave: SIGTERM → the other assigned everything (ms)" "$proto.leave_assigned"
    done
  fi
  if step perf; then
    round_row "consumer-perf-test --group records/s ($RECORDS × $SIZE B, $PARTITIONS partitions)" "c.rps"
    round_row "consumer-perf-test --group MB/s" "c.mbs"
    round_row "consumer-perf-test fetch records/s (after rebalance)" "c.fetchrps"
    round_row "consumer-perf-test rebalance.time.ms" "c.rebalance"
  fi
  for b in $BROKERS; do
    [[ -n ${R[$b.start]:-} ]] && echo && echo "_${b}: ${R[$b.start]}_"
  done
  return 0
}

say "load at start: $UPTIME_START"
say "load at end:   $UPTIME_END"
echo
table | tee ${BENCH_OUT:+"$BENCH_OUT"}
exit 0
