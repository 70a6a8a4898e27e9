#!/usr/bin/env bash
# End-to-end test of the Kubernetes platform on the local control plane:
#   build.sh (cached) [-> images.sh] -> up.sh -> scenarios/[0-9]*.sh -> down.sh (always)
#   -> check down left nothing.
# Exit status is non-zero if anything failed. Needs root (see podrunner/podrunner.py, lib/node.sh).
#
#   e2e/k8s/test.sh [SCENARIO-GLOB]          e.g. e2e/k8s/test.sh '10-*'
# Env: OXBOW_BIN_DIR (default target/debug: oxbow-broker / oxbow-operator binaries),
#      OXBOW_K8S_NODE=real (a real node: kubelet, containerd, CNI, kube-proxy, CoreDNS running
#      the images images.sh builds from broker/Dockerfile; default: the pod runner),
#      OXBOW_K8S_RUN_DIR and OXBOW_*_PORT (another cluster beside the default one, lib/env.sh),
#      OXBOW_K8S_FAKE_BROKER=1 (test the platform with testdata/fake-bin/oxbow-broker instead of
#      the real broker), OXBOW_K8S_KEEP=1 (leave the cluster up for debugging),
#      OXBOW_E2E_EXPECT_CLUSTER (1, or 0 with the fake broker: whether the `# needs-cluster`
#      scenarios, where the StatefulSet's pods form one cluster, must pass; see lib/xfail.sh),
#      OXBOW_K8S_FAILURE_REPORT (a file: the last lines of each failed scenario's output are
#      appended to it, for run-tests.sh to print after its summary, where a CI log that keeps
#      only its tail still shows them)
#
# A scenario whose second line is `# expected-failure: <reason>` checks something not built
# yet: its failure is reported as XFAIL (not a pass, not a failure of the run), and its
# success as XPASS, which fails the run so the marker is removed once the feature works.
set -uo pipefail
K8S_DIR=$(cd "$(dirname "$0")" && pwd)
. "$K8S_DIR/lib/env.sh"
. "$K8S_DIR/lib/xfail.sh"
pattern=${1:-[0-9]*}
if [[ $NODE_MODE == real ]]; then
  [[ ${OXBOW_K8S_FAKE_BROKER:-0} != 1 ]] || { echo "[test] OXBOW_K8S_FAKE_BROKER=1 needs the pod runner" >&2; exit 2; }
  # the images package these binaries (images.sh, OXBOW_IMAGE_BINARY=prebuilt)
  for b in oxbow-broker oxbow-operator; do
    [[ ${OXBOW_IMAGE_BINARY:-prebuilt} != prebuilt || -x $OXBOW_BIN_DIR/$b ]] ||
      { echo "[test] $OXBOW_BIN_DIR/$b missing: cargo build -p ${b} first" >&2; exit 1; }
  done
elif [[ ${OXBOW_K8S_FAKE_BROKER:-0} == 1 ]]; then
  export OXBOW_BIN_DIR=$K8S_DIR/testdata/fake-bin
  echo "[test] using the FAKE broker ($OXBOW_BIN_DIR): this tests the platform, not oxbow-broker" >&2
  : "${OXBOW_E2E_EXPECT_CLUSTER:=0}"  # a lone test double: no cluster to form
elif [[ ! -x $OXBOW_BIN_DIR/oxbow-broker ]]; then
  echo "[test] $OXBOW_BIN_DIR/oxbow-broker missing: cargo build -p oxbow-broker first" >&2; exit 1
fi
export OXBOW_BIN_DIR
export OXBOW_E2E_EXPECT_CLUSTER=${OXBOW_E2E_EXPECT_CLUSTER:-1}

t0=$SECONDS
if [[ $NODE_MODE == real ]]; then
  "$K8S_DIR/build.sh" all node >/dev/null || { echo "[test] build failed" >&2; exit 1; }
  echo "[test] binaries ready in $((SECONDS - t0))s" >&2
  "$K8S_DIR/images.sh" >/dev/null || { echo "[test] images failed" >&2; exit 1; }
  echo "[test] binaries and images ready in $((SECONDS - t0))s" >&2
else
  "$K8S_DIR/build.sh" >/dev/null || { echo "[test] build failed" >&2; exit 1; }
  echo "[test] binaries ready in $((SECONDS - t0))s" >&2
fi

