#!/usr/bin/env bash
# `helm install` of charts/oxbow-operator works: release deployed, its objects exist, RBAC lets
# the operator's service account do its job. Whether the operator pod becomes available is
# 80-operator-available.sh; what it does with a KafkaCluster is 85-kafkacluster.sh.
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
# The operator reconciles KafkaCluster/KafkaTopic in API group oxbow.dev (the CRDs' group).
# A SubjectAccessReview, because `kubectl auth can-i` answers "no" for a resource whose CRD is
# not installed yet.
sar=$(kc create -o json -f - <<EOF
{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
 "spec": {"user": "system:serviceaccount:$ns:$rel",
          "resourceAttributes": {"group": "oxbow.dev", "resource": "kafkaclusters", "verb": "patch", "namespace": "$NS"}}}
EOF
)
[[ $(json "$sar" "d['status'].get('allowed', False)") == True ]] ||
  fail "operator service account cannot patch kafkaclusters.oxbow.dev: $sar"
pod_seen() { [[ -n $(kc -n "$ns" get pods -l app.kubernetes.io/instance=$rel -o name) ]]; }
wait_until 60 "operator pod created" pod_seen
kc -n "$ns" get pods -l app.kubernetes.io/instance=$rel >&2
helm uninstall "$rel" -n "$ns" --wait --timeout 90s >/dev/null
gone() { ! kc get clusterrole/"$rel" >/dev/null 2>&1 && [[ -z $(kc -n "$ns" get pods -o name) ]]; }
wait_until 60 "release removed" gone
say "PASS"
