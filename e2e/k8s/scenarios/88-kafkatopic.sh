#!/usr/bin/env bash
# needs-cluster
# The KafkaTopic journey (issue 10), against a 3-broker KafkaCluster made by the operator:
# apply → the topic exists as asked (kafka-topics.sh --describe) → raise partitions and change
# retention.ms in the manifest → visible in Kafka → lower partitions → refused with a
# condition, topic untouched → raise replicas 1→3 while kafka-verifiable-producer.sh writes
# with acks=all → reassigned, every acknowledged record read back → partitions raised and a
# config altered with Kafka's CLI → reported / brought back → an invalid value and a too-high
# replication factor refused → a Kafka-only name via spec.topicName → two KafkaTopics for one
# topic: the newer gets ResourceConflict → delete → topic gone; managed=false keeps it; a
# KafkaTopic whose cluster is gone is deleted without hanging.
. "$(dirname "$0")/lib.sh"
ns=$NS-kt kc_name=my-cluster
kafkacluster_scenario
# On a failure, show what the operator and Kafka saw before the namespace goes.
fail() {
  say "FAIL: $*"
  kc -n "$ns" get kt -o yaml 2>&1 | sed -n '/^  status:/,/^- apiVersion/p' | head -60 >&2
  [[ -n ${bs:-} ]] && kafka_tool kafka-topics.sh --bootstrap-server "$bs" --describe 2>&1 | head -30 >&2
  [[ -n ${bs:-} ]] && kafka_tool kafka-reassign-partitions.sh --bootstrap-server "$bs" --list 2>&1 | head -20 >&2
  kc -n oxbow-system logs deploy/oxbow-operator --tail=40 2>&1 | cut -c1-400 >&2
  exit 1
}
k apply -f "$REPO/examples/kafka-cluster.yaml" >/dev/null
wait_until 400 "KafkaCluster $kc_name Ready" kc_ready
bs=$(k get kc "$kc_name" -o 'jsonpath={.status.listeners[0].bootstrapServers}')
say "cluster Ready, bootstrap $bs"

topic() { # name partitions replicas config-yaml [topicName] [annotations-yaml]
  printf 'apiVersion: oxbow.dev/v1alpha1\nkind: KafkaTopic\nmetadata:\n  name: %s\n  labels: {oxbow.dev/cluster: %s}\n  annotations: {%s}\nspec:\n  partitions: %s\n  replicas: %s\n  config: {%s}\n%s' \
    "$1" "$kc_name" "${6:-}" "$2" "$3" "$4" "${5:+  topicName: $5
}" | k apply -f - >/dev/null
}
cond() { k get kt "$1" -o "jsonpath={.status.conditions[?(@.type==\"Ready\")].$2}"; }
ready_at_gen() { # kt: Ready=True for the current generation
  [[ $(cond "$1" status) == True && $(k get kt "$1" -o 'jsonpath={.status.observedGeneration}') == $(k get kt "$1" -o 'jsonpath={.metadata.generation}') ]]
}
refused_with() { [[ $(cond "$1" status) == False && $(cond "$1" reason) == "$2" ]]; }
describe() { kafka_tool kafka-topics.sh --bootstrap-server "$bs" --describe --topic "$1" 2>/dev/null; }
summary() { describe "$1" | grep -m1 'PartitionCount'; }
has() { summary "$1" | grep -q -- "$2"; }
touch_kt() { k annotate kt "$1" "oxbow.dev/resync=$RANDOM$RANDOM" --overwrite >/dev/null; }

# 1. Apply → Ready, the topic as asked (min.insync.replicas 1: the cluster's default is 2, and
#    the topic starts with one replica).
t0=$(date +%s%N)
topic orders 3 1 "retention.ms: 100000, min.insync.replicas: 1"
wait_until 60 "KafkaTopic orders Ready" ready_at_gen orders
say "orders Ready $((($(date +%s%N) - t0) / 1000000)) ms after kubectl apply"
has orders "PartitionCount: 3" && has orders "ReplicationFactor: 1" && has orders "retention.ms=100000" ||
  fail "topic not as asked: $(summary orders)"
[[ -n $(k get kt orders -o 'jsonpath={.status.topicId}') ]] || fail "status.topicId empty"
describe orders | grep -q "TopicId: $(k get kt orders -o 'jsonpath={.status.topicId}')" ||
  fail "status.topicId is not Kafka's: $(summary orders)"

# 2. Raise partitions, change retention.ms.
topic orders 5 1 "retention.ms: 200000, min.insync.replicas: 1"
five() { has orders "PartitionCount: 5" && has orders "retention.ms=200000"; }
wait_until 60 "5 partitions and retention.ms=200000 in Kafka" five
wait_until 30 "orders Ready again" ready_at_gen orders

# 3. Lower partitions: refused, topic untouched, the rest still reconciled.
topic orders 2 1 "retention.ms: 300000, min.insync.replicas: 1"
wait_until 30 "PartitionDecreaseNotSupported" refused_with orders PartitionDecreaseNotSupported
wait_until 30 "retention.ms=300000 applied despite the refusal" has orders "retention.ms=300000"
has orders "PartitionCount: 5" || fail "a refused decrease touched the topic: $(summary orders)"
say "refused: $(cond orders message)"
topic orders 5 1 "retention.ms: 300000, min.insync.replicas: 1"
wait_until 30 "orders Ready after restoring spec.partitions" ready_at_gen orders

