#!/usr/bin/env bash
# needs-cluster
# Benchmark (issue 10's figures), not part of the test command: how long the topic operator
# takes from `kubectl apply` to Ready for one KafkaTopic (BENCH_SINGLE times, p50 and max),
# for BENCH_TOPICS KafkaTopics applied at once, and to delete them all (until Kafka lists none
# of them). Against the 3-broker cluster of examples/kafka-cluster.yaml.
#   e2e/k8s/test.sh 'bench-topics'     (with the alternate-plane variables to run beside CI)
# Prints `BENCH name value` lines; BENCH_TOPICS (default 200), BENCH_SINGLE (default 10).
. "$(dirname "$0")/lib.sh"
ns=$NS-bench kc_name=my-cluster
many=${BENCH_TOPICS:-200} single=${BENCH_SINGLE:-10}
kafkacluster_scenario
k apply -f "$REPO/examples/kafka-cluster.yaml" >/dev/null
wait_until 400 "KafkaCluster $kc_name Ready" kc_ready
bs=$(k get kc "$kc_name" -o 'jsonpath={.status.listeners[0].bootstrapServers}')
say "cluster Ready, bootstrap $bs"

manifest() { # name group
  printf -- '---\napiVersion: oxbow.dev/v1alpha1\nkind: KafkaTopic\nmetadata:\n  name: %s\n  labels: {oxbow.dev/cluster: %s, bench: %s}\nspec:\n  partitions: 3\n  replicas: 3\n  config: {retention.ms: "86400000"}\n' \
    "$1" "$kc_name" "$2"
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
listed() { kafka_tool kafka-topics.sh --bootstrap-server "$bs" --list 2>/dev/null | grep -c "^$1" || true; }

# One topic at a time: apply → Ready (kubectl wait watches, so no polling interval is added).
times=()
for i in $(seq 1 "$single"); do
  t0=$(date +%s%N)
  manifest "single-$i" single | k apply -f - >/dev/null
  k wait --for=condition=Ready "kt/single-$i" --timeout=60s >/dev/null || fail "single-$i not Ready in 60 s"
  times+=("$(ms_since "$t0")")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
p50=$(sed -n "$(((single + 1) / 2))p" <<<"$sorted") max=$(tail -1 <<<"$sorted")
echo "BENCH topic_ready_single_p50_ms $p50"
echo "BENCH topic_ready_single_max_ms $max"
say "one topic apply→Ready: p50 ${p50} ms, max ${max} ms (${times[*]})"

# Many at once. kubectl itself applies a file's objects one by one (a GET and a POST each,
# about 8 a second here), so the figures separate its time from the operator's: per topic, Ready's
# lastTransitionTime minus the resource's creationTimestamp (whole seconds, as the API
# server stores them).
# Eight kubectl processes apply an eighth each, so the resources arrive in a burst as from a
# GitOps tool rather than at one kubectl's pace; readiness is counted from one list per poll
# (`kubectl wait` on 200 objects waits for them one after another).
dir=$(mktemp -d)
for i in $(seq 1 "$many"); do manifest "many-$i" many >>"$dir/part-$((i % 8))"; done
t0=$(date +%s%N)
for f in "$dir"/part-*; do k apply -f "$f" >/dev/null & done
wait
apply_ms=$(ms_since "$t0")
all_ready() {
  [[ $(k get kt -l bench=many -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True) == "$many" ]]
}
wait_until 600 "all $many KafkaTopics Ready" all_ready
ready_ms=$(ms_since "$t0")
n=$(listed many-)
((n == many)) || fail "Kafka lists $n of the $many topics"
read -r lag_p50 lag_max first_created last_ready < <(k get kt -l bench=many -o json | python3 -c '
import json, sys, datetime, re
def t(s):  # RFC 3339, with or without a fraction (the API server drops it, the operator keeps it)
    s = re.sub(r"(\.\d{1,6})\d*", r"\1", s.replace("Z", "+00:00"))
    return datetime.datetime.fromisoformat(s).timestamp()
items = json.load(sys.stdin)["items"]
lags, created, ready = [], [], []
for i in items:
    c = t(i["metadata"]["creationTimestamp"])
    r = [x for x in i["status"]["conditions"] if x["type"] == "Ready"][0]
    created.append(c); ready.append(t(r["lastTransitionTime"])); lags.append(ready[-1] - c)
lags.sort()
print(round(lags[len(lags) // 2], 1), round(lags[-1], 1), int(min(created)), int(max(ready)))')
echo "BENCH topics_kubectl_apply_${many}_ms $apply_ms"
echo "BENCH topics_ready_${many}_ms $ready_ms"
echo "BENCH topics_operator_lag_${many}_p50_s $lag_p50"
echo "BENCH topics_operator_lag_${many}_max_s $lag_max"
echo "BENCH topics_first_created_to_last_ready_${many}_s $((last_ready - first_created))"
say "$many topics: kubectl apply ${apply_ms} ms, all Ready ${ready_ms} ms after it started;" \
  "creation→Ready per topic p50 ${lag_p50} s, max ${lag_max} s; Kafka lists all $n"

t0=$(date +%s%N)
k delete kt -l bench=many --wait=false >/dev/null || fail "kubectl delete failed"
delete_ms=$(ms_since "$t0")
none_left() { [[ -z $(k get kt -l bench=many -o name 2>/dev/null) ]]; }
wait_until 600 "every KafkaTopic of the $many gone" none_left
deleted_ms=$(ms_since "$t0")
gone() { [[ $(listed many-) == 0 ]]; }
wait_until 120 "Kafka lists none of the $many topics" gone
gone_ms=$(ms_since "$t0")
echo "BENCH topics_kubectl_delete_${many}_ms $delete_ms"
echo "BENCH topics_deleted_${many}_ms $deleted_ms"
echo "BENCH topics_gone_from_kafka_${many}_ms $gone_ms"
say "$many topics delete: kubectl delete ${delete_ms} ms, KafkaTopics gone ${deleted_ms} ms," \
  "Kafka lists none ${gone_ms} ms"
rm -rf "$dir"
