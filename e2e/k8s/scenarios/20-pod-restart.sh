#!/usr/bin/env bash
# Deleting a broker pod brings it back (same name, new pod) with the same volume and its data:
# the cluster id the broker keeps in log.dirs/meta.properties and a record produced before
# the deletion (replica on broker 1) must survive.
. "$(dirname "$0")/lib.sh"
ensure_ns
apply_brokers 3  # idempotent: lets the scenario run on its own
wait_until 120 "statefulset oxbow 3/3 ready" pods_ready 3
before=$(kafka_probe "$(broker_dns 1)") || fail "oxbow-1 not reachable: $before"
# Records too, where the broker serves Produce/Fetch/CreateTopics (the test-double broker does not).
records=$(json "$before" "all(k in d['api_keys'] for k in (0, 1, 19))")
if [[ $records == True ]]; then
  out=$(kafka_probe produce "$(broker_dns 1)" e2e-restart 1 "kept-across-restart") || fail "produce to oxbow-1: $out"
  say "produced: $out"
fi
uid=$(kc -n "$NS" get pod oxbow-1 -o jsonpath='{.metadata.uid}')
pv=$(kc -n "$NS" get pvc data-oxbow-1 -o jsonpath='{.spec.volumeName}')
[[ -n $pv ]] || fail "pvc data-oxbow-1 is not bound"
# --wait=false: kubectl's own wait can race with the StatefulSet recreating the same name.
kc -n "$NS" delete pod oxbow-1 --wait=false >/dev/null
new_pod() { local u; u=$(kc -n "$NS" get pod oxbow-1 -o jsonpath='{.metadata.uid}') && [[ -n $u && $u != "$uid" ]]; }
wait_until 60 "oxbow-1 recreated" new_pod
new_ready() { new_pod && [[ $(kc -n "$NS" get pod oxbow-1 -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]; }
wait_until 120 "new oxbow-1 ready" new_ready
after=$(kafka_probe "$(broker_dns 1)") || fail "oxbow-1 not reachable after restart: $after"
say "before: $before"
say "after:  $after"
[[ $(kc -n "$NS" get pvc data-oxbow-1 -o jsonpath='{.spec.volumeName}') == "$pv" ]] || fail "oxbow-1 got another volume"
[[ $(json "$before" "d['cluster_id']") == $(json "$after" "d['cluster_id']") ]] ||
  fail "cluster id changed across the restart: data did not survive"
if [[ $records == True ]]; then
  out=$(kafka_probe fetch "$(broker_dns 1)" e2e-restart) || fail "fetch from oxbow-1 after restart: $out"
  say "fetched after restart: $out"
  [[ $(json "$out" "'kept-across-restart' in d['values']") == True ]] || fail "record lost across the restart: $out"
fi
say "PASS (pod $uid replaced, volume $pv and cluster id kept)"
