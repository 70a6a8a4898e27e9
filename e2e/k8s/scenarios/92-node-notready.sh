#!/usr/bin/env bash
# Stopping the kubelet marks the node NotReady and the StatefulSet behaves as Kubernetes
# specifies: the node-lifecycle controller sets the node's Ready condition to Unknown and the
# pods' Ready to False (readyReplicas drops), no replacement pod is created while the old ones
# cannot be confirmed gone (a StatefulSet's at-most-one guarantee), the brokers keep serving
# (containerd runs them, not the kubelet); the kubelet back, node and pods turn Ready again, the
# same pods (same UIDs). Real node only (lib/node-kubelet.sh).
. "$(dirname "$0")/lib.sh"
if [[ $OXBOW_K8S_PLATFORM != node ]]; then skip "real node only"; fi
ensure_ns
apply_brokers 3
wait_until 180 "statefulset oxbow 3/3 ready" pods_ready 3
node=$(kc -n "$NS" get pod oxbow-0 -o jsonpath='{.spec.nodeName}')
uids() { kc -n "$NS" get pods -l app.kubernetes.io/name=oxbow-broker -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.uid} {end}'; }
before=$(uids)
node_ready() { [[ $(kc get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == "$1" ]]; }
pods_not_ready() {
  [[ $(kc -n "$NS" get pods -l app.kubernetes.io/name=oxbow-broker -o jsonpath='{.items[*].status.conditions[?(@.type=="Ready")].status}') == "False False False" ]]
}
restart_kubelet() { "$K8S_DIR/lib/node-kubelet.sh" start; }
"$K8S_DIR/lib/node-kubelet.sh" stop || fail "cannot stop the kubelet"
trap 'kill -0 "$(cat "$OXBOW_K8S_RUN_DIR/kubelet.pid")" 2>/dev/null || restart_kubelet' EXIT
t0=$SECONDS
wait_until 90 "node $node NotReady (Ready=Unknown)" node_ready Unknown
say "node $node NotReady $((SECONDS - t0))s after the kubelet stopped"
wait_until 60 "the brokers' pods Ready=False" pods_not_ready
[[ -z $(kc -n "$NS" get sts oxbow -o jsonpath='{.status.readyReplicas}') || $(kc -n "$NS" get sts oxbow -o jsonpath='{.status.readyReplicas}') == 0 ]] ||
  fail "readyReplicas did not drop"
kc get node "$node" -o jsonpath='{.spec.taints}' | grep -q node.kubernetes.io/unreachable || fail "no unreachable taint on $node"
[[ $(uids) == "$before" ]] || fail "pods were replaced while the node was unreachable: $(uids) vs $before"
out=$(kafka_probe "$(broker_dns 0)") || fail "the broker stopped serving with the kubelet: $out"
restart_kubelet
wait_until 90 "node $node Ready again" node_ready True
wait_until 120 "statefulset oxbow 3/3 ready again" pods_ready 3
[[ $(uids) == "$before" ]] || fail "the pods were replaced: $(uids) vs $before"
say "PASS"