passed=0 failed=0 xfailed=0 skipped=0 failures=()
finish() {
  if [[ ${OXBOW_K8S_KEEP:-0} == 1 ]]; then
    echo "[test] OXBOW_K8S_KEEP=1: cluster left up, KUBECONFIG=$KUBECONFIG_PATH; stop it with e2e/k8s/down.sh" >&2
  else
    "$K8S_DIR/down.sh"
    # down must leave nothing behind
    local left=() e pid
    for e in /proc/[0-9]*/environ; do
      pid=${e#/proc/}; pid=${pid%/environ}
      tr '\0' '\n' 2>/dev/null < "$e" | grep -qxF "$MARKER_ENV=$RUN" && left+=("$pid")
    done
    local node_left=""
    if [[ $NODE_MODE == real ]]; then
      ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && node_left+=" bridge=$NODE_BRIDGE"
      iptables-save 2>/dev/null | grep -qE '^:KUBE-' && node_left+=" iptables=$(iptables-save | grep -cE '^:KUBE-')KUBE-chains"
      iptables-save 2>/dev/null | grep -qF "\"oxbow-$NODE_BRIDGE\"" && node_left+=" iptables=CNI-rules-of-oxbow-$NODE_BRIDGE"
      grep -qF " $RUN/" /proc/self/mountinfo && node_left+=" mounts=$(grep -cF " $RUN/" /proc/self/mountinfo)"
    fi
    if ((${#left[@]})) || grep -qF "oxbow-podrunner $RUN/state" /etc/hosts || [[ -e $RUN || -n $node_left ]]; then
      echo "[test] FAIL down-leaves-nothing: processes=${left[*]:-none}$node_left" >&2; failed=$((failed + 1)); failures+=(down)
    else
      echo "[test] PASS down-leaves-nothing" >&2; passed=$((passed + 1))
    fi
  fi
  echo "[test] failures: ${failures[*]:-none}" >&2
  echo "k8s-e2e: $passed passed, $failed failed, $xfailed expected failures, $skipped skipped"
  ((failed == 0))
}

kubeconfig=$("$K8S_DIR/up.sh") || { echo "[test] up failed; logs in $RUN/logs" >&2; tail -n 30 "$RUN"/logs/*.log >&2; failed=1; failures+=(up); finish; exit 1; }
export KUBECONFIG=$kubeconfig OXBOW_K8S_PLATFORM=local
if [[ $NODE_MODE == real ]]; then
  export OXBOW_K8S_PLATFORM=node OXBOW_BROKER_IMAGE=oxbow-broker:e2e OXBOW_PYTHON_IMAGE=$NODE_PYTHON_IMAGE
  export OXBOW_K8S_PROBE_RESOLV=$RUN/node/probe-resolv.conf OXBOW_K8S_PROBE_HOSTS=$RUN/node/probe-hosts
  export OXBOW_K8S_RUN_DIR=$RUN  # lib/node-kubelet.sh, for the node-lifecycle scenario
fi
for s in "$K8S_DIR"/scenarios/$pattern.sh; do
  name=$(basename "$s" .sh) ts=$SECONDS
  xfail=$(scenario_xfail "$s")
  scenario_log=$(mktemp)
  bash "$s" 2>&1 | tee "$scenario_log"; rc=${PIPESTATUS[0]}
  if ((rc == 77)); then
    skipped=$((skipped + 1)); echo "[test] SKIP $name: not for this platform ($OXBOW_K8S_PLATFORM)" >&2
  elif [[ -n $xfail ]]; then
    if ((rc == 0)); then
      failed=$((failed + 1)); failures+=("$name(XPASS)")
      echo "[test] XPASS $name: passes but is marked expected-failure; remove the marker" >&2
    else
      xfailed=$((xfailed + 1)); echo "[test] XFAIL $name ($((SECONDS - ts))s): expected, $xfail" >&2
    fi
  elif ((rc == 0)); then
    passed=$((passed + 1)); echo "[test] PASS $name ($((SECONDS - ts))s)" >&2
  else
    failed=$((failed + 1)); failures+=("$name"); echo "[test] FAIL $name ($((SECONDS - ts))s)" >&2
    if [[ -n ${OXBOW_K8S_FAILURE_REPORT:-} ]]; then
      { echo "---- k8s scenario $name failed after $((SECONDS - ts))s; its last 60 lines:"
        tail -n 60 "$scenario_log"; } >>"$OXBOW_K8S_FAILURE_REPORT"
    fi
    kubectl get pods -A -o wide >&2 || true
    if [[ $NODE_MODE == real ]]; then kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 30 >&2
    else tail -n 40 "$RUN/logs/podrunner.log" >&2 || true; fi
  fi
  rm -f "$scenario_log"
done
finish
