#!/usr/bin/env bash
# A StatefulSet of three oxbow-broker pods applied with kubectl becomes 3/3 Ready, and each
# broker answers a Kafka client at its per-pod DNS name through the headless Service.
. "$(dirname "$0")/lib.sh"
ensure_ns
apply_brokers 3
wait_until 180 "statefulset oxbow 3/3 ready" pods_ready 3
kc -n "$NS" get pods -o wide >&2
for i in 0 1 2; do
  out=$(kafka_probe "$(broker_dns $i)") || fail "broker oxbow-$i not reachable: $out"
  say "oxbow-$i: $out"
  brokers=$(json "$out" "d['brokers']")
  json "$out" "any(b[0] == $i and b[1].startswith('oxbow-$i.oxbow.') for b in d['brokers'])" | grep -qx True ||
    fail "oxbow-$i does not advertise itself as node $i at its pod DNS name: $brokers"
  n=$(json "$out" "len(d['brokers'])")
  if [[ $n == 3 ]]; then say "oxbow-$i sees all 3 brokers: replicated cluster formed"
  elif [[ ${OXBOW_E2E_EXPECT_CLUSTER:-0} == 1 ]]; then fail "oxbow-$i sees $n brokers, expected 3"
  else say "oxbow-$i sees $n broker(s) (set OXBOW_E2E_EXPECT_CLUSTER=1 once replication exists)"; fi
done
say "PASS"
