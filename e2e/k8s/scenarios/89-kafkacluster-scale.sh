#!/usr/bin/env bash
# needs-cluster
# Scaling a KafkaCluster and its controller quorum up and back down while
# kafka-verifiable-producer.sh writes with acks=all: `replicas: 5, controllers: 5` adds pods
# `<name>-3`/`-4` that join the metadata quorum as observers, and the operator makes them voters
# one at a time with AddRaftVoter (DescribeQuorum: voters 0..4; Events VoterAdded) without
# restarting any pod, and its rebalance spreads an existing topic's replicas and leaders onto
# them (status.rebalance while it runs, Events RebalanceStarted/RebalanceDone,
# status.balancedBrokers [0..4]); `replicas: 3, controllers: 3` removes voters 3 and 4
# (RemoveRaftVoter, the active controller last, so it moves off a broker that goes: its pod is
# first deleted until the election puts it on 3 or 4), then,
# with a topic of 5 replicas, is refused (Warning ScaleDownBlocked, all five pods keep
# running); once that topic is gone, the operator moves every replica off brokers 3 and 4
# before the StatefulSet shrinks (sampled: never a replica, a vote or the active controller on
# a broker whose pod is gone), and every acknowledged record is read back at its partition
# and offset, with no failed send.
. "$(dirname "$0")/lib.sh"
ns=$NS-scale kc_name=scaling topic=spread
producer_pid="" sampler_pid=""
kafkacluster_scenario
sel="oxbow.dev/cluster=$kc_name"
uids() { k get pods -l "$sel" -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.uid}{"\n"}{end}' | sort; }
balanced_over() { # ids...
  local want; want=$(printf '%s,' "$@")
  kc_ready && [[ -z $(jp '{.status.rebalance}') ]] &&
    [[ $(jp '{.status.balancedBrokers}' | tr -d '[] ') == "${want%,}" ]]
}
# "count of replicas per broker | count of leaders per broker" of a topic, brokers 0..4.
spread_of() { # topic
  kafka_tool kafka-topics.sh --bootstrap-server "$bootstrap" --describe --topic "$1" | python3 -c '
import re, sys
reps, leads = [0] * 5, [0] * 5
for line in sys.stdin:
    m = re.search(r"Leader: (-?\d+)\s+Replicas: ([\d,]+)", line)
    if m:
        for r in m.group(2).split(","):
            reps[int(r)] += 1
        if int(m.group(1)) >= 0:
            leads[int(m.group(1))] += 1
print(" ".join(map(str, reps)), "|", " ".join(map(str, leads)))'
}

t0=$SECONDS
k apply -f - >/dev/null <<YAML
apiVersion: oxbow.dev/v1alpha1
kind: KafkaCluster
metadata: {name: $kc_name}
spec:
  replicas: 3
YAML
wait_until 240 "KafkaCluster $kc_name Ready with 3 brokers" balanced_over 0 1 2
say "Ready and balanced over 0..2 $((SECONDS - t0)) s after kubectl apply"
bootstrap=$(jp '{.status.listeners[0].bootstrapServers}')
wait_until 60 "kafka-topics.sh --create $topic (10 partitions, RF 3, min.insync.replicas 2)" \
  kafka_tool kafka-topics.sh --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$topic" \
  --partitions 10 --replication-factor 3 --config min.insync.replicas=2
setsid bash -c "$(declare -f kafka_tool with_cluster_dns kc); NS='$NS'; kafka_tool \"\$@\"" _ \
  kafka-verifiable-producer.sh --bootstrap-server "$bootstrap" --topic "$topic" --acks -1 \
  --throughput 100 --producer.config /dev/stdin <<<"retries=2147483647" \
  >"$work/producer.out" 2>"$work/producer.err" &
producer_pid=$!
acked() { grep -c '"name":"producer_send_success"' "$work/producer.out" 2>/dev/null || true; }
acks_beyond() { (($(acked) >= $1)); }
wait_until 90 "200 acknowledged records before scaling" acks_beyond 200

