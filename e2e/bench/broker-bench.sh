#!/usr/bin/env bash
# Benchmark: oxbow-broker (release build) vs a real single-node Apache Kafka 4.1
# (KRaft combined mode) on the same machine, one after the other, driven by
# Kafka's own kafka-producer-perf-test.sh / kafka-consumer-perf-test.sh.
#
# This is a benchmark, not a test: it prints a Markdown table and exits 0 even
# when one of the runs fails (the cell then says what failed).
#
# Environment:
#   BENCH_RECORDS      records per producer run        (default 500000)
#   BENCH_RECORD_SIZE  bytes per record                (default 1024)
#   BENCH_PARTITIONS   partitions of the bench topics  (default 1)
#   BENCH_BROKERS      which brokers, in order         (default "oxbow kafka")
#   BENCH_KAFKA_HEAP   heap of the Kafka broker        (default "-Xmx1G -Xms1G")
#   BENCH_TOOL_HEAP    heap of the perf tools          (default "-Xmx1G")
#   BENCH_TIMEOUT      seconds allowed per tool run    (default 900)
#   BENCH_OUT          also write the Markdown table here (optional)
#   OXBOW_BROKER_BIN   oxbow binary (default: cargo build --release, target/release/oxbow-broker)
#   OXBOW_CACHE        tool cache (see e2e/scripts/install-tools.sh)
#
# Quick run:  BENCH_RECORDS=20000 e2e/bench/broker-bench.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RECORDS="${BENCH_RECORDS:-500000}"
SIZE="${BENCH_RECORD_SIZE:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-1}"
BROKERS="${BENCH_BROKERS:-oxbow kafka}"
KAFKA_HEAP="${BENCH_KAFKA_HEAP:--Xmx1G -Xms1G}"
TOOL_HEAP="${BENCH_TOOL_HEAP:--Xmx1G}"
TIMEOUT="${BENCH_TIMEOUT:-900}"

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

