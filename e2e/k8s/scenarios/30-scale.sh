#!/usr/bin/env bash
# StatefulSet scaling: up to 4 adds oxbow-3 (reachable at its DNS name), back to 3 stops it.
. "$(dirname "$0")/lib.sh"
ensure_ns
apply_brokers 3  # idempotent: lets the scenario run on its own
kc -n "$NS" scale sts/oxbow --replicas 4 >/dev/null
wait_until 120 "statefulset oxbow 4/4 ready" pods_ready 4
out=$(kafka_probe "$(broker_dns 3)") || fail "oxbow-3 not reachable: $out"
say "oxbow-3: $out"
kc -n "$NS" scale sts/oxbow --replicas 3 >/dev/null
gone() { ! kc -n "$NS" get pod oxbow-3 >/dev/null 2>&1; }
wait_until 60 "oxbow-3 gone" gone
wait_until 60 "statefulset oxbow 3/3 ready" pods_ready 3
if kafka_probe "$(broker_dns 3)" >/dev/null 2>&1; then fail "oxbow-3 still answers after scale-down"; fi
say "PASS"
