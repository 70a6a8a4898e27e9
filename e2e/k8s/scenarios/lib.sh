# Helpers shared by every scenario; sourced. The same scenarios run on the local control
# plane with the pod runner (OXBOW_K8S_PLATFORM=local, set by test.sh), on it with the real
# node (OXBOW_K8S_PLATFORM=node, test.sh with OXBOW_K8S_NODE=real) and on kind (kind.sh).
set -euo pipefail
SCEN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_DIR=$(cd "$SCEN_DIR/.." && pwd)
REPO=$(cd "$K8S_DIR/../.." && pwd)
: "${KUBECONFIG:?KUBECONFIG must point at the cluster}"
: "${OXBOW_K8S_PLATFORM:=local}"
: "${OXBOW_BROKER_IMAGE:=oxbow-broker:e2e}"
: "${OXBOW_OPERATOR_IMAGE:=oxbow-operator:e2e}"
NS=${OXBOW_E2E_NAMESPACE:-oxbow-e2e}
export KUBECONFIG

say() { echo "[$(basename "$0" .sh)] $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
# A scenario that does not apply to this platform: exit 77, which test.sh and kind.sh report
# as SKIP (counted apart, never as a pass).
skip() { say "SKIP ($*)"; exit 77; }
kc() { kubectl "$@"; }

# Wait until a command succeeds. wait_until SECONDS DESCRIPTION CMD...
# The deadline is wall-clock time: a slow CMD (a probe on a loaded machine) does not stretch it.
wait_until() {
  local secs=$1 what=$2 deadline; shift 2
  deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  fail "timed out after ${secs}s waiting for: $what"
}

ensure_ns() { kc get ns "$NS" >/dev/null 2>&1 || kc create ns "$NS" >/dev/null; }

apply_brokers() { # replicas
  sed "s|OXBOW_BROKER_IMAGE|$OXBOW_BROKER_IMAGE|" "$K8S_DIR/manifests/broker-statefulset.yaml" |
    kc -n "$NS" apply -f - >/dev/null
  [[ ${1:-3} == 3 ]] || kc -n "$NS" scale sts/oxbow --replicas "$1" >/dev/null
}

# kafka_probe HOST:PORT... -> JSON lines (see lib/kafka_probe.py). Run where the cluster's DNS
# names resolve: on the host for the local platform (/etc/hosts is kept by the pod runner); on
# the host through the cluster's CoreDNS for the real node (a private mount namespace sees
# OXBOW_K8S_PROBE_RESOLV as /etc/resolv.conf and a hosts file with localhost only, so another
# cluster's pod-runner block in /etc/hosts cannot answer; the host routes to pod IPs over the
# node's bridge); inside a throw-away pod on kind.
# with_cluster_dns CMD...: CMD on the host resolving names through the real node's CoreDNS.
with_cluster_dns() {
  unshare --mount --propagation private sh -c \
    'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"' \
    sh "$OXBOW_K8S_PROBE_RESOLV" "$OXBOW_K8S_PROBE_HOSTS" "$@"
}
kafka_probe() {
  if [[ $OXBOW_K8S_PLATFORM == node ]]; then
    with_cluster_dns python3 "$K8S_DIR/lib/kafka_probe.py" "$@"
  elif [[ $OXBOW_K8S_PLATFORM == kind ]]; then
    kc -n "$NS" run "probe-$RANDOM$RANDOM" --rm -i --quiet --restart=Never \
      --image="${OXBOW_PROBE_IMAGE:-python:3.12-alpine}" --command -- python3 - "$@" \
      < "$K8S_DIR/lib/kafka_probe.py"
  else
    python3 "$K8S_DIR/lib/kafka_probe.py" "$@"
  fi
}
# kafka_tool TOOL ARGS...: one of Apache Kafka's CLI tools (kafka-topics.sh, ...), run where
# the cluster's DNS names resolve: from the host's Kafka 4.1 (e2e/scripts/install-tools.sh)
# locally, in a throw-away apache/kafka pod on kind. Standard input is passed through.
kafka_tool() {
  local tool=$1; shift
  if [[ $OXBOW_K8S_PLATFORM == kind ]]; then
    kc -n "$NS" run "kafka-tool-$RANDOM$RANDOM" --rm -i --quiet --restart=Never \
      --image="${OXBOW_KAFKA_IMAGE:-apache/kafka:4.1.0}" --command -- "/opt/kafka/bin/$tool" "$@"
  elif [[ $OXBOW_K8S_PLATFORM == node ]]; then
    with_cluster_dns "${OXBOW_KAFKA_HOME:-${OXBOW_CACHE:-$HOME/.cache/oxbow}/kafka-4.1.0}/bin/$tool" "$@"
  else
    "${OXBOW_KAFKA_HOME:-${OXBOW_CACHE:-$HOME/.cache/oxbow}/kafka-4.1.0}/bin/$tool" "$@"
  fi
}

# install_operator: the chart (CRD, RBAC, operator Deployment) as release oxbow-operator in
# oxbow-system, the operator running OXBOW_OPERATOR_IMAGE; waits until it is available.
install_operator() {
  helm upgrade --install oxbow-operator "$REPO/charts/oxbow-operator" --namespace oxbow-system --create-namespace \
    --set image.repository="${OXBOW_OPERATOR_IMAGE%:*}" --set image.tag="${OXBOW_OPERATOR_IMAGE##*:}" \
    ${OXBOW_OPERATOR_HELM_ARGS:-} >/dev/null
  kc -n oxbow-system rollout status deploy/oxbow-operator --timeout=60s >&2
}

json() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {'d': d}))" "$@"; }

