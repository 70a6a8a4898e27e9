#!/usr/bin/env bash
# Benchmark: oxbow-broker (release build) vs a real single-node Apache Kafka 4.1
# (KRaft combined mode) on the same machine, driven by Kafka's own
# kafka-producer-perf-test.sh / kafka-consumer-perf-test.sh.
#
# The machine is shared and noisy, so the brokers alternate: each of BENCH_ROUNDS
# rounds starts a fresh broker of each kind in BENCH_BROKERS order (kafka, oxbow,
# kafka, oxbow, ...) and measures, one client at a time:
#   produce acks=1 and acks=all at saturation (--throughput -1): records/s, MB/s,
#     p50 and p99 latency;
#   produce acks=all at a fixed rate, half of Kafka's acks=all saturation rate of the
#     same round (BENCH_FIXED_RATE to set it): p50 and p99 latency, where queueing
#     in the client does not dominate as it does at saturation;
#   transactional produce at saturation (--transactional-id, a commit every
#     BENCH_TXN_MS ms): records/s and p99;
#   consume with a group (kafka-consumer-perf-test.sh) and without (kcat);
#   the broker's peak RSS.
# The table gives per side the median (range) over the rounds, and the median (range)
# of the per-round oxbow/kafka ratios.
#
# This is a benchmark, not a test: it prints a Markdown table and exits 0 even
# when one of the runs fails (the cell then says what failed).
#
# Environment:
#   BENCH_ROUNDS       alternating rounds              (default 3)
#   BENCH_RECORDS      records per saturation run      (default 500000)
#   BENCH_RECORD_SIZE  bytes per record                (default 1024)
#   BENCH_PARTITIONS   partitions of the bench topics  (default 1)
#   BENCH_FIXED_SECONDS  length of the fixed-rate run  (default 20)
#   BENCH_FIXED_RATE   fixed rate, records/s           (default: half of Kafka's acks=all rate)
#   BENCH_BROKERS      which brokers, in order         (default "kafka oxbow")
#   BENCH_KAFKA_HEAP   heap of the Kafka broker        (default "-Xmx1G -Xms1G")
#   BENCH_TOOL_HEAP    heap of the perf tools          (default "-Xmx1G")
#   BENCH_TIMEOUT      seconds allowed per tool run    (default 900)
#   BENCH_TXN_MS       --transaction-duration-ms of the transactional run (default 100)
#   BENCH_OUT          also write the Markdown table here (optional)
#   OXBOW_BROKER_BIN   oxbow binary (default: cargo build --release, target/release/oxbow-broker)
#   OXBOW_CACHE        tool cache (see e2e/scripts/install-tools.sh)
#
# Quick run:  BENCH_ROUNDS=1 BENCH_RECORDS=20000 BENCH_FIXED_SECONDS=5 e2e/bench/broker-bench.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
RECORDS="${BENCH_RECORDS:-500000}"
FIXED_SECONDS="${BENCH_FIXED_SECONDS:-20}"
FIXED_RATE="${BENCH_FIXED_RATE:-}"
SIZE="${BENCH_RECORD_SIZE:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-1}"
BROKERS="${BENCH_BROKERS:-kafka oxbow}"
KAFKA_HEAP="${BENCH_KAFKA_HEAP:--Xmx1G -Xms1G}"
TOOL_HEAP="${BENCH_TOOL_HEAP:--Xmx1G}"
TIMEOUT="${BENCH_TIMEOUT:-900}"
TXN_MS="${BENCH_TXN_MS:-100}"

say() { echo "bench: $*" >&2; }
source "$ROOT/e2e/bench/lib.sh"

# The perf tools get the full JIT (the wrappers default to a quick-start C1 setup).
export KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true}"

KAFKA_BIN="$("$ROOT/e2e/scripts/install-tools.sh" --print-bin)" || {
  say "installing tools failed"
  exit 1
}

if [[ " $BROKERS " == *" oxbow "* ]]; then
  oxbow_release_bin || exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-bench.XXXXXX")"
