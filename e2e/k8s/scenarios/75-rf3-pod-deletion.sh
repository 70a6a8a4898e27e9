#!/usr/bin/env bash
# needs-cluster
# A topic with replication factor 3 (min.insync.replicas=2 from the ConfigMap) survives losing
# the pod of its partition's leader:
#  1. scale to 2 deletes pod oxbow-2, the leader (replicas 2,0,1), and keeps it away: the
#     leadership moves, the ISR shrinks to 0,1 (controlled shutdown), the acks=all record
#     produced before stays readable and acks=all writes go on; back to 3, oxbow-2 returns on
#     its volume and rejoins the cluster and the ISR;
#  2. `kubectl delete pod` of the then leader: writes go on through another broker, the new pod
#     rejoins the ISR, every acknowledged record is read back.
. "$(dirname "$0")/lib.sh"
ensure_ns
apply_brokers 3  # idempotent: lets the scenario run on its own
wait_until 180 "statefulset oxbow 3/3 ready" pods_ready 3
wait_until 60 "one cluster of 3 brokers" cluster_formed 3
topic=e2e-rf3
out=$(kafka_probe create "$(broker_dns 0)" "$topic" -1 -1 2,0,1) || fail "create $topic (replicas 2,0,1): $out"
isr_is() { # broker-index expected-isr(python list): as that broker sees it, replicas 0,1,2, that ISR, a live leader in it
  local st
  st=$(topic_state "$(broker_dns "$1")" "$topic") &&
    json "$st" "sorted(d['replicas']) == [0, 1, 2] and sorted(d['isr']) == $2 and d['leader'] in d['isr']" | grep -qx True
}
has_all() { # out value...: every value was fetched
  local out=$1 v; shift
  for v in "$@"; do [[ $(json "$out" "'$v' in d['values']") == True ]] || return 1; done
}
wait_until 60 "$topic-0 with ISR 0,1,2" isr_is 0 "[0, 1, 2]"
say "created: $(topic_state "$(broker_dns 0)" "$topic")"
out=$(kafka_probe send "$(broker_dns 0)" "$topic" before) || fail "acks=all produce to $topic: $out"

# 1. The leader's pod away for a while.
kc -n "$NS" scale sts/oxbow --replicas 2 >/dev/null
gone() { ! kc -n "$NS" get pod oxbow-2 >/dev/null 2>&1; }
wait_until 60 "pod oxbow-2 gone" gone
wait_until 60 "leadership moved to 0 or 1 and ISR 0,1" isr_is 0 "[0, 1]"
view=$(kafka_probe describe "$(broker_dns 1)" "$topic") || fail "describe $topic: $view"
say "while oxbow-2 is away: $view"
[[ $(json "$view" "d['brokers']") == "[0, 1]" ]] || fail "brokers listed while oxbow-2 is away: $view"
wait_until 30 "acks=all produce to $topic with oxbow-2 away" kafka_probe send "$(broker_dns 1)" "$topic" while-away
out=$(kafka_probe fetch "$(broker_dns 0)" "$topic") || fail "fetch $topic: $out"
say "fetched while oxbow-2 is away: $out"
has_all "$out" before while-away || fail "records missing while oxbow-2 is away: $out"
kc -n "$NS" scale sts/oxbow --replicas 3 >/dev/null
wait_until 120 "statefulset oxbow 3/3 ready" pods_ready 3
wait_until 60 "one cluster of 3 brokers again" cluster_formed 3
wait_until 90 "broker 2 back in the ISR of $topic-0" isr_is 2 "[0, 1, 2]"

# 2. kubectl delete pod of the current leader.
state=$(topic_state "$(broker_dns 0)" "$topic")
leader=$(json "$state" "d['leader']")
other=$(( (leader + 1) % 3 ))
uid=$(kc -n "$NS" get pod "oxbow-$leader" -o jsonpath='{.metadata.uid}')
say "deleting pod oxbow-$leader, the leader of $topic-0: $state"
kc -n "$NS" delete pod "oxbow-$leader" --wait=false >/dev/null
# A leader change in flight may answer NOT_LEADER_OR_FOLLOWER: retry with a deadline.
wait_until 60 "acks=all produce to $topic through broker $other after deleting oxbow-$leader" \
  kafka_probe send "$(broker_dns "$other")" "$topic" after-delete
new_ready() {
  local u
  u=$(kc -n "$NS" get pod "oxbow-$leader" -o jsonpath='{.metadata.uid}') && [[ -n $u && $u != "$uid" ]] &&
    [[ $(kc -n "$NS" get pod "oxbow-$leader" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
wait_until 120 "new oxbow-$leader ready" new_ready
wait_until 60 "one cluster of 3 brokers again" cluster_formed 3
wait_until 90 "broker $leader back in the ISR of $topic-0" isr_is "$leader" "[0, 1, 2]"
say "after: $(topic_state "$(broker_dns "$leader")" "$topic")"
out=$(kafka_probe fetch "$(broker_dns "$leader")" "$topic") || fail "fetch $topic after the rejoin: $out"
say "fetched: $out"
has_all "$out" before while-away after-delete || fail "acknowledged records missing: $out"
say "PASS"
