#!/usr/bin/env bash
# Local platform only: a pod whose image is not ours fails visibly (ErrImageNeverPull with a
# message saying that only oxbow images run here) rather than pretending to run.
. "$(dirname "$0")/lib.sh"
if [[ $OXBOW_K8S_PLATFORM != local ]]; then skip "local pod runner only"; fi
ensure_ns
kc -n "$NS" run foreign --image=busybox:1.36 --restart=Never -- sleep 3600 >/dev/null
reason() { [[ $(kc -n "$NS" get pod foreign -o 'jsonpath={.status.containerStatuses[0].state.waiting.reason}') == ErrImageNeverPull ]]; }
wait_until 30 "foreign pod reports ErrImageNeverPull" reason
msg=$(kc -n "$NS" get pod foreign -o 'jsonpath={.status.containerStatuses[0].state.waiting.message}')
say "status: $msg"
[[ $msg == *"only runs"* ]] || fail "unexpected message: $msg"
[[ $(kc -n "$NS" get pod foreign -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == False ]] || fail "foreign pod claims Ready"
kc -n "$NS" get events --field-selector involvedObject.name=foreign -o name | grep -q . || fail "no event for the foreign pod"
kc -n "$NS" delete pod foreign --wait=false >/dev/null
foreign_gone() { ! kc -n "$NS" get pod foreign >/dev/null 2>&1; }
wait_until 30 "foreign pod deleted" foreign_gone
say "PASS"
