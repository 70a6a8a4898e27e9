#!/usr/bin/env bash
# needs-cluster
# The operator's journey: helm install → kubectl apply examples/kafka-cluster.yaml (3 brokers)
# → Ready with its bootstrap address in the status → produce and consume through that address
# with Apache Kafka's console tools → bad specs refused by `kubectl apply` naming the field →
# the pause annotation stops reconciling (and removing it resumes) → delete → everything the
# operator created is gone.
. "$(dirname "$0")/lib.sh"
ns=$NS-kc kc_name=my-cluster
kafkacluster_scenario

t0=$SECONDS
k apply -f "$REPO/examples/kafka-cluster.yaml" >/dev/null
wait_until 240 "KafkaCluster $kc_name Ready" kc_ready
say "Ready $((SECONDS - t0)) s after kubectl apply: $(k get kc "$kc_name" --no-headers)"
bootstrap=$(jp '{.status.listeners[0].bootstrapServers}')
[[ $bootstrap == "$kc_name-plain-bootstrap.$ns.svc:9092" ]] || fail "bootstrap address in status: '$bootstrap'"
cluster_id=$(jp '{.status.clusterId}') controller=$(jp '{.status.controllerId}')
[[ -n $cluster_id && $controller =~ ^[012]$ ]] || fail "status lacks cluster id or controller: '$cluster_id' '$controller'"
[[ $(jp '{.status.observedGeneration}') == $(jp '{.metadata.generation}') ]] || fail "observedGeneration behind"
[[ $(jp '{.status.readyBrokers}') == 3 ]] || fail "readyBrokers: $(jp '{.status.readyBrokers}')"
[[ $(k get sts "$kc_name" -o jsonpath='{.spec.updateStrategy.type}') == OnDelete ]] || fail "StatefulSet not OnDelete"
[[ $(k get pdb "$kc_name" -o jsonpath='{.spec.maxUnavailable}') == 1 ]] || fail "PodDisruptionBudget not maxUnavailable 1"
events=$(k get events --field-selector "involvedObject.name=$kc_name" -o jsonpath='{.items[*].reason}')
[[ $events == *Applied* && $events == *ClusterReady* ]] || fail "Events on the KafkaCluster: '$events'"

# Produce and consume through the bootstrap Service with Kafka's own tools.
topic=orders
wait_until 60 "kafka-topics.sh --create $topic (RF 3) through $bootstrap" \
  kafka_tool kafka-topics.sh --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$topic" \
  --partitions 3 --replication-factor 3
seq 1 100 | sed 's/^/record-/' |
  kafka_tool kafka-console-producer.sh --bootstrap-server "$bootstrap" --topic "$topic" \
    --producer-property acks=all >/dev/null || fail "kafka-console-producer.sh to $bootstrap"
got=$(kafka_tool kafka-console-consumer.sh --bootstrap-server "$bootstrap" --topic "$topic" \
  --from-beginning --max-messages 100 --timeout-ms 60000 2>/dev/null | sort -u | wc -l)
[[ $got == 100 ]] || fail "consumed $got distinct records of 100 through $bootstrap"
say "produced and consumed 100 records through $bootstrap"
# Each broker advertises its own ClusterIP Service (named after its pod), whose address
# outlives the pod; the Service routes to that broker.
advertised=$(kafka_probe "$bootstrap") || fail "kafka_probe $bootstrap: $advertised"
python3 - "$advertised" "$kc_name" "$ns" <<'PY' || fail "advertised addresses: $advertised"
import json, sys
view, name, ns = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
hosts = sorted((b[0], b[1]) for b in view["brokers"])
assert hosts == [(i, f"{name}-{i}.{ns}.svc.cluster.local") for i in range(3)], hosts
PY
for i in 0 1 2; do
  [[ $(k get svc "$kc_name-$i" -o jsonpath='{.spec.type} {.spec.selector.statefulset\.kubernetes\.io/pod-name}') == "ClusterIP $kc_name-$i" ]] ||
    fail "Service $kc_name-$i: $(k get svc "$kc_name-$i" -o yaml)"
