#!/usr/bin/env bash
# Two operator replicas (the chart's replicaCount=2) share one Lease: exactly one reconciles,
# the other waits. Deleting the leader's pod hands the lease over at once (it is released on
# SIGTERM); freezing the leader (SIGSTOP, a stuck process or a partitioned node) hands it
# over when the lease expires, and the frozen replica, once thawed, stops acting and
# restarts as a standby. After each hand-over the new leader reconciles (a paused
# KafkaCluster gets its ReconciliationPaused condition: a reconcile with no pods to wait for).
. "$(dirname "$0")/lib.sh"
rel=oxbow-operator ons=oxbow-system ns=$NS-le
stopped_pid=""
cleanup() {
  [[ -n $stopped_pid ]] && kill -CONT "$stopped_pid" 2>/dev/null
  kc delete ns "$ns" --wait=false >/dev/null 2>&1 || true
  helm uninstall "$rel" -n "$ons" --wait --timeout 90s >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
  say "FAIL: $*"
  kc -n "$ons" get lease "$rel" -o yaml 2>&1 | grep -E 'holderIdentity|renewTime|leaseTransitions' >&2
  kc -n "$ons" get pods -o wide 2>&1 >&2
  for p in $(kc -n "$ons" get pods -l app.kubernetes.io/instance=$rel -o name 2>/dev/null); do
    say "--- $p"; kc -n "$ons" logs "$p" --tail=15 2>&1 | cut -c1-300 >&2
    # A restarted container: how the one before it ended.
    kc -n "$ons" logs "$p" --previous --tail=15 >/dev/null 2>&1 &&
      { say "--- $p, the container before"; kc -n "$ons" logs "$p" --previous --tail=15 2>&1 | cut -c1-300 >&2; }
    kc -n "$ons" get "$p" -o jsonpath='{.status.containerStatuses[0].lastState}' >&2; echo >&2
  done
  exit 1
}
OXBOW_OPERATOR_HELM_ARGS="--set replicaCount=2" install_operator || fail "operator did not become available"
pods() { kc -n "$ons" get pods -l app.kubernetes.io/instance=$rel -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.name}{"\n"}{end}'; }
holder() { kc -n "$ons" get lease "$rel" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
two_running() { [[ $(pods | wc -l) == 2 ]]; }
wait_until 60 "two operator replicas running" two_running
held_by_one() { local h; h=$(holder) && [[ -n $h ]] && pods | grep -qxF "$h"; }
wait_until 30 "the Lease held by one of the replicas" held_by_one
leader=$(holder) standby=$(pods | grep -vxF "$leader")
say "leader $leader, standby $standby"
logs_of() { kc -n "$ons" logs "$1" 2>/dev/null; }
in_log() { logs_of "$1" | grep -q "$2"; }
wait_until 30 "the standby $standby waiting to lead" in_log "$standby" "waiting to lead"
logs_of "$standby" | grep -qw leading && fail "the standby $standby leads too"

kc get ns "$ns" >/dev/null 2>&1 || kc create ns "$ns" >/dev/null
# A paused KafkaCluster: the leader's reconcile sets ReconciliationPaused and creates nothing.
paused_cluster() {
  printf 'apiVersion: oxbow.dev/v1alpha1\nkind: KafkaCluster\nmetadata:\n  name: %s\n  annotations: {oxbow.dev/pause-reconciliation: "true"}\nspec:\n  replicas: 1\n' "$1" |
    kc -n "$ns" apply -f - >/dev/null
}
reconciled() { [[ $(kc -n "$ns" get kc "$1" -o 'jsonpath={.status.conditions[?(@.type=="ReconciliationPaused")].status}') == True ]]; }
paused_cluster le-1
wait_until 30 "le-1 reconciled by the leader" reconciled le-1
# Only the leader acted: the standby's log says nothing about KafkaClusters.
logs_of "$standby" | grep -q 'cluster=' && fail "the standby $standby reconciled: $(logs_of "$standby" | grep -m1 'cluster=')"

# 1. The leader's pod is deleted (as in a rolling update of the operator): the lease is
#    released on SIGTERM and the standby leads within seconds, not after the lease expires.
t0=$(date +%s%N)
kc -n "$ons" delete pod "$leader" --wait=false >/dev/null
new_holder() { local h; h=$(holder) && [[ -n $h && $h != "$1" ]]; }
# Sampled every ~0.1 s: first the lease emptied (released on SIGTERM), then a new holder.
released_ms="" handover_ms=""
for ((i = 0; i < 300; i++)); do
  h=$(holder) now_ms=$((($(date +%s%N) - t0) / 1000000))
  [[ -z $released_ms && $h != "$leader" ]] && released_ms=$now_ms
  if [[ -n $h && $h != "$leader" ]]; then handover_ms=$now_ms; break; fi
  sleep 0.1
done
[[ -n $handover_ms ]] || fail "no replica took the lease within 30 s of deleting $leader"
# The released lease goes to whichever replica asks first: often the Deployment's new pod,
# which asks as it starts, while the standby asks again only when the lease it saw would
# have expired. So a replica that asked just before the release waits for that expiry
# (kube-lease-manager's timing, up to the 15 s lease): what must be quick is the release.
leader=$(holder)
running_holder() { pods | grep -qxF "$leader"; }
wait_until 20 "the new holder $leader running" running_holder
say "deleted leader: released after ${released_ms} ms, $leader leads ${handover_ms} ms later"
((released_ms < 5000)) || fail "the lease stayed with the deleted leader for ${released_ms} ms: it was not released on SIGTERM"
paused_cluster le-2
wait_until 30 "le-2 reconciled by the new leader" reconciled le-2
wait_until 60 "two operator replicas running again" two_running
standby=$(pods | grep -vxF "$leader")
[[ $(echo "$standby" | wc -w) == 1 ]] || fail "no single standby beside $leader: $standby"

# 2. The leader freezes (SIGSTOP): it stops renewing, the lease expires (15 s) and the standby
#    takes it. The thawed replica finds the lease gone, stops and is restarted as a standby.
operator_pid() { # pod -> pid of its oxbow-operator process on this host
  local e
  for e in /proc/[0-9]*/environ; do
    [[ $(cat "${e%/environ}/comm" 2>/dev/null) == oxbow-operator ]] || continue
    tr '\0' '\n' < "$e" 2>/dev/null | grep -qxF "POD_NAME=$1" && { e=${e#/proc/}; echo "${e%/environ}"; return; }
  done
  return 1
}
pid=$(operator_pid "$leader") || fail "no oxbow-operator process of pod $leader on this host"
restarts_before=$(kc -n "$ons" get pod "$leader" -o jsonpath='{.status.containerStatuses[0].restartCount}')
t0=$(date +%s%N)
kill -STOP "$pid" && stopped_pid=$pid
wait_until 40 "the lease taken from the frozen $leader" new_holder "$leader"
takeover_ms=$((($(date +%s%N) - t0) / 1000000))
[[ $(holder) == "$standby" ]] || fail "the lease went to $(holder), not to the standby $standby"
say "froze leader $leader: $standby leads ${takeover_ms} ms later"
((takeover_ms >= 5000)) || fail "the lease changed hands ${takeover_ms} ms after the freeze: before it could have expired"
paused_cluster le-3
wait_until 30 "le-3 reconciled while the old leader is frozen" reconciled le-3
kill -CONT "$pid" && stopped_pid=""
restarted() { [[ $(kc -n "$ons" get pod "$leader" -o jsonpath='{.status.containerStatuses[0].restartCount}') -gt $restarts_before ]]; }
wait_until 60 "the thawed $leader stopped and restarted" restarted
kc -n "$ons" logs "$leader" --previous 2>/dev/null | grep -q "lost the lease" ||
  fail "the thawed $leader did not say it lost the lease"
[[ $(holder) == "$standby" ]] || fail "the lease moved back to $(holder) after the thaw"
wait_until 30 "the restarted $leader waiting to lead" in_log "$leader" "waiting to lead"
say "PASS (hand-over on delete ${handover_ms} ms, on freeze ${takeover_ms} ms)"
