#!/usr/bin/env bash
# needs-cluster
# Rack awareness: a KafkaCluster with spec.rack.topologyKey=topology.kubernetes.io/zone on a node
# without that label → the brokers' pods run but wait (not Ready) and the KafkaCluster has a
# Warning RackLabelMissing naming the node → label the node zone-a → the operator annotates the
# pods oxbow.dev/rack=zone-a, the downward-API file follows, the brokers start → Ready, and
# Kafka 4.1's kafka-broker-api-versions.sh lists every broker with rack zone-a. Also: the
# operator may get Nodes, and specs with an empty topologyKey or broker.rack in spec.config are
# refused by kubectl apply; a replaced pod gets its rack again.
. "$(dirname "$0")/lib.sh"
ns=$NS-rack kc_name=racked label=topology.kubernetes.io/zone
nodes=$(kc get nodes -o name)
unlabel() { for n in $nodes; do kc label "$n" "$label-" >/dev/null 2>&1 || true; done; }
scenario_cleanup() { unlabel; }
kafkacluster_scenario
unlabel
[[ $(kc auth can-i get nodes --as=system:serviceaccount:oxbow-system:oxbow-operator 2>/dev/null) == yes ]] ||
  fail "the chart's RBAC does not let the operator get nodes"

kc_refused "$ns" "spec.rack.topologyKey" "  replicas: 1
  rack: {topologyKey: ''}"
kc_refused "$ns" "spec.config" "  replicas: 1
  rack: {topologyKey: $label}
  config: {broker.rack: zone-x}"

t0=$SECONDS
# Persistent claims: the pod replaced below is a voter, and one coming back without its metadata
# log (an emptyDir) is a quorum problem of its own, not what this scenario is about.
printf 'apiVersion: oxbow.dev/v1alpha1\nkind: KafkaCluster\nmetadata: {name: %s}\nspec:\n  replicas: 3\n  rack: {topologyKey: %s}\n  storage: {type: persistent-claim, size: 1Gi, deleteClaim: true}\n' \
  "$kc_name" "$label" | k apply -f - >/dev/null
missing() { [[ $(jp '{.status.conditions[?(@.reason=="RackLabelMissing")].message}') == *"has no label $label"* ]]; }
wait_until 60 "Warning RackLabelMissing on $kc_name" missing
say "unlabelled node: $(jp '{.status.conditions[?(@.reason=="RackLabelMissing")].message}')"
running() { # every broker container started (the broker process runs and waits)
  [[ $(k get pods -l "oxbow.dev/cluster=$kc_name" -o jsonpath='{range .items[*]}{.status.containerStatuses[0].state.running.startedAt}{" "}{end}' | wc -w) == 3 ]]
}
wait_until 60 "3 broker containers running" running
# They wait for their rack rather than start without one: not Ready while the label is missing.
for _ in 1 2 3 4 5 6; do
  ready=$(jp '{.status.readyBrokers}')
  [[ ${ready:-0} == 0 ]] || fail "$ready brokers became ready before their node had $label"
  sleep 0.5
done
[[ -z $(k get pods -l "oxbow.dev/cluster=$kc_name" -o jsonpath='{.items[*].metadata.annotations.oxbow\.dev/rack}') ]] ||
  fail "a pod has a rack while its node has none"
if [[ $OXBOW_K8S_PLATFORM != local ]]; then # the pod runner serves no kubectl logs
  k logs "$kc_name-0" | grep -q "waiting for the pod annotation" || fail "broker 0 does not log what it waits for"
fi

for n in $nodes; do kc label "$n" "$label=zone-a" --overwrite >/dev/null; done
t1=$SECONDS
wait_until 120 "KafkaCluster $kc_name Ready once the node is labelled" kc_ready
say "Ready $((SECONDS - t1)) s after labelling the node ($((SECONDS - t0)) s after kubectl apply)"
annotations=$(k get pods -l "oxbow.dev/cluster=$kc_name" -o jsonpath='{.items[*].metadata.annotations.oxbow\.dev/rack}')
[[ $annotations == "zone-a zone-a zone-a" ]] || fail "pods' oxbow.dev/rack: '$annotations'"
! missing || fail "Warning RackLabelMissing still there: $(jp '{.status.conditions}')"
events=$(k get events --field-selector "involvedObject.name=$kc_name" -o jsonpath='{.items[*].reason}')
[[ $events == *RackAssigned* ]] || fail "no RackAssigned Event on the KafkaCluster: '$events'"

# What clients see: each broker's rack in Metadata, through Kafka's own tool.
bootstrap=$(jp '{.status.listeners[0].bootstrapServers}')
versions=$(kafka_tool kafka-broker-api-versions.sh --bootstrap-server "$bootstrap" 2>/dev/null | grep -E '^[^ ]+ \(id: ') ||
  fail "kafka-broker-api-versions.sh through $bootstrap"
for id in 0 1 2; do
  grep -q "(id: $id rack: zone-a " <<<"$versions" ||
    fail "broker $id does not have rack zone-a: $(grep -o '(id: [^)]*)' <<<"$versions" | tr '\n' ' ')"
done
say "kafka-broker-api-versions.sh: $(grep -o '(id: [^)]*)' <<<"$versions" | sort | tr '\n' ' ')"

# A replacement pod starts on a labelled node: it gets the annotation anew (the template has
# none) and its broker registers with the rack again.
pod=$kc_name-1
uid=$(k get pod "$pod" -o jsonpath='{.metadata.uid}')
k delete pod "$pod" --wait=false >/dev/null
replaced() {
  [[ $(k get pod "$pod" -o jsonpath='{.metadata.uid}') != "$uid" &&
    $(k get pod "$pod" -o jsonpath='{.metadata.annotations.oxbow\.dev/rack}') == zone-a &&
    $(k get pod "$pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
wait_until 120 "pod $pod replaced, annotated with zone-a and Ready" replaced
rack_of_1() {
  kafka_tool kafka-broker-api-versions.sh --bootstrap-server "$bootstrap" 2>/dev/null | grep -q "(id: 1 rack: zone-a "
}
wait_until 60 "the replaced broker 1 listed with rack zone-a" rack_of_1
say "replaced pod $pod: annotated zone-a, broker 1 registered with rack zone-a"
say "PASS"