# The metadata quorum as a broker describes it (DescribeQuorum, not the operator's status):
# "leader=N voters=a,b,c".
quorum_of() {
  kafka_probe quorum "$bootstrap" | python3 -c '
import json, sys
q = json.load(sys.stdin)
print("leader=%d voters=%s" % (q["leader"], ",".join(map(str, q["voters"]))))'
}
voters_are() { [[ $(quorum_of 2>/dev/null) == *" voters=$1" ]]; }
[[ $(quorum_of) == *" voters=0,1,2" ]] || fail "the quorum before scaling: $(quorum_of)"

# 3 -> 5 brokers and 5 voters: the new pods join as observers and are made voters, then the
# rebalance onto them.
before=$(uids)
t0=$SECONDS
k patch kc "$kc_name" --type merge -p '{"spec":{"replicas":5,"controllers":5}}' >/dev/null
rebalancing() { [[ -n $(jp '{.status.rebalance.startedAt}') ]]; }
wait_until 120 "status.rebalance after the scale-up" rebalancing
wait_until 300 "5 brokers ready and the replicas balanced over 0..4" balanced_over 0 1 2 3 4
wait_until 120 "DescribeQuorum lists voters 0..4" voters_are 0,1,2,3,4
settled() { [[ -z $(jp '{.status.quorumChange}') && $(jp '{.status.voters}' | tr -d '[] ') == "$1" ]]; }
wait_until 60 "status.voters 0..4 and no quorumChange" settled 0,1,2,3,4
up_secs=$((SECONDS - t0))
say "3 -> 5: $(quorum_of) $up_secs s after the patch"
[[ $(jp '{.status.brokers[3].pod} {.status.brokers[3].roles} {.status.brokers[3].voter} {.status.brokers[4].pod} {.status.brokers[4].voter}') == \
  "$kc_name-3 broker,controller true $kc_name-4 true" ]] || fail "status.brokers: $(jp '{.status.brokers}')"
[[ $(uids | grep -E -- "^$kc_name-[012]=") == "$before" ]] || fail "a pod restarted on scale-up: $before -> $(uids)"
events=$(k get events --field-selector "involvedObject.name=$kc_name" -o jsonpath='{.items[*].reason}')
# (The Events of two adds may be one with a count of 2: the recorder folds a repeated reason.)
[[ $events == *VoterAdded* ]] || fail "Events VoterAdded: $events"
spread=$(spread_of "$topic")
say "3 -> 5: balanced in $up_secs s; $topic replicas per broker | leaders per broker: $spread"
python3 - "$spread" <<'PY' || fail "$topic is not spread over 5 brokers: $spread"
import sys
reps, leads = (list(map(int, half.split())) for half in sys.argv[1].split("|"))
assert sum(reps) == 30 and max(reps) - min(reps) <= 1, reps
assert sum(leads) == 10 and max(leads) - min(leads) <= 1, leads
PY
events=$(k get events --field-selector "involvedObject.name=$kc_name" -o jsonpath='{.items[*].reason}')
[[ $events == *RebalanceStarted* && $events == *RebalanceDone* ]] || fail "Events: $events"
n=$(acked)
wait_until 60 "100 more acknowledged records after the scale-up" acks_beyond $((n + 100))

