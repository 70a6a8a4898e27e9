#!/usr/bin/env bash
# A pod whose image cannot be run here fails visibly rather than pretending to run. On the
# pod runner: ErrImageNeverPull with a message saying that only oxbow images run here. On the
# real node: no registry is reachable from these machines and the image is not in containerd,
# so the kubelet reports ErrImagePull, then ImagePullBackOff, with a Failed event, as any
# Kubernetes node does for an image it cannot pull.
. "$(dirname "$0")/lib.sh"
case $OXBOW_K8S_PLATFORM in
  local) want="ErrImageNeverPull" patience=30 ;;
  node) want="ErrImagePull|ImagePullBackOff" patience=120 ;;
  *) skip "a registry may be reachable on $OXBOW_K8S_PLATFORM" ;;
esac
ensure_ns
# An image no test builds or imports (a tag of our own name that does not exist).
image=docker.io/library/oxbow-never-built:0
kc -n "$NS" run foreign --image="$image" --image-pull-policy=IfNotPresent --restart=Never -- sleep 3600 >/dev/null
waiting_reason() { kc -n "$NS" get pod foreign -o 'jsonpath={.status.containerStatuses[0].state.waiting.reason}'; }
reason() { [[ $(waiting_reason) =~ ^($want)$ ]]; }
wait_until "$patience" "foreign pod reports $want" reason
msg=$(kc -n "$NS" get pod foreign -o 'jsonpath={.status.containerStatuses[0].state.waiting.message}')
say "status: $(waiting_reason): $msg"
if [[ $OXBOW_K8S_PLATFORM == local ]]; then
  [[ $msg == *"only runs"* ]] || fail "unexpected message: $msg"
else
  [[ $msg == *"oxbow-never-built"* ]] || fail "the message does not name the image: $msg"
fi
[[ $(kc -n "$NS" get pod foreign -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == False ]] || fail "foreign pod claims Ready"
[[ $(kc -n "$NS" get pod foreign -o 'jsonpath={.status.phase}') == Pending ]] || fail "foreign pod left Pending"
# Events reach the API server a moment after the status (the kubelet's recorder batches them).
has_event() { kc -n "$NS" get events --field-selector involvedObject.name=foreign -o name | grep -q .; }
wait_until 30 "an event for the foreign pod" has_event
kc -n "$NS" delete pod foreign --wait=false >/dev/null
foreign_gone() { ! kc -n "$NS" get pod foreign >/dev/null 2>&1; }
wait_until 60 "foreign pod deleted" foreign_gone
say "PASS"
