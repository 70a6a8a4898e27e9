#!/usr/bin/env bash
# StatefulSet scaling: up to 4 adds pod oxbow-3 (own volume, own DNS name), back to 3 removes
# it and stops its process.
# With OXBOW_E2E_EXPECT_CLUSTER=1 the three pods are the static voters of one KRaft quorum
# (manifests/broker-statefulset.yaml): a fourth combined broker+controller node is not among
# controller.quorum.voters, so, as Kafka does, it refuses to start and is never Ready, and the
# cluster keeps its three brokers (adding brokers needs broker-only nodes, not served yet).
# Otherwise (the lone fake broker) oxbow-3 answers at its DNS name.
. "$(dirname "$0")/lib.sh"
ensure_ns
apply_brokers 3  # idempotent: lets the scenario run on its own
kc -n "$NS" scale sts/oxbow --replicas 4 >/dev/null
if [[ ${OXBOW_E2E_EXPECT_CLUSTER:-1} == 1 ]]; then
  wait_until 120 "statefulset oxbow 3/3 ready" pods_ready 3
  refused() { # oxbow-3's container exited at least once and the pod is not Ready
    [[ $(kc -n "$NS" get pod oxbow-3 -o 'jsonpath={.status.containerStatuses[0].restartCount}') -ge 1 ]] &&
      [[ $(kc -n "$NS" get pod oxbow-3 -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') != True ]]
  }
  wait_until 60 "oxbow-3 refused to start (node.id 3 is not a voter)" refused
  say "oxbow-3: $(kc -n "$NS" get pod oxbow-3 -o 'jsonpath={.status.containerStatuses[0].lastState.terminated}')"
  [[ $(kc -n "$NS" get pvc data-oxbow-3 -o jsonpath='{.status.phase}') == Bound ]] || fail "pvc data-oxbow-3 is not bound"
  wait_until 30 "the cluster still has brokers 0,1,2" cluster_formed 3
else
  wait_until 120 "statefulset oxbow 4/4 ready" pods_ready 4
  out=$(kafka_probe "$(broker_dns 3)") || fail "oxbow-3 not reachable: $out"
  say "oxbow-3: $out"
fi
kc -n "$NS" scale sts/oxbow --replicas 3 >/dev/null
gone() { ! kc -n "$NS" get pod oxbow-3 >/dev/null 2>&1; }
wait_until 60 "oxbow-3 gone" gone
wait_until 60 "statefulset oxbow 3/3 ready" pods_ready 3
if kafka_probe "$(broker_dns 3)" >/dev/null 2>&1; then fail "oxbow-3 still answers after scale-down"; fi
say "PASS"