# The active controller onto broker 3 or 4, so that the scale-down below must remove it: its
# pod is deleted until the election after it picks 3 or 4 (each of the 4 others equally
# likely), the quorum whole again between tries. The operator removes it last, and
# RemoveRaftVoter of the active controller makes it resign to the voters that stay.
leader_of() { quorum_of 2>/dev/null | sed -n 's/^leader=\(-\{0,1\}[0-9]*\) .*/\1/p'; }
# All five voters caught up (log end offsets within 100 of the high watermark), all pods ready.
quorum_whole() {
  [[ $(k get sts "$kc_name" -o jsonpath='{.status.readyReplicas}') == 5 ]] &&
    kafka_probe quorum "$bootstrap" | python3 -c '
import json, sys
q = json.load(sys.stdin)
assert q["leader"] >= 0 and q["voters"] == [0, 1, 2, 3, 4], q
assert all(q["high_watermark"] - q["log_end_offsets"][str(v)] <= 100 for v in q["voters"]), q'
}
for try in 1 2 3 4 5 6 7 8; do
  leader=$(leader_of)
  [[ $leader == 3 || $leader == 4 ]] && break
  [[ -n $leader && $leader -ge 0 ]] || fail "no active controller: $(quorum_of)"
  say "active controller $leader: deleting its pod (try $try)"
  k delete pod "$kc_name-$leader" --wait=false >/dev/null
  elsewhere() { local l; l=$(leader_of); [[ -n $l && $l -ge 0 && $l != "$leader" ]]; }
  wait_until 60 "a new active controller after deleting $kc_name-$leader" elsewhere
  wait_until 180 "the pod back and the five voters caught up" quorum_whole
done
leader=$(leader_of)
[[ $leader == 3 || $leader == 4 ]] || fail "the active controller is not on 3 or 4 after 8 tries: $(quorum_of)"
say "active controller now $leader, a broker the scale-down removes"

# 5 -> 3 brokers and 3 voters: voters 3 and 4 are removed first (the sampler below checks the
# order); then the scale-down is unsafe while a topic has 5 replicas: refused with a Warning,
# nothing shrinks.
kafka_tool kafka-topics.sh --bootstrap-server "$bootstrap" --create --topic wide --partitions 1 \
  --replication-factor 5 >/dev/null || fail "creating wide (RF 5)"
t0=$SECONDS
k patch kc "$kc_name" --type merge -p '{"spec":{"replicas":3,"controllers":3}}' >/dev/null
wait_until 120 "DescribeQuorum lists voters 0..2" voters_are 0,1,2
say "5 -> 3 voters, the active controller $leader among those removed: $(quorum_of) $((SECONDS - t0)) s after the patch"
leader=$(leader_of)
[[ $leader == [012] ]] || fail "the active controller after removing voters 3 and 4: $(quorum_of)"
blocked() { [[ $(jp '{.status.conditions[?(@.reason=="ScaleDownBlocked")].status}') == True ]]; }
wait_until 120 "Warning ScaleDownBlocked" blocked
say "refused: $(jp '{.status.conditions[?(@.reason=="ScaleDownBlocked")].message}')"
[[ $(k get sts "$kc_name" -o jsonpath='{.spec.replicas}') == 5 ]] ||
  fail "the StatefulSet shrank with a topic of 5 replicas"
[[ $(jp '{.status.conditions[?(@.reason=="ScaleDownBlocked")].message}') == *wide* ]] ||
  fail "the Warning does not name the topic"

