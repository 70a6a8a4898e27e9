#!/usr/bin/env bash
# expected-failure: brokers do not form a replicated cluster yet (issue "Replicated cluster")
# Three broker pods of one StatefulSet form ONE cluster: every broker's Metadata lists all three.
. "$(dirname "$0")/lib.sh"
ensure_ns
apply_brokers 3
wait_until 180 "statefulset oxbow 3/3 ready" pods_ready 3
for i in 0 1 2; do
  out=$(kafka_probe "$(broker_dns $i)") || fail "broker oxbow-$i not reachable: $out"
  n=$(json "$out" "len(d['brokers'])")
  [[ $n == 3 ]] || fail "oxbow-$i sees $n broker(s), expected all 3 in one cluster"
  say "oxbow-$i sees all 3 brokers"
done
say "PASS"
