#!/usr/bin/env bash
# Benchmark of the consume (Fetch) path: oxbow-broker (release build) vs a single-node Apache
# Kafka 4.1 (KRaft combined mode) from the same jars, on the same machine, in the same run.
#
# Both brokers are started and loaded once; then every measurement alternates between them
# (oxbow, kafka, oxbow, kafka, ...) for BENCH_ROUNDS rounds, so machine noise hits both alike.
# Each round measures, per broker:
#   kcat1      kcat -C -o beginning -e (librdkafka defaults), 1 partition, BENCH_MB MB
#   kcat6      the same over 6 partitions
#   cpu1       broker CPU (utime+stime from /proc/<pid>/stat) per MB read during kcat1
#   kcat1q     kcat1 with a prefetch queue that holds the whole read
#              (queued.max.messages.kbytes=2097151, queued.min.messages=10000000): librdkafka's
#              defaults stop fetching when 64 MiB are queued and resume only at the broker
#              thread's next wake-up, after the application has drained the queue; a broker
#              that serves faster than kcat writes fills it and then waits (see the README),
#              so this row measures the broker without that client flow control
#   perf.g     kafka-consumer-perf-test.sh --group <fresh group>, 1 partition, BENCH_MB MB
#   perf.d     kafka-consumer-perf-test.sh without --group (4.1's tool then subscribes with
#              its default random group id: it has no group-free mode)
#   many       BENCH_CONSUMERS Java consumers (kafka-consumer-perf-test.sh, one group) over
#              BENCH_MANY_PARTITIONS partitions, BENCH_MANY_MB MB: they use incremental fetch
#              sessions; MB / wall time from starting the first to the exit of the last
#              (JVM start-ups and the group's rebalances included, the same for both brokers)
#   many.f     the same run, MB / the longest fetch.time.ms the consumers report (their time
#              spent fetching, without start-up and rebalances)
# and prints, per metric, both medians, the median of the per-round oxbow/kafka ratios and
# the ratios' range. Higher is better except CPU/MB.
#
# This is a benchmark, not a test: it prints a Markdown table and exits 0 even when a run
# fails (the cell then says so).
#
# Environment:
#   BENCH_ROUNDS           alternations (default 3)
#   BENCH_MB               MB of 1 KiB records in the kcat / perf-test topics (default 400)
#   BENCH_MANY_MB          MB in the many-partition topic (default 100)
#   BENCH_MANY_PARTITIONS  partitions of that topic (default 100)
#   BENCH_CONSUMERS        consumers in its group (default 10)
#   BENCH_KAFKA_HEAP       heap of the Kafka broker (default "-Xmx1G -Xms1G")
#   BENCH_TOOL_HEAP        heap of each Java tool (default "-Xmx512M")
#   BENCH_TIMEOUT          seconds allowed per tool run (default 600)
#   BENCH_OUT              also write the Markdown table here (optional)
#   OXBOW_BROKER_BIN       oxbow binary (default: cargo build --release, target/release/oxbow-broker)
#
# Quick run:  BENCH_ROUNDS=1 BENCH_MB=50 BENCH_MANY_MB=20 e2e/bench/fetch-bench.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
MB="${BENCH_MB:-400}"
MANY_MB="${BENCH_MANY_MB:-100}"
MANY_P="${BENCH_MANY_PARTITIONS:-100}"
CONSUMERS="${BENCH_CONSUMERS:-10}"
KAFKA_HEAP="${BENCH_KAFKA_HEAP:--Xmx1G -Xms1G}"
TOOL_HEAP="${BENCH_TOOL_HEAP:--Xmx512M}"
TIMEOUT="${BENCH_TIMEOUT:-600}"
SIZE=1024
RECORDS=$((MB * 1024))
MANY_RECORDS=$((MANY_MB * 1024))

say() { echo "bench: $*" >&2; }
source "$ROOT/e2e/bench/lib.sh"

export KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true}"

KAFKA_BIN="$("$ROOT/e2e/scripts/install-tools.sh" --print-bin)" || {
  say "installing tools failed"
  exit 1
}
oxbow_release_bin || exit 1

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-fetch-bench.XXXXXX")"
declare -A PID PORT
cleanup() {
  for b in oxbow kafka; do
    local p=${PID[$b]:-}
    [[ -z $p ]] && continue
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  [[ -z ${BENCH_KEEP:-} ]] && rm -rf "$WORK"
}
trap cleanup EXIT


# Results: V[<broker>.<metric>.<round>]
declare -A V