producer_run() { # broker bootstrap topic acks
  local b=$1 bs=$2 topic=$3 acks=$4 out="$WORK/$1-produce-$4.txt" line
  say "$b: kafka-producer-perf-test.sh --num-records $RECORDS --record-size $SIZE --throughput -1 acks=$acks"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-producer-perf-test.sh" \
    --topic "$topic" --num-records "$RECORDS" --record-size "$SIZE" --throughput -1 \
    --producer-props "bootstrap.servers=$bs" "acks=$acks" >"$out" 2>&1
  local rc=$?
  # Final line: N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.
  line=$(grep -E '^[0-9]+ records sent, .* 50th' "$out" | tail -1)
  if [[ $rc != 0 || -z $line ]]; then
    R[$b.p$acks.rps]="failed (rc=$rc)"
    say "$b acks=$acks failed; output tail:"
    tail -5 "$out" >&2
    return
  fi
  R[$b.p$acks.rps]=$(sed -E 's/.* sent, ([0-9.]+) records\/sec.*/\1/' <<<"$line")
  R[$b.p$acks.mbs]=$(sed -E 's/.*records\/sec \(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")
  R[$b.p$acks.p50]=$(sed -E 's/.* ([0-9.]+) ms 50th.*/\1/' <<<"$line")
  R[$b.p$acks.p99]=$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$line")
  say "$b acks=$acks: $line"
}

consumer_run() { # broker bootstrap topic
  local b=$1 bs=$2 topic=$3 out="$WORK/$1-consume.txt" line
  say "$b: kafka-consumer-perf-test.sh --messages $RECORDS (subscribes with a consumer group)"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-consumer-perf-test.sh" \
    --bootstrap-server "$bs" --topic "$topic" --messages "$RECORDS" --timeout 60000 \
    --group "bench-$$" >"$out" 2>&1
  local rc=$?
  # Header: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
  line=$(grep -A1 '^start.time' "$out" | tail -1)
  if [[ $rc != 0 || -z $line || $line == start.time* ]]; then
    R[$b.c.rps]="failed (rc=$rc)"
    say "$b consumer perf failed; output tail:"
    tail -5 "$out" >&2
  else
    R[$b.c.mbs]=$(awk -F', *' '{printf "%.2f", $4}' <<<"$line")
    R[$b.c.rps]=$(awk -F', *' '{printf "%.1f", $6}' <<<"$line")
    say "$b consume: $line"
  fi

  # Group-free read of the same topic with kcat (assign, earliest to end).
  say "$b: kcat -C (no group) reading $topic"
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$(timeout "$TIMEOUT" kcat -b "$bs" -C -t "$topic" -o beginning -e -q -f '.\n' 2>"$WORK/$b-kcat.err" | wc -l)
  t1=$(date +%s.%N)
  if [[ $n -ge $RECORDS ]]; then
    R[$b.k.rps]=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", n/(b-a)}')
    R[$b.k.mbs]=$(awk -v n="$n" -v s="$SIZE" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", n*s/1048576/(b-a)}')
  else
    R[$b.k.rps]="failed ($n of $RECORDS read)"
    tail -3 "$WORK/$b-kcat.err" >&2
  fi
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
  start_sampler "$BROKER_PID" "$dir/rss"
  bs="127.0.0.1:$port"
  for acks in 1 all; do
    "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic "bench-acks$acks" \
      --partitions "$PARTITIONS" --replication-factor 1 >/dev/null 2>"$WORK/$b-create.err" ||
      say "$b: creating bench-acks$acks failed: $(tail -1 "$WORK/$b-create.err")"
    producer_run "$b" "$bs" "bench-acks$acks" "$acks"
  done
  consumer_run "$b" "$bs" "bench-acks1"
  # Final peak: VmHWM is the kernel's own high-water mark.
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
  sampled=$(cat "$dir/rss" 2>/dev/null || echo 0)
  peak=$((hwm > sampled ? hwm : sampled))
  R[$b.rss]=$(awk -v k="$peak" 'BEGIN {printf "%.1f", k/1024}')
  say "$b peak RSS ${R[$b.rss]} MiB"
  stop_broker
done

# --------------------------------------------------------------------------
# Markdown table
# --------------------------------------------------------------------------
cell() { echo "${R[$1]:-–}"; }

row() { # label key unit
  local label=$1 key=$2
  printf '| %s | %s | %s | %s |\n' "$label" "$(cell "oxbow.$key")" "$(cell "kafka.$key")" \
    "$(ratio "${R[oxbow.$key]:-}" "${R[kafka.$key]:-}")"
}

table() {
  echo "### oxbow-broker vs Apache Kafka 4.1 (single node)"
  echo
  echo "$RECORDS records of $SIZE B, $PARTITIONS partition(s), \`--throughput -1\`, one client at a time;" \
    "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(date -u +%Y-%m-%d)." \
    "Kafka heap \`$KAFKA_HEAP\`. Lower is better for latency and RSS."
  echo
  echo "| metric | oxbow | kafka | oxbow/kafka |"
  echo "| --- | ---: | ---: | ---: |"
  for acks in 1 all; do
    row "produce acks=$acks records/s" "p$acks.rps"
    row "produce acks=$acks MB/s" "p$acks.mbs"
    row "produce acks=$acks p50 latency (ms)" "p$acks.p50"
    row "produce acks=$acks p99 latency (ms)" "p$acks.p99"
  done
  row "consume (consumer-perf-test, group) records/s" "c.rps"
  row "consume (consumer-perf-test, group) MB/s" "c.mbs"
  row "consume (kcat, no group) records/s" "k.rps"
  row "consume (kcat, no group) MB/s" "k.mbs"
  row "broker peak RSS (MiB)" "rss"
  for b in $BROKERS; do
    [[ -n ${R[$b.start]:-} ]] && echo && echo "_${b}: ${R[$b.start]}_"
  done
  return 0
}

echo
table | tee ${BENCH_OUT:+"$BENCH_OUT"}
exit 0
