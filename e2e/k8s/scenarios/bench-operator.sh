#!/usr/bin/env bash
# needs-cluster
# Benchmark (issue 9's figures), not part of the test command: what the operator costs a user
# of a 3-broker KafkaCluster on persistent claims.
#   - apply → Ready;
#   - a full roll (a config that needs a restart): from the spec change until every pod runs
#     the new config, Ready, every ISR full;
#   - scale 3 → 5: from the spec change until the replicas are balanced over 0..4;
#   - a producer at a fixed rate (kafka-producer-perf-test.sh, acks=all, RF 3,
#     min.insync.replicas 2, the Java producer's default retries) through the roll against
#     the same producer on the quiet cluster just before: its failed sends (record-error-total,
#     target 0) and p99 latency.
#   e2e/k8s/test.sh 'bench-operator'     (OXBOW_K8S_KEEP=1 to look around afterwards)
# Prints `BENCH name value` lines. BENCH_RATE (records/s, default 500), BENCH_QUIET_SECONDS
# (default 30), BENCH_ROLL_SECONDS (how long the producer runs from the roll's start: long
# enough to cover it, default 90).
. "$(dirname "$0")/lib.sh"
ns=$NS-bench-op kc_name=bench topic=bench
rate=${BENCH_RATE:-500} quiet_s=${BENCH_QUIET_SECONDS:-30} roll_s=${BENCH_ROLL_SECONDS:-90}
producer_pid=""
kafkacluster_scenario
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
bench() { echo "BENCH $1 $2"; say "$1 = $2"; }

t0=$(date +%s%N)
k apply -f - >/dev/null <<EOF
apiVersion: oxbow.dev/v1alpha1
kind: KafkaCluster
metadata: {name: $kc_name}
spec:
  replicas: 3
  storage: {type: persistent-claim, size: 1Gi, deleteClaim: true}
EOF
wait_until 300 "KafkaCluster $kc_name Ready" kc_ready
bench apply_to_ready_ms "$(ms_since "$t0")"
bootstrap=$(jp '{.status.listeners[0].bootstrapServers}')
wait_until 60 "kafka-topics.sh --create $topic" \
  kafka_tool kafka-topics.sh --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$topic" \
  --partitions 6 --replication-factor 3 --config min.insync.replicas=2

# perf SECONDS OUT: the fixed-rate producer in the background (its own process group).
perf() {
  setsid bash -c "$(declare -f kafka_tool with_cluster_dns kc); NS='$NS'; kafka_tool \"\$@\" 2>&1 |
    while IFS= read -r l; do echo \"\$(date +%T.%3N) \$l\"; done" _ \
    kafka-producer-perf-test.sh --topic "$topic" --num-records $((rate * $1)) --throughput "$rate" \
    --record-size 100 --print-metrics --producer-props bootstrap.servers="$bootstrap" acks=all \
    linger.ms=1 retries=2147483647 delivery.timeout.ms=120000 >"$2" &
  producer_pid=$!
}
# p99 (ms) and failed sends of a finished run.
p99_of() { grep -oE '[0-9.]+ ms 99th' "$1" | tail -1 | cut -d' ' -f1; }
errors_of() { awk '/producer-metrics:record-error-total/ {print int($NF)}' "$1" | tail -1; }
finished() { ! kill -0 "$producer_pid" 2>/dev/null; }

perf "$quiet_s" "$work/quiet.out"
wait_until $((quiet_s + 60)) "the quiet run" finished
producer_pid=""
quiet_p99=$(p99_of "$work/quiet.out") quiet_err=$(errors_of "$work/quiet.out")
[[ -n $quiet_p99 && -n $quiet_err ]] || { cat "$work/quiet.out" >&2; fail "no p99 or error count from the quiet run"; }
bench quiet_p99_ms "$quiet_p99"
bench quiet_failed_sends "$quiet_err"

perf "$roll_s" "$work/roll.out"
sleep 5
t0=$(date +%s%N)
say "roll starts at $(date +%T.%3N)"
k patch kc "$kc_name" --type merge -p '{"spec":{"config":{"num.partitions":2}}}' >/dev/null
rolling() { [[ -n $(jp '{.status.rollingUpdate.startedAt}') ]]; }
wait_until 30 "status.rollingUpdate" rolling
rolled() {
  [[ -z $(jp '{.status.rollingUpdate}') ]] && kc_ready &&
    [[ $(k get events --field-selector "involvedObject.name=$kc_name,reason=RollingUpdateDone" -o name) ]]
}
wait_until 600 "the roll to finish" rolled
bench roll_ms "$(ms_since "$t0")"
kc -n oxbow-system logs deploy/oxbow-operator 2>/dev/null | grep -iE 'restart' | cut -c12-23,40-200 | sed 's/^/[operator] /' >&2
wait_until $((roll_s + 120)) "the producer through the roll" finished
producer_pid=""
roll_p99=$(p99_of "$work/roll.out") roll_err=$(errors_of "$work/roll.out")
[[ -n $roll_p99 && -n $roll_err ]] || { cat "$work/roll.out" >&2; fail "no p99 or error count from the run through the roll"; }
# The producer's 5-second windows whose slowest send took over a second: when the roll hurt.
awk '/records sent/ && $(NF-3) + 0 > 1000' "$work/roll.out" | sed 's/^/[slow window] /' >&2
bench roll_p99_ms "$roll_p99"
bench roll_failed_sends "$roll_err"
bench roll_p99_vs_quiet "$(python3 -c "print(round($roll_p99 / max($quiet_p99, 0.001), 2))")"

t0=$(date +%s%N)
k patch kc "$kc_name" --type merge -p '{"spec":{"replicas":5}}' >/dev/null
balanced_5() {
  kc_ready && [[ -z $(jp '{.status.rebalance}') ]] && [[ $(jp '{.status.balancedBrokers}' | tr -d '[] ') == 0,1,2,3,4 ]]
}
wait_until 400 "5 brokers, replicas balanced over 0..4" balanced_5
bench scale_up_to_balanced_ms "$(ms_since "$t0")"
((roll_err == 0)) || fail "$roll_err sends failed during the roll"
say "PASS"