cpu_ticks() { # pid -> utime+stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

now() { date +%s.%N; }

load() { # broker bootstrap topic partitions records
  local b=$1 bs=$2 topic=$3 parts=$4 n=$5
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$bs" --create --topic "$topic" \
    --partitions "$parts" --replication-factor 1 >/dev/null 2>"$WORK/$b-create.err" ||
    say "$b: creating $topic failed: $(tail -1 "$WORK/$b-create.err")"
  # Round-robin spreads records evenly, so every consumer of the group has as much to read.
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-producer-perf-test.sh" \
    --topic "$topic" --num-records "$n" --record-size "$SIZE" --throughput -1 \
    --producer-props "bootstrap.servers=$bs" acks=1 linger.ms=5 batch.size=262144 \
    partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner \
    >"$WORK/$b-load-$topic.txt" 2>&1 || say "$b: loading $topic failed: $(tail -2 "$WORK/$b-load-$topic.txt")"
}

kcat_read() { # broker topic metric round [cpu metric] [kcat options...]
  local b=$1 topic=$2 metric=$3 r=$4 cpu=${5:-} bs="127.0.0.1:${PORT[$1]}" t0 t1 c0 c1 bytes
  shift $(($# < 5 ? $# : 5))
  c0=$(cpu_ticks "${PID[$b]}")
  t0=$(now)
  bytes=$(timeout "$TIMEOUT" kcat -b "$bs" -C -t "$topic" -o beginning -e -q "$@" 2>"$WORK/$b-kcat.err" | wc -c)
  t1=$(now)
  c1=$(cpu_ticks "${PID[$b]}")
  # Each record prints as its 1 KiB value plus a newline.
  if ((bytes >= RECORDS * (SIZE + 1))); then
    V[$b.$metric.$r]=$(awk -v n="$bytes" -v a="$t0" -v b="$t1" -v s="$SIZE" \
      'BEGIN {printf "%.1f", n * s / (s + 1) / 1048576 / (b - a)}')
    if [[ -n $cpu ]]; then
      V[$b.$cpu.$r]=$(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v mb="$MB" \
        'BEGIN {printf "%.2f", c * 1000 / hz / mb}')
    fi
  else
    say "$b: kcat read $bytes bytes of $topic, expected $((RECORDS * (SIZE + 1))): $(tail -2 "$WORK/$b-kcat.err")"
  fi
  say "$b round $r $metric: ${V[$b.$metric.$r]:-failed} MB/s${cpu:+, ${V[$b.$cpu.$r]:-?} CPU ms/MB}"
}

perf_read() { # broker topic metric round [group]
  local b=$1 topic=$2 metric=$3 r=$4 group=${5:-} bs="127.0.0.1:${PORT[$1]}" out line
  out="$WORK/$b-$metric-$r.txt"
  KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-consumer-perf-test.sh" \
    --bootstrap-server "$bs" --topic "$topic" --messages "$RECORDS" --timeout 60000 \
    ${group:+--group "$group"} >"$out" 2>&1
  # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
  line=$(grep -A1 '^start.time' "$out" | tail -1)
  if [[ -n $line && $line != start.time* ]] && awk -F', *' -v n="$RECORDS" '{exit !($5 >= n)}' <<<"$line"; then
    V[$b.$metric.$r]=$(awk -F', *' '{printf "%.1f", $4}' <<<"$line")
  else
    say "$b: consumer perf test failed: $(tail -2 "$out")"
  fi
  say "$b round $r $metric: ${V[$b.$metric.$r]:-failed} MB/s"
}

many_read() { # broker round
  local b=$1 r=$2 bs="127.0.0.1:${PORT[$1]}" t0 t1 i pids=() ok=1 per=$((MANY_RECORDS / CONSUMERS))
  t0=$(now)
  for ((i = 0; i < CONSUMERS; i++)); do
    KAFKA_HEAP_OPTS="$TOOL_HEAP" timeout "$TIMEOUT" "$KAFKA_BIN/kafka-consumer-perf-test.sh" \
      --bootstrap-server "$bs" --topic many --messages "$per" --timeout 60000 \
      --group "many-$r" >"$WORK/$b-many-$r-$i.txt" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || ok=0
    grep -q -A1 '^start.time' "$WORK/$b-many-$r-$i.txt" || ok=0
  done
  t1=$(now)
  if ((ok)); then
    V[$b.many.$r]=$(awk -v mb="$MANY_MB" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", mb / (b - a)}')
    # Column 8 of the result line is fetch.time.ms.
    V[$b.many.f.$r]=$(for ((i = 0; i < CONSUMERS; i++)); do
      grep -A1 '^start.time' "$WORK/$b-many-$r-$i.txt" | tail -1
    done | awk -F', *' -v mb="$MANY_MB" '$8 > m {m = $8} END {if (m > 0) printf "%.1f", mb * 1000 / m}')
  else
    say "$b: a consumer of the group failed: $(tail -2 "$WORK/$b-many-$r-0.txt")"
  fi
  say "$b round $r many: ${V[$b.many.$r]:-failed} MB/s wall, ${V[$b.many.f.$r]:-?} MB/s fetching"
}

for b in oxbow kafka; do
  PORT[$b]=$(free_port)
  say "starting $b on 127.0.0.1:${PORT[$b]}"
  if ! start_broker "$b" "$WORK/$b" "${PORT[$b]}"; then
    say "$b did not start: $(tail -5 "$WORK/$b/broker.log")"
    exit 0
  fi
  PID[$b]=$BROKER_PID
  BROKER_PID=""
  bs="127.0.0.1:${PORT[$b]}"
  say "$b: loading ${MB} MB into f1 (1 partition) and f6 (6), ${MANY_MB} MB into many ($MANY_P)"
  load "$b" "$bs" f1 1 "$RECORDS"
  load "$b" "$bs" f6 6 "$RECORDS"
  load "$b" "$bs" many "$MANY_P" "$MANY_RECORDS"
done

for ((r = 1; r <= ROUNDS; r++)); do
  for b in oxbow kafka; do kcat_read "$b" f1 kcat1 "$r" cpu1; done
  for b in oxbow kafka; do kcat_read "$b" f6 kcat6 "$r"; done
  for b in oxbow kafka; do
    kcat_read "$b" f1 kcat1q "$r" "" -X queued.max.messages.kbytes=2097151 -X queued.min.messages=10000000
  done
  for b in oxbow kafka; do perf_read "$b" f1 perf.g "$r" "g-$b-$r"; done
  for b in oxbow kafka; do perf_read "$b" f1 perf.d "$r"; done
  for b in oxbow kafka; do many_read "$b" "$r"; done
done

median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "–"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

row() { # label metric
  local label=$1 m=$2 r ox=() kf=() ratios=()
  for ((r = 1; r <= ROUNDS; r++)); do
    local o=${V[oxbow.$m.$r]:-} k=${V[kafka.$m.$r]:-}
    [[ -n $o ]] && ox+=("$o")
    [[ -n $k ]] && kf+=("$k")
    if num "$o" && num "$k" && awk -v k="$k" 'BEGIN {exit !(k > 0)}'; then
      ratios+=("$(awk -v o="$o" -v k="$k" 'BEGIN {printf "%.2f", o / k}')")
    fi
  done
  local mo mk mr lo hi
  mo=$(printf '%s\n' "${ox[@]}" | grep . | median)
  mk=$(printf '%s\n' "${kf[@]}" | grep . | median)
  mr=$(printf '%s\n' "${ratios[@]}" | grep . | median)
  lo=$(printf '%s\n' "${ratios[@]}" | grep . | sort -g | head -1)
  hi=$(printf '%s\n' "${ratios[@]}" | grep . | sort -g | tail -1)
  printf '| %s | %s | %s | %sx | %s–%s (%d of %d rounds) |\n' "$label" "$mo" "$mk" "$mr" \
    "${lo:-–}" "${hi:-–}" "${#ratios[@]}" "$ROUNDS"
}

table() {
  echo "### Consume: oxbow-broker vs Apache Kafka 4.1 (single node), $ROUNDS alternating rounds"
  echo
  echo "1 KiB records; $MB MB in 1 and in 6 partitions, $MANY_MB MB in $MANY_P partitions;" \
    "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM," \
    "$(date -u +%Y-%m-%d). Kafka heap \`$KAFKA_HEAP\`. Medians; ratio = oxbow/kafka per round."
  echo
  echo "| metric | oxbow | kafka | median ratio | ratio range |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  row "kcat full read, 1 partition (MB/s)" kcat1
  row "kcat full read, 6 partitions (MB/s)" kcat6
  row "kcat full read, 1 partition, prefetch queue holding the read (MB/s)" kcat1q
  row "kafka-consumer-perf-test --group (MB/s)" perf.g
  row "kafka-consumer-perf-test, default group (MB/s)" perf.d
  row "$CONSUMERS consumers × $MANY_P partitions, fetch sessions, wall (MB/s)" many
  row "$CONSUMERS consumers × $MANY_P partitions, fetch sessions, fetching (MB/s)" many.f
  row "broker CPU per MB read, kcat 1 partition (ms/MB, lower is better)" cpu1
  return 0
}

echo
table | tee ${BENCH_OUT:+"$BENCH_OUT"}
exit 0