broker_dns() { echo "oxbow-$1.oxbow.$NS.svc.cluster.local:9092"; }

pods_ready() { # n
  [[ $(kc -n "$NS" get sts oxbow -o 'jsonpath={.status.readyReplicas}') == "$1" ]]
}

# cluster_formed N: brokers 0..N-1, each asked at its pod DNS name, list the same N brokers,
# the same cluster id and a controller among them. Prints what they answered. (Not "the same
# controller": Kafka 4.1's KRaft brokers name a random live broker as the controller in
# Metadata, oxbow's name themselves, so the views differ.)
cluster_formed() {
  local n=$1 addrs=() i out
  for ((i = 0; i < n; i++)); do addrs+=("$(broker_dns $i)"); done
  out=$(kafka_probe "${addrs[@]}") || { echo "$out"; return 1; }
  echo "$out"
  python3 - "$n" "$out" <<'PY'
import json, sys
n, views = int(sys.argv[1]), [json.loads(l) for l in sys.argv[2].splitlines() if l.strip()]
ids = {tuple(b[0] for b in v["brokers"]) for v in views}
one = (len(views) == n and ids == {tuple(range(n))} and len({v["cluster_id"] for v in views}) == 1
       and all(0 <= v["controller_id"] < n for v in views))
sys.exit(0 if one else 1)
PY
}

# topic_state HOST:PORT TOPIC -> JSON of partition 0 (leader, replicas, isr) as that broker sees it.
topic_state() {
  local out
  out=$(kafka_probe describe "$1" "$2") || return 1
  json "$out" "__import__('json').dumps(d['partitions'][0])"
}

# kc_refused NAMESPACE EXPECTED-TEXT YAML-SPEC: `kubectl apply` of a KafkaCluster `bad` with that
# spec (indented lines) must be refused with a message containing EXPECTED-TEXT (the field).
kc_refused() {
  local ns=$1 want=$2 spec=$3 out
  if out=$(printf 'apiVersion: oxbow.dev/v1alpha1\nkind: KafkaCluster\nmetadata: {name: bad}\nspec:\n%s\n' "$spec" |
    kc -n "$ns" apply -f - 2>&1); then
    kc -n "$ns" delete kc bad --wait=false >/dev/null 2>&1
    fail "kubectl apply accepted: $spec"
  fi
  [[ $out == *"$want"* ]] || fail "refusal of '$spec' does not name $want: $out"
  say "refused: $spec -> $out"
}

# kafkacluster_scenario: the prologue of a scenario about KafkaCluster $kc_name in namespace
# $ns (both set before the call). Installs the operator, creates the namespace and a scratch
# directory $work. On exit, whatever the outcome: the scenario's own `scenario_cleanup` if it
# defines one, the producer process group $producer_pid and the sampler $sampler_pid if set,
# then the namespace (deleted without waiting), the operator and $work.
kafkacluster_scenario() {
  work=$(mktemp -d)
  trap kafkacluster_cleanup EXIT
  install_operator || fail "operator did not become available"
  kc get ns "$ns" >/dev/null 2>&1 || kc create ns "$ns" >/dev/null
}
kafkacluster_cleanup() {
  [[ -z ${producer_pid:-} ]] || kill -TERM -- "-$producer_pid" 2>/dev/null || true
  [[ -z ${sampler_pid:-} ]] || kill "$sampler_pid" 2>/dev/null || true
  if declare -F scenario_cleanup >/dev/null; then scenario_cleanup || true; fi
  kc delete ns "$ns" --wait=false >/dev/null 2>&1 || true
  helm uninstall oxbow-operator -n oxbow-system --wait --timeout 90s >/dev/null 2>&1 || true
  rm -rf "${work:?}"
}
# k ARGS...: kubectl in the scenario's namespace $ns.
k() { kc -n "$ns" "$@"; }
# jp JSONPATH: that field of KafkaCluster $kc_name.
jp() { k get kc "$kc_name" -o "jsonpath=$1"; }
# kc_ready: KafkaCluster $kc_name has condition Ready=True.
kc_ready() { [[ $(jp '{.status.conditions[?(@.type=="Ready")].status}') == True ]]; }
