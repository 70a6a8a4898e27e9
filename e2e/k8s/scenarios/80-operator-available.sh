#!/usr/bin/env bash
# `helm install` of the operator chart installs the KafkaCluster CRD and brings up an operator
# pod that becomes Available and stays up (it has found the API and the CRD).
. "$(dirname "$0")/lib.sh"
rel=oxbow-operator ns=oxbow-system
cleanup() { helm uninstall "$rel" -n "$ns" --wait --timeout 90s >/dev/null 2>&1 || true; }
trap cleanup EXIT
install_operator || fail "operator did not become available"
kc get crd kafkaclusters.oxbow.dev >/dev/null || fail "the chart did not install the KafkaCluster CRD"
[[ $(kc get crd kafkaclusters.oxbow.dev -o jsonpath='{.spec.names.shortNames[0]}') == kc ]] ||
  fail "CRD without its short name kc"
# Still running, not restarted, a little later: a crash-looping operator would be Available
# for a moment too. Its readiness is polled, and the restart count read once it is settled.
pod=$(kc -n "$ns" get pods -l app.kubernetes.io/instance=$rel -o jsonpath='{.items[0].metadata.name}')
out=$(kc get kc -A 2>&1) || fail "kubectl get kc does not work: $out"
running_long() {
  local started
  started=$(kc -n "$ns" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].state.running.startedAt}') &&
    [[ -n $started ]] && (( $(date +%s) - $(date -d "$started" +%s) >= 5 ))
}
wait_until 60 "operator pod $pod running for 5 s" running_long
restarts=$(kc -n "$ns" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')
[[ $restarts == 0 ]] || fail "operator pod restarted $restarts times"
say "PASS"
