#!/usr/bin/env bash
# needs-cluster
# An external listener (`type: nodeport`): a client outside the Kubernetes cluster, with no
# cluster DNS, bootstraps at the node address and node port the KafkaCluster's status gives,
# and every broker answers at an address of its own: its node's address with the node port of
# its own Service `<pod>-ext` (the operator writes it onto the pod, the broker waits for it at
# start; Event ExternalAddressAssigned). Apache Kafka's console tools produce and consume 100
# records through it, byte for byte; then a broker pod is deleted and comes back at the same
# address, and the tools work again.
. "$(dirname "$0")/lib.sh"
if [[ $OXBOW_K8S_PLATFORM == local ]]; then skip "the pod runner routes no node ports"; fi
ns=$NS-ext kc_name=outside
kafkacluster_scenario
# An outside client: the host's Kafka tools with the host's own name resolution (no cluster
# DNS), or, on kind, a pod's (any address it advertises must be an IP or a name it resolves).
outside_tool() {
  local tool=$1; shift
  if [[ $OXBOW_K8S_PLATFORM == kind ]]; then kafka_tool "$tool" "$@"
  else "${OXBOW_KAFKA_HOME:-${OXBOW_CACHE:-$HOME/.cache/oxbow}/kafka-4.1.0}/bin/$tool" "$@"; fi
}

t0=$SECONDS
k apply -f - >/dev/null <<YAML
apiVersion: oxbow.dev/v1alpha1
kind: KafkaCluster
metadata: {name: $kc_name}
spec:
  replicas: 3
  listeners:
    - {name: plain, port: 9092, type: internal}
    - {name: ext, port: 9094, type: nodeport}
YAML
wait_until 240 "KafkaCluster $kc_name Ready" kc_ready
external=$(jp '{.status.listeners[?(@.name=="ext")].bootstrapServers}')
say "Ready $((SECONDS - t0)) s after kubectl apply; ext bootstrap: $external"
[[ $external =~ ^[0-9a-f.:]+:[0-9]+$ ]] || fail "status.listeners ext bootstrapServers: '$external'"
[[ -z $(jp '{.status.conditions[?(@.reason=="ExternalAddressPending")].status}') ]] ||
  fail "Warning: $(jp '{.status.conditions[?(@.reason=="ExternalAddressPending")].message}')"
events=$(k get events --field-selector "involvedObject.name=$kc_name" -o jsonpath='{.items[*].reason}')
[[ $events == *ExternalAddressAssigned* ]] || fail "Events: $events"

# Each broker at its own node port (its Service <pod>-ext), the node's address as host.
advertised() { # -> "id host:port" lines, as the outside client is told
  outside_tool kafka-broker-api-versions.sh --bootstrap-server "$external" 2>/dev/null |
    sed -nE 's/^([^ ]+):([0-9]+) \(id: ([0-9]+) rack.*/\3 \1:\2/p' | sort
}
seen=$(advertised)
say "brokers as the outside client sees them: $(tr '\n' ' ' <<<"$seen")"
for i in 0 1 2; do
  port=$(k get svc "$kc_name-$i-ext" -o jsonpath='{.spec.type} {.spec.ports[0].nodePort}')
  [[ $port == NodePort\ * ]] || fail "Service $kc_name-$i-ext: $port"
  grep -qxE "$i [0-9a-f.:]+:${port#NodePort }" <<<"$seen" || fail "broker $i not at its node port ${port#NodePort }: $seen"
done

topic=outside
outside_tool kafka-topics.sh --bootstrap-server "$external" --create --if-not-exists --topic "$topic" \
  --partitions 3 --replication-factor 3 >/dev/null || fail "kafka-topics.sh --create through $external"
roundtrip() { # label
  seq 1 100 | sed "s/^/$1-/" >"$work/sent-$1"
  outside_tool kafka-console-producer.sh --bootstrap-server "$external" --topic "$topic" \
    --producer-property acks=all <"$work/sent-$1" >/dev/null || fail "kafka-console-producer.sh through $external"
  outside_tool kafka-console-consumer.sh --bootstrap-server "$external" --topic "$topic" \
    --from-beginning --timeout-ms 30000 2>/dev/null | grep "^$1-" | sort >"$work/got-$1" || true
  cmp -s <(sort "$work/sent-$1") "$work/got-$1" ||
    fail "$1: consumed $(wc -l <"$work/got-$1") of 100 records through $external"
}
roundtrip first
say "produced and consumed 100 records through $external from outside"

# A restarted broker comes back at the same address (its Service keeps its node port; the
# new pod is annotated again before its broker starts).
before=$(k get pod "$kc_name-1" -o jsonpath='{.metadata.uid}')
k delete pod "$kc_name-1" --wait=false >/dev/null
replaced() { [[ $(k get pod "$kc_name-1" -o jsonpath='{.metadata.uid}' 2>/dev/null) != "$before" ]] && kc_ready &&
  [[ $(k get pod "$kc_name-1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]; }
wait_until 180 "pod $kc_name-1 replaced and ready" replaced
[[ $(advertised) == "$seen" ]] || fail "addresses after the restart: $(advertised) (were $seen)"
roundtrip second
say "after a restart of broker 1: same addresses, 100 more records through $external"
say "PASS"