done
say "brokers advertise their Services: $(python3 -c 'import json,sys; print(" ".join(b[1] for b in json.loads(sys.argv[1])["brokers"]))' "$advertised")"

# Prometheus metrics: every broker on port 9404 of its pod, the operator on 8080 of its own.
scrape() { curl -sf --max-time 10 "http://$1/metrics"; }
sample() { awk -v n="$1" '$1 == n { print int($2) }'; }
messages_in=0 active=0
for i in 0 1 2; do
  ip=$(k get pod "$kc_name-$i" -o jsonpath='{.status.podIP}')
  m=$(scrape "$ip:9404") || fail "no metrics from broker pod $kc_name-$i at $ip:9404"
  messages_in=$((messages_in + $(sample kafka_server_brokertopicmetrics_messagesin_total <<<"$m")))
  active=$((active + $(sample kafka_controller_kafkacontroller_activecontrollercount <<<"$m")))
done
((messages_in >= 100)) || fail "brokers counted $messages_in records in, 100 were produced"
((active == 1)) || fail "$active brokers report themselves the active controller"
op_ip=$(kc -n oxbow-system get pod -l app.kubernetes.io/name=oxbow-operator -o jsonpath='{.items[0].status.podIP}')
om=$(scrape "$op_ip:8080") || fail "no metrics from the operator pod at $op_ip:8080"
reconciled=$(sample "oxbow_reconciliations_successful_total{kind=\"KafkaCluster\",namespace=\"$ns\"}" <<<"$om")
((${reconciled:-0} >= 1)) || fail "the operator's metrics count no successful KafkaCluster reconciliation: $om"
say "metrics: $messages_in records in over 3 brokers, 1 active controller, $reconciled reconciliations"

# Bad specs are refused by the API server, naming the field.
kc_refused "$ns" "spec.config" "  replicas: 3
  config: {node.id: 7}"
kc_refused "$ns" "spec.controllers" "  replicas: 3
  controllers: 5"
kc_refused "$ns" "spec.replicas" "  replicas: 0"
kc_refused "$ns" "spec.listeners" "  replicas: 1
  listeners: [{name: plain, port: 9092, type: public}]"
kc_refused "$ns" "spec.storage" "  replicas: 1
  storage: {type: persistent-claim}"

# Paused: the operator still reports (observedGeneration follows) but applies nothing.
k annotate kc "$kc_name" oxbow.dev/pause-reconciliation=true --overwrite >/dev/null
paused() { [[ $(jp '{.status.conditions[?(@.type=="ReconciliationPaused")].status}') == True ]]; }
wait_until 30 "ReconciliationPaused condition" paused
k patch kc "$kc_name" --type merge -p '{"spec":{"config":{"num.io.threads":9}}}' >/dev/null
gen=$(jp '{.metadata.generation}')
seen() { [[ $(jp '{.status.observedGeneration}') == "$gen" ]]; }
wait_until 30 "the paused operator observing generation $gen" seen
has_setting() { k get cm "$kc_name-config" -o jsonpath='{.data.server\.properties}' | grep -qx 'num.io.threads=9'; }
! has_setting || fail "a paused KafkaCluster's config reached its ConfigMap"
k annotate kc "$kc_name" oxbow.dev/pause-reconciliation- >/dev/null
wait_until 30 "the config applied once unpaused" has_setting
unpaused() { ! paused && kc_ready; }
wait_until 60 "ReconciliationPaused gone and Ready again" unpaused

# Delete: everything it created goes with it (owner references, no finalizer).
sel="oxbow.dev/cluster=$kc_name"
[[ -n $(k get sts,svc,cm,pdb,pods -l "$sel" -o name) ]] || fail "found none of the cluster's objects by $sel"
k delete kc "$kc_name" --wait=true --timeout=60s >/dev/null
gone() { [[ -z $(k get sts,svc,cm,pdb,pods -l "$sel" -o name 2>/dev/null) ]]; }
wait_until 120 "the cluster's StatefulSet, Services, ConfigMap, PDB and pods gone" gone
say "PASS"
