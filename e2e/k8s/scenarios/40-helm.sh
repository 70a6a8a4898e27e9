#!/usr/bin/env bash
# `helm install` of charts/oxbow-operator works: release deployed, its objects exist, RBAC lets
# the operator's service account do its job. Waits for the operator pod to become available
# when OXBOW_E2E_EXPECT_OPERATOR=1 (the operator binary does not exist yet).
. "$(dirname "$0")/lib.sh"
rel=oxbow-operator ns=oxbow-system
helm upgrade --install "$rel" "$REPO/charts/oxbow-operator" --namespace "$ns" --create-namespace \
  --set image.repository="${OXBOW_OPERATOR_IMAGE%:*}" --set image.tag="${OXBOW_OPERATOR_IMAGE##*:}" \
  >/dev/null
[[ $(helm status "$rel" -n "$ns" -o json | json "$(cat)" "d['info']['status']") == deployed ]] || fail "release not deployed"
kc -n "$ns" get deploy/"$rel" serviceaccount/"$rel" >/dev/null
kc get clusterrole/"$rel" clusterrolebinding/"$rel" >/dev/null
[[ $(kc auth can-i create statefulsets --as "system:serviceaccount:$ns:$rel" -n "$NS") == yes ]] ||
  fail "operator service account cannot create statefulsets"
pod_seen() { [[ -n $(kc -n "$ns" get pods -l app.kubernetes.io/instance=$rel -o name) ]]; }
wait_until 60 "operator pod created" pod_seen
if [[ ${OXBOW_E2E_EXPECT_OPERATOR:-0} == 1 ]]; then
  kc -n "$ns" rollout status deploy/"$rel" --timeout=120s >&2 || fail "operator did not become available"
else
  kc -n "$ns" get pods -l app.kubernetes.io/instance=$rel >&2
fi
helm uninstall "$rel" -n "$ns" --wait --timeout 90s >/dev/null
gone() { ! kc get clusterrole/"$rel" >/dev/null 2>&1 && [[ -z $(kc -n "$ns" get pods -o name) ]]; }
wait_until 60 "release removed" gone
say "PASS"
