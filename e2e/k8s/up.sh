#!/usr/bin/env bash
# Start a local Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (RBAC, generated
# PKI, service-account signing key), kube-controller-manager, and a node: by default the oxbow
# pod runner (stand-in for kubelet + container runtime + scheduler, see podrunner/podrunner.py),
# with OXBOW_K8S_NODE=real a real one (containerd, CNI bridge, kubelet, kube-proxy,
# kube-scheduler, CoreDNS: lib/node.sh) running the images of images.sh.
# Prints the kubeconfig path on stdout. Idempotent: a healthy cluster is reused; the remains
# of a crashed one are cleaned up (down.sh) first.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
. "$K8S_DIR/lib/pki.sh"
. "$K8S_DIR/lib/node.sh"
log() { echo "[up] $*" >&2; }
die() { echo "[up] ERROR: $*" >&2; exit 1; }

bins=(etcd kube-apiserver kube-controller-manager kubectl)
[[ $NODE_MODE == real ]] && bins+=(kubelet kube-proxy kube-scheduler coredns)
for b in "${bins[@]}"; do
  [[ -x $K8S_BIN/$b ]] || die "$K8S_BIN/$b missing: run e2e/k8s/build.sh all node first"
done
[[ $(id -u) == 0 ]] || die "the node needs root (pod runner: /etc/hosts and bind mounts; real node: containers, bridge, iptables)"
[[ $NODE_MODE == podrunner || $NODE_MODE == real ]] || die "OXBOW_K8S_NODE=$NODE_MODE: podrunner or real"

healthy() {
  # a run dir without node-mode was made before the real node existed: a pod runner's
  [[ -f $KUBECONFIG_PATH && $(cat "$RUN/node-mode" 2>/dev/null || echo podrunner) == "$NODE_MODE" ]] || return 1
  local c; for c in etcd kube-apiserver kube-controller-manager; do
    [[ -f $RUN/$c.pid ]] && kill -0 "$(cat "$RUN/$c.pid")" 2>/dev/null || return 1
  done
  if [[ $NODE_MODE == real ]]; then node_healthy || return 1
  else [[ -f $RUN/podrunner.pid ]] && kill -0 "$(cat "$RUN/podrunner.pid")" 2>/dev/null || return 1; fi
  kubectl --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz >/dev/null 2>&1
}
if healthy; then log "already up"; echo "$KUBECONFIG_PATH"; exit 0; fi
if [[ -d $RUN ]]; then log "cleaning up a previous run"; "$K8S_DIR/down.sh"; fi

mkdir -p "$RUN/logs" "$RUN/state"
echo "$NODE_MODE" > "$RUN/node-mode"
gen_pki
write_kubeconfig "$RUN/kubeconfig" admin
write_kubeconfig "$RUN/controller-manager.kubeconfig" controller-manager

start() { # name cmd...
  local name=$1; shift
  env "$MARKER_ENV=$RUN" setsid "$@" </dev/null >"$RUN/logs/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
}
wait_for() { # what seconds cmd...
  local what=$1 secs=$2; shift 2
  wait_for_quietly "$secs" "$@" || die "$what not ready after ${secs}s; see $RUN/logs/"
}
wait_for_quietly() { # seconds cmd...: status 1 if cmd never succeeded within that time
  local secs=$1 deadline; shift
  deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
check_alive() { kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null || { tail -20 "$RUN/logs/$1.log" >&2; die "$1 exited"; }; }

kc_admin() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }
t0=$SECONDS
apiserver_net=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
kcm_controllers='*,-node-lifecycle-controller,-node-ipam-controller,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller'
kcm_node=()
if [[ $NODE_MODE == real ]]; then
  node_bridge_up
  # Pods reach the API server through the `kubernetes` Service, whose endpoint is the node's
  # bridge address (kept by the API server's lease reconciler).
  # The API server reaches the kubelet (logs, exec) at the node's InternalIP: its name resolves nowhere.
  apiserver_net=(--bind-address 0.0.0.0 --advertise-address "$NODE_IP" --kubelet-preferred-address-types InternalIP)
  # node-lifecycle on: a node whose kubelet stops reporting turns NotReady (Unknown) after the
  # grace period (20 s here, 50 s by default, with the kubelet reporting every 4 s).
  kcm_controllers='*,-node-ipam-controller,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller'
  kcm_node=(--node-monitor-grace-period 20s --node-monitor-period 2s)
fi
start etcd etcd --name oxbow --data-dir "$RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "oxbow=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 2147483648 \
  --log-level warn
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  "${apiserver_net[@]}" --secure-port "$APISERVER_PORT" \
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
  --enable-priority-and-fairness=false \
  --profiling=false --v=1
wait_for kube-apiserver 90 kubectl --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz
check_alive kube-apiserver
log "apiserver ready after $((SECONDS - t0))s"

# node-lifecycle (pod runner): there is one node and it is this host; the runner heartbeats anyway.
start kube-controller-manager kube-controller-manager \
  --kubeconfig "$RUN/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$RUN/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --controllers "$kcm_controllers" "${kcm_node[@]}" \
  --concurrent-statefulset-syncs 5 --profiling=false --v=1

kc() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }
if [[ $NODE_MODE == real ]]; then
  node_start
  wait_for "service account controller (kube-controller-manager)" 60 kc get serviceaccount default -n default
  check_alive kube-controller-manager
  log "local control plane with the real node $NODE_NAME up in $((SECONDS - t0))s (logs: $RUN/logs)"
  echo "$KUBECONFIG_PATH"
  exit 0
fi

start podrunner python3 "$K8S_DIR/podrunner/podrunner.py" \
  --server "https://127.0.0.1:$APISERVER_PORT" --ca "$PKI/ca.crt" \
  --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
  --state-dir "$RUN/state" --bin-dir "$OXBOW_BIN_DIR"

wait_for "service account controller (kube-controller-manager)" 60 kc get serviceaccount default -n default
check_alive kube-controller-manager
wait_for "pod runner node" 30 kc wait --for=condition=Ready node/oxbow-local --timeout=1s
check_alive podrunner
log "local control plane up in $((SECONDS - t0))s (logs: $RUN/logs)"
echo "$KUBECONFIG_PATH"