# 4. Replicas 1→3 while a producer writes with acks=all; every acknowledged record comes back.
kafka_tool kafka-verifiable-producer.sh --bootstrap-server "$bs" --topic orders --acks -1 \
  --max-messages 3000 --throughput 300 --value-prefix 7 >"$work/produced" 2>"$work/producer.err" &
producer=$!
acking() { grep -q '"name":"producer_send_success"' "$work/produced"; }
wait_until 60 "the producer's first acknowledgement" acking
topic orders 5 3 "retention.ms: 300000, min.insync.replicas: 1"
rf3() { has orders "ReplicationFactor: 3" && [[ -z $(k get kt orders -o 'jsonpath={.status.replicasChange}') ]] && ready_at_gen orders; }
wait_until 180 "replication factor 3 and no replicasChange in status" rf3
isr3() { ! describe orders | grep 'Partition:' | grep -v 'Isr: [0-9],[0-9],[0-9]' | grep -q .; }
wait_until 60 "every partition with 3 in-sync replicas" isr3
wait "$producer" || fail "kafka-verifiable-producer.sh failed: $(tail -3 "$work/producer.err")"
acked=$(grep -c '"name":"producer_send_success"' "$work/produced" || true)
failed=$(grep -c '"name":"producer_send_error"' "$work/produced" || true)
kafka_tool kafka-console-consumer.sh --bootstrap-server "$bs" --topic orders --from-beginning \
  --timeout-ms 20000 2>/dev/null | sort -u >"$work/consumed"
missing=$(grep '"name":"producer_send_success"' "$work/produced" |
  python3 -c 'import json,sys; [print(json.loads(l)["value"]) for l in sys.stdin]' | sort -u |
  comm -23 - "$work/consumed" | wc -l)
((missing == 0)) || fail "$missing of $acked acknowledged records not read back after the reassignment"
say "replicas 1→3 while producing: $acked acknowledged, $failed failed sends, 0 lost"
((acked > 0)) || fail "the producer had nothing acknowledged"

# 5. Changed directly in Kafka: partitions raised (reported), a config altered (brought back).
kafka_tool kafka-topics.sh --bootstrap-server "$bs" --alter --topic orders --partitions 7 >/dev/null 2>&1 ||
  fail "kafka-topics.sh --alter --partitions 7"
kafka_tool kafka-configs.sh --bootstrap-server "$bs" --alter --entity-type topics --entity-name orders \
  --add-config retention.ms=123456789 >/dev/null 2>&1 || fail "kafka-configs.sh --alter"
touch_kt orders
wait_until 30 "a partition raise made in Kafka reported" refused_with orders PartitionDecreaseNotSupported
wait_until 30 "retention.ms brought back to the manifest" has orders "retention.ms=300000"
[[ $(cond orders message) == *"has 7 partitions"* ]] || fail "condition does not name the 7 partitions: $(cond orders message)"
topic orders 7 3 "retention.ms: 300000, min.insync.replicas: 1"
wait_until 30 "orders Ready with 7 partitions in the manifest" ready_at_gen orders

# 6. Refused: an invalid value (Kafka's own reason), a replication factor above the brokers.
topic orders 7 3 "retention.ms: not-a-number, min.insync.replicas: 1"
wait_until 30 "an invalid config value refused" refused_with orders InvalidConfig
has orders "retention.ms=300000" || fail "an invalid value touched the topic: $(summary orders)"
topic orders 7 5 "retention.ms: 300000, min.insync.replicas: 1"
wait_until 30 "replicas above the broker count refused" refused_with orders ReplicationFactorTooHigh
has orders "ReplicationFactor: 3" || fail "a refused replication factor touched the topic"
topic orders 7 3 "retention.ms: 300000, min.insync.replicas: 1"
wait_until 30 "orders Ready again" ready_at_gen orders

# 7. A Kafka-only name; two KafkaTopics for one topic.
topic hello 1 1 "" hello_kafka
wait_until 60 "KafkaTopic hello (hello_kafka) Ready" ready_at_gen hello
has hello_kafka "PartitionCount: 1" || fail "topic hello_kafka missing"
topic orders-copy 7 3 "" orders
wait_until 30 "the newer KafkaTopic for orders in conflict" refused_with orders-copy ResourceConflict
ready_at_gen orders || fail "the older KafkaTopic lost its topic to the newer"

# 8. Deletion: the newer duplicate goes without the topic; the owner takes the topic with it;
#    managed=false keeps it.
k delete kt orders-copy --timeout=60s >/dev/null || fail "deleting orders-copy"
has orders "PartitionCount: 7" || fail "deleting the conflicting KafkaTopic deleted the topic"
k delete kt orders --timeout=60s >/dev/null || fail "deleting KafkaTopic orders hung"
gone() { ! kafka_tool kafka-topics.sh --bootstrap-server "$bs" --list 2>/dev/null | grep -qx orders; }
wait_until 60 "topic orders deleted with its KafkaTopic" gone
topic keep 1 1 "" "" "oxbow.dev/managed: \"false\""
wait_until 60 "KafkaTopic keep Ready" ready_at_gen keep
k delete kt keep --timeout=60s >/dev/null || fail "deleting KafkaTopic keep"
has keep "PartitionCount: 1" || fail "an unmanaged KafkaTopic's topic was deleted"

# 9. The cluster goes first: deleting its KafkaTopic does not hang.
k delete kc "$kc_name" --wait=true --timeout=60s >/dev/null
k delete kt hello --timeout=30s >/dev/null || fail "a KafkaTopic whose cluster is gone hangs on deletion"
say "PASS"
