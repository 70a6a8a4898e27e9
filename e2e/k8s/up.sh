#!/usr/bin/env bash
# Start a local Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (RBAC, generated
# PKI, service-account signing key), kube-controller-manager, and the oxbow pod runner
# (stand-in for kubelet + container runtime + scheduler, see podrunner/podrunner.py).
# Prints the kubeconfig path on stdout. Idempotent: a healthy cluster is reused; the remains
# of a crashed one are cleaned up (down.sh) first.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
. "$K8S_DIR/lib/pki.sh"
log() { echo "[up] $*" >&2; }
die() { echo "[up] ERROR: $*" >&2; exit 1; }

for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [[ -x $K8S_BIN/$b ]] || die "$K8S_BIN/$b missing: run e2e/k8s/build.sh first"
done
[[ $(id -u) == 0 ]] || die "the pod runner needs root (it edits /etc/hosts and bind-mounts volumes)"

healthy() {
  [[ -f $RUN/podrunner.pid && -f $KUBECONFIG_PATH ]] || return 1
  local c; for c in etcd kube-apiserver kube-controller-manager podrunner; do
    [[ -f $RUN/$c.pid ]] && kill -0 "$(cat "$RUN/$c.pid")" 2>/dev/null || return 1
  done
  kubectl --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz >/dev/null 2>&1
}
if healthy; then log "already up"; echo "$KUBECONFIG_PATH"; exit 0; fi
if [[ -d $RUN ]]; then log "cleaning up a previous run"; "$K8S_DIR/down.sh"; fi

mkdir -p "$RUN/logs" "$RUN/state"
gen_pki
write_kubeconfig "$RUN/kubeconfig" admin
write_kubeconfig "$RUN/controller-manager.kubeconfig" controller-manager

start() { # name cmd...
  local name=$1; shift
  env "$MARKER_ENV=$RUN" setsid "$@" </dev/null >"$RUN/logs/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
}
wait_for() { # what seconds cmd...
  local what=$1 secs=$2 i; shift 2
  for ((i = 0; i < secs * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "$what not ready after ${secs}s; see $RUN/logs/"
}
check_alive() { kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null || { tail -20 "$RUN/logs/$1.log" >&2; die "$1 exited"; }; }

t0=$SECONDS
start etcd etcd --name oxbow --data-dir "$RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "oxbow=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 2147483648 \
  --log-level warn
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --api-audiences https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --allow-privileged=true \
  --endpoint-reconciler-type none \
  --enable-priority-and-fairness=false \
  --profiling=false --v=1
wait_for kube-apiserver 90 kubectl --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz
check_alive kube-apiserver
log "apiserver ready after $((SECONDS - t0))s"

# node-lifecycle: there is one node and it is this host; the runner heartbeats anyway.
start kube-controller-manager kube-controller-manager \
  --kubeconfig "$RUN/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$RUN/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --controllers '*,-node-lifecycle-controller,-node-ipam-controller,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller' \
  --concurrent-statefulset-syncs 5 --profiling=false --v=1

start podrunner python3 "$K8S_DIR/podrunner/podrunner.py" \
  --server "https://127.0.0.1:$APISERVER_PORT" --ca "$PKI/ca.crt" \
  --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
  --state-dir "$RUN/state" --bin-dir "$OXBOW_BIN_DIR"

kc() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }
wait_for "service account controller (kube-controller-manager)" 60 kc get serviceaccount default -n default
check_alive kube-controller-manager
wait_for "pod runner node" 30 kc wait --for=condition=Ready node/oxbow-local --timeout=1s
check_alive podrunner
log "local control plane up in $((SECONDS - t0))s (logs: $RUN/logs)"
echo "$KUBECONFIG_PATH"
