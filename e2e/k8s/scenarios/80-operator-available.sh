#!/usr/bin/env bash
# expected-failure: the oxbow-operator binary and image do not exist yet (issue "oxbow-operator: KafkaCluster")
# `helm install` of the operator chart brings up an operator pod that becomes Available.
. "$(dirname "$0")/lib.sh"
rel=oxbow-operator ns=oxbow-system
cleanup() { helm uninstall "$rel" -n "$ns" --wait --timeout 90s >/dev/null 2>&1 || true; }
trap cleanup EXIT
helm upgrade --install "$rel" "$REPO/charts/oxbow-operator" --namespace "$ns" --create-namespace \
  --set image.repository="${OXBOW_OPERATOR_IMAGE%:*}" --set image.tag="${OXBOW_OPERATOR_IMAGE##*:}" \
  >/dev/null
kc -n "$ns" rollout status deploy/"$rel" --timeout=30s >&2 || fail "operator did not become available"
say "PASS"