# Without it, the replicas move off 3 and 4 first, then their pods go. Sampled with the
# stdlib probe (a Metadata request, well under a second) rather than kafka-topics.sh, whose JVM
# takes seconds: a StatefulSet shrunk while replicas still sat on 3 or 4 lasts only as long as
# their reassignment, which a slow sampler could miss.
probe_spread() { # topic -> "replicas per broker 0..4 | leaders per broker 0..4"
  kafka_probe describe "$bootstrap" "$1" | python3 -c '
import json, sys
reps, leads = [0] * 5, [0] * 5
for p in json.load(sys.stdin)["partitions"]:
    for r in p["replicas"]:
        reps[r] += 1
    if p["leader"] >= 0:
        leads[p["leader"]] += 1
print(" ".join(map(str, reps)), "|", " ".join(map(str, leads)))'
}
sample_once() {
  # The StatefulSet first, the replicas and the quorum second: a replica or a vote still on 3
  # or 4 after the set shrank is one on a broker going away (nothing moves them back).
  echo "sts=$(k get sts "$kc_name" -o jsonpath='{.spec.replicas}' 2>/dev/null) spread=$(probe_spread "$topic" 2>/dev/null)| $(quorum_of 2>/dev/null)"
}
sample() { while :; do sample_once; sleep 0.2; done; }
sample >"$work/samples" 2>/dev/null &
sampler_pid=$!
t0=$SECONDS
kafka_tool kafka-topics.sh --bootstrap-server "$bootstrap" --delete --topic wide >/dev/null || fail "deleting wide"
shrunk() { balanced_over 0 1 2 && [[ -z $(k get pods -l "$sel" -o name | grep -E -- "-[34]$") ]]; }
wait_until 300 "replicas moved off 3 and 4 and the broker pods gone" shrunk
down_secs=$((SECONDS - t0))
services_gone() { [[ -z $(k get svc "$kc_name-3" "$kc_name-4" --ignore-not-found -o name) ]]; }
wait_until 60 "the Services of brokers 3 and 4 deleted" services_gone
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
sample_once >>"$work/samples" 2>/dev/null
python3 - "$work/samples" <<'PY' || { cat "$work/samples" >&2; fail "a broker went away still holding replicas, or the samples missed a side (above)"; }
import re, sys
before = after = 0
for line in open(sys.argv[1]):
    m = re.match(r"sts=(\d+) spread=([\d ]+)\|", line)
    if not m:  # kubectl or the probe failed for this sample: nothing known
        continue
    sts, reps = int(m.group(1)), list(map(int, m.group(2).split()))
    assert not (sts < 5 and (reps[3] or reps[4])), line
    q = re.search(r"leader=(-?\d+) voters=([\d,]*)", line)
    if q and sts < 5:
        assert int(q.group(1)) not in (3, 4), line
        assert not {3, 4} & set(map(int, filter(None, q.group(2).split(",")))), line
    before += sts == 5 and (reps[3] + reps[4]) > 0
    after += sts == 3
# Not vacuous: the sampler saw replicas on 3 and 4 before the drain and the set shrunk after.
print(f"samples: {before} with replicas on 3 or 4, {after} after the shrink", file=sys.stderr)
assert before and after, (before, after)
PY
spread=$(spread_of "$topic")
say "5 -> 3: done in $down_secs s; $topic replicas per broker | leaders per broker: $spread"

# Every acknowledged record is still there, and no send failed.
n=$(acked)
wait_until 60 "200 more acknowledged records after scaling down" acks_beyond $((n + 200))
kill -TERM -- "-$producer_pid" 2>/dev/null || true
wait "$producer_pid" 2>/dev/null || true
producer_pid=""
kafka_tool kafka-console-consumer.sh --bootstrap-server "$bootstrap" --topic "$topic" --from-beginning \
  --property print.partition=true --property print.offset=true --timeout-ms 20000 \
  >"$work/consumed" 2>"$work/consumer.err" || true
python3 - "$work/producer.out" "$work/consumed" <<'PY' || fail "acknowledged records missing or sends failed (above)"
import json, re, sys
acked, errors = [], []
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("name") == "producer_send_success":
        acked.append((e["partition"], e["offset"], e["value"]))
    elif e.get("name") == "producer_send_error":
        errors.append(e)
consumed = set()
for line in open(sys.argv[2]):
    m = re.match(r"Partition:(\d+)\s+Offset:(\d+)\s+(.*)$", line.rstrip("\n"))
    if m:
        consumed.add((int(m.group(1)), int(m.group(2)), m.group(3)))
missing = [a for a in acked if a not in consumed]
print(f"producer: {len(acked)} acknowledged, {len(errors)} failed sends; consumed {len(consumed)}; "
      f"missing {len(missing)}", file=sys.stderr)
for e in errors[:5]:
    print(f"failed send: {e}", file=sys.stderr)
assert acked, "no acknowledged records"
assert not missing, f"acknowledged but not read back at their offsets: {missing[:10]}"
assert not errors, f"{len(errors)} failed sends while scaling"
PY
say "FIGURES 3->5 balanced ${up_secs}s, 5->3 drained and shrunk ${down_secs}s"
say "PASS"