BROKER_PID=""
SAMPLER_PID=""
cleanup() {
  [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null
  if [[ -n $BROKER_PID ]]; then
    kill -TERM "$BROKER_PID" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null
  fi
  [[ -z ${BENCH_KEEP:-} ]] && rm -rf "$WORK"
}
trap cleanup EXIT

BROKER_EXTRA_PROPS="num.partitions=$PARTITIONS"

# Peak RSS sampler: polls VmRSS (and VmHWM) of the broker into a file.
start_sampler() { # pid file
  local pid=$1 out=$2
  (
    peak=0
    while kill -0 "$pid" 2>/dev/null; do
      v=$(awk '/^VmHWM:|^VmRSS:/ {if ($2>m) m=$2} END {print m+0}' "/proc/$pid/status" 2>/dev/null || echo 0)
      ((v > peak)) && peak=$v && echo "$peak" >"$out"
      sleep 0.2
    done
  ) &
  SAMPLER_PID=$!
}

# Results: R[<broker>.<metric>]
declare -A R

producer_run() { # broker round bootstrap topic acks throughput key [extra perf-test args...]
  local b=$1 r=$2 bs=$3 topic=$4 acks=$5 rate=$6 key=$7 records=$RECORDS line
  shift 7
  local out="$WORK/$b-$r-$key.txt"
  # At a fixed rate the run lasts FIXED_SECONDS.
  [[ $rate != -1 ]] && records=$((rate * FIXED_SECONDS))
  say "$b round $r: kafka-producer-perf-test.sh --num-records $records --record-size $SIZE --throughput $rate acks=$acks"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-producer-perf-test.sh" \
    --topic "$topic" --num-records "$records" --record-size "$SIZE" --throughput "$rate" \
    --producer-props "bootstrap.servers=$bs" "acks=$acks" "$@" >"$out" 2>&1
  local rc=$?
  # Final line: N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.
  line=$(grep -E '^[0-9]+ records sent, .* 50th' "$out" | tail -1)
  if [[ $rc != 0 || -z $line ]]; then
    R[$b.$key.rps.$r]="failed (rc=$rc)"
    say "$b $key failed; output tail:"
    tail -5 "$out" >&2
    return
  fi
  R[$b.$key.rps.$r]=$(sed -E 's/.* sent, ([0-9.]+) records\/sec.*/\1/' <<<"$line")
  R[$b.$key.mbs.$r]=$(sed -E 's/.*records\/sec \(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")
  R[$b.$key.p50.$r]=$(sed -E 's/.* ([0-9.]+) ms 50th.*/\1/' <<<"$line")
  R[$b.$key.p99.$r]=$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$line")
  say "$b round $r $key: $line"
}

consumer_run() { # broker round bootstrap topic
  local b=$1 r=$2 bs=$3 topic=$4 out="$WORK/$1-$2-consume.txt" line
  say "$b: kafka-consumer-perf-test.sh --messages $RECORDS (subscribes with a consumer group)"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-consumer-perf-test.sh" \
    --bootstrap-server "$bs" --topic "$topic" --messages "$RECORDS" --timeout 60000 \
    --group "bench-$$-$r" >"$out" 2>&1
  local rc=$?
  # Header: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
  line=$(grep -A1 '^start.time' "$out" | tail -1)
  if [[ $rc != 0 || -z $line || $line == start.time* ]]; then
    R[$b.c.rps.$r]="failed (rc=$rc)"
    say "$b consumer perf failed; output tail:"
    tail -5 "$out" >&2
  else
    R[$b.c.mbs.$r]=$(awk -F', *' '{printf "%.2f", $4}' <<<"$line")
    R[$b.c.rps.$r]=$(awk -F', *' '{printf "%.1f", $6}' <<<"$line")
    say "$b consume: $line"
  fi

  # Group-free read of the same topic with kcat (assign, earliest to end).
  say "$b: kcat -C (no group) reading $topic"
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$(timeout "$TIMEOUT" kcat -b "$bs" -C -t "$topic" -o beginning -e -q -f '.\n' 2>"$WORK/$b-$r-kcat.err" | wc -l)
  t1=$(date +%s.%N)
  if [[ $n -ge $RECORDS ]]; then
    R[$b.k.rps.$r]=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", n/(b-a)}')
    R[$b.k.mbs.$r]=$(awk -v n="$n" -v s="$SIZE" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", n*s/1048576/(b-a)}')
  else
    R[$b.k.rps.$r]="failed ($n of $RECORDS read)"
    tail -3 "$WORK/$b-$r-kcat.err" >&2
  fi
}

for ((r = 1; r <= ROUNDS; r++)); do
  for b in $BROKERS; do
    dir="$WORK/$b-$r"
    port=$(free_port)
    say "round $r: starting $b on 127.0.0.1:$port"
    if ! start_broker "$b" "$dir" "$port"; then
      say "$b did not start; log tail:"
      tail -20 "$dir/broker.log" >&2
      R[$b.start.$r]="did not start"
      stop_broker
      continue
    fi
    start_sampler "$BROKER_PID" "$dir/rss"
    bs="127.0.0.1:$port"
    for acks in 1 all; do
      "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic "bench-acks$acks" \
        --partitions "$PARTITIONS" --replication-factor 1 >/dev/null 2>"$WORK/$b-$r-create.err" ||
        say "$b: creating bench-acks$acks failed: $(tail -1 "$WORK/$b-$r-create.err")"
      producer_run "$b" "$r" "$bs" "bench-acks$acks" "$acks" -1 "p$acks"
    done
    if [[ -z ${BENCH_FIXED_RATE:-} && $b == kafka ]] && num "${R[kafka.pall.rps.$r]:-}"; then
      FIXED_RATE=$(awk -v x="${R[kafka.pall.rps.$r]}" 'BEGIN {printf "%d", x / 2}')
    fi
    if [[ -n $FIXED_RATE ]]; then
      "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic "bench-fixed" \
        --partitions "$PARTITIONS" --replication-factor 1 >/dev/null 2>"$WORK/$b-$r-create.err" ||
        say "$b: creating bench-fixed failed: $(tail -1 "$WORK/$b-$r-create.err")"
      producer_run "$b" "$r" "$bs" "bench-fixed" all "$FIXED_RATE" fixed
    else
      R[$b.fixed.p50.$r]="no Kafka rate"
    fi
    # Transactions: every TXN_MS a commit (kafka-producer-perf-test.sh's own transactional
    # mode: idempotent, acks=all, one transactional id).
    "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic "bench-txn" \
      --partitions "$PARTITIONS" --replication-factor 1 >/dev/null 2>"$WORK/$b-$r-create.err" ||
      say "$b: creating bench-txn failed: $(tail -1 "$WORK/$b-$r-create.err")"
    producer_run "$b" "$r" "$bs" "bench-txn" all -1 txn \
      --transactional-id "bench-txn-$$-$r" --transaction-duration-ms "$TXN_MS"
    consumer_run "$b" "$r" "$bs" "bench-acks1"
    # Final peak: VmHWM is the kernel's own high-water mark.
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
    sampled=$(cat "$dir/rss" 2>/dev/null || echo 0)
    peak=$((hwm > sampled ? hwm : sampled))
    R[$b.rss.$r]=$(awk -v k="$peak" 'BEGIN {printf "%.1f", k/1024}')
    say "$b round $r: peak RSS ${R[$b.rss.$r]} MiB"
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null
    SAMPLER_PID=""
    stop_broker
  done
done

# --------------------------------------------------------------------------
# Markdown table
# --------------------------------------------------------------------------
table() {
  echo "### oxbow-broker vs Apache Kafka 4.1 (single node)"
  echo
  echo "$ROUNDS round(s) alternating ${BROKERS// /, }; median (range) per side and of the per-round" \
    "oxbow/kafka ratios. $RECORDS records of $SIZE B at saturation (\`--throughput -1\`)," \
    "acks=all at a fixed ${FIXED_RATE:-–} records/s for ${FIXED_SECONDS}s, $PARTITIONS partition(s)," \
    "one client at a time; $(nproc) cores," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(date -u +%Y-%m-%d)." \
    "Kafka heap \`$KAFKA_HEAP\`. Lower is better for latency and RSS."
  echo
  echo "| metric | oxbow | kafka | oxbow/kafka |"
  echo "| --- | ---: | ---: | ---: |"
  for acks in 1 all; do
    round_row "produce acks=$acks records/s" "p$acks.rps"
    round_row "produce acks=$acks MB/s" "p$acks.mbs"
    round_row "produce acks=$acks p50 latency (ms)" "p$acks.p50"
    round_row "produce acks=$acks p99 latency (ms)" "p$acks.p99"
  done
  round_row "produce acks=all, fixed rate, p50 latency (ms)" "fixed.p50"
  round_row "produce acks=all, fixed rate, p99 latency (ms)" "fixed.p99"
  round_row "transactional produce (a commit every ${TXN_MS} ms) records/s" "txn.rps"
  round_row "transactional produce p99 latency (ms)" "txn.p99"
  round_row "consume (consumer-perf-test, group) records/s" "c.rps"
  round_row "consume (consumer-perf-test, group) MB/s" "c.mbs"
  round_row "consume (kcat, no group) records/s" "k.rps"
  round_row "consume (kcat, no group) MB/s" "k.mbs"
  round_row "broker peak RSS (MiB)" "rss"
  local b r
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
