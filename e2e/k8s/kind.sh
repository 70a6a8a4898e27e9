#!/usr/bin/env bash
# The kind path, for machines with a Docker engine and kind: create a kind cluster, build and
# load both images, install the chart, run the SAME scenarios as the local control plane
# (scenarios/*.sh with OXBOW_K8S_PLATFORM=kind), delete the cluster.
# Not run on this project's CI (no Docker engine there); see README.md.
#   e2e/k8s/kind.sh [SCENARIO-GLOB]    env: OXBOW_KIND_CLUSTER (oxbow-e2e), OXBOW_K8S_KEEP=1
set -euo pipefail
K8S_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$K8S_DIR/../.." && pwd)
cluster=${OXBOW_KIND_CLUSTER:-oxbow-e2e}
pattern=${1:-[0-9]*}
. "$K8S_DIR/lib/xfail.sh"
export OXBOW_E2E_EXPECT_CLUSTER=${OXBOW_E2E_EXPECT_CLUSTER:-1}
for t in docker kind kubectl helm; do command -v "$t" >/dev/null || { echo "[kind] $t not found" >&2; exit 2; }; done
docker info >/dev/null 2>&1 || { echo "[kind] no Docker engine reachable" >&2; exit 2; }

export OXBOW_K8S_PLATFORM=kind OXBOW_BROKER_IMAGE=oxbow-broker:e2e OXBOW_OPERATOR_IMAGE=oxbow-operator:e2e
docker build -f "$REPO/broker/Dockerfile" -t "$OXBOW_BROKER_IMAGE" "$REPO"
docker build -f "$REPO/operator/Dockerfile" -t "$OXBOW_OPERATOR_IMAGE" "$REPO"
# the operator's default broker image (a KafkaCluster without spec.image) is oxbow-broker:<version>
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml")
docker tag "$OXBOW_BROKER_IMAGE" "oxbow-broker:$version"
images=("$OXBOW_BROKER_IMAGE" "oxbow-broker:$version" "$OXBOW_OPERATOR_IMAGE")
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
export KUBECONFIG=$(mktemp)
kind get kubeconfig --name "$cluster" > "$KUBECONFIG"
cleanup() { [[ ${OXBOW_K8S_KEEP:-0} == 1 ]] || kind delete cluster --name "$cluster"; rm -f "$KUBECONFIG"; }
trap cleanup EXIT
kind load docker-image --name "$cluster" "${images[@]}"

passed=0 failed=0
xfailed=0 skipped=0
for s in "$K8S_DIR"/scenarios/$pattern.sh; do
  xfail=$(scenario_xfail "$s") # see test.sh
  rc=0; bash "$s" || rc=$?
  if ((rc == 77)); then skipped=$((skipped + 1)); echo "[kind] SKIP $(basename "$s"): not for kind" >&2
  elif ((rc == 0)); then
    if [[ -n $xfail ]]; then failed=$((failed + 1)); echo "[kind] XPASS $(basename "$s"): remove its expected-failure marker" >&2
    else passed=$((passed + 1)); fi
  elif [[ -n $xfail ]]; then xfailed=$((xfailed + 1)); echo "[kind] XFAIL $(basename "$s"): $xfail" >&2
  else failed=$((failed + 1)); echo "[kind] FAIL $(basename "$s")" >&2; fi
done
echo "k8s-e2e-kind: $passed passed, $failed failed, $xfailed expected failures, $skipped skipped"
((failed == 0))
