# Shared settings for the local control plane scripts (sourced, not executed).
K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKSPACE=$(cd "$K8S_DIR/../.." && pwd)
OXBOW_CACHE=${OXBOW_CACHE:-$HOME/.cache/oxbow}
K8S_BIN=$OXBOW_CACHE/k8s/bin
# The run directory holds one cluster's state; a second cluster on the same machine (e.g. a
# developer's real-node run beside the pod runner's) takes another one and other ports.
RUN=${OXBOW_K8S_RUN_DIR:-$OXBOW_CACHE/k8s/run}
PKI=$RUN/pki
# Ports on 127.0.0.1; off the well-known ones so a developer's other clusters are not disturbed.
ETCD_PORT=${OXBOW_ETCD_PORT:-32379}
ETCD_PEER_PORT=${OXBOW_ETCD_PEER_PORT:-32380}
# Below the kernel's ephemeral range (32768-60999 here): a port in it may be taken at any
# moment by another process's outgoing connection or a test broker bound to port 0, and a
# component that cannot bind its port leaves the plane half up. (The defaults were 36443 and
# 36257 until CoreDNS's ready endpoint, at the API server's port + 11, once never answered.)
APISERVER_PORT=${OXBOW_APISERVER_PORT:-26443}
KCM_PORT=${OXBOW_KCM_PORT:-26257}
OXBOW_BIN_DIR=${OXBOW_BIN_DIR:-$WORKSPACE/target/debug}
KUBECONFIG_PATH=$RUN/kubeconfig
export PATH="$K8S_BIN:$PATH"
# Every process up.sh starts carries this in its environment, so down.sh can find
# survivors of a crashed run by their /proc/<pid>/environ, never by a name pattern.
MARKER_ENV=OXBOW_K8S_RUN

# Which node runs the pods: `real` (the default: kubelet + containerd + CNI bridge + kube-proxy
# + CoreDNS + kube-scheduler, lib/node.sh) or `podrunner` (podrunner/podrunner.py), the
# stand-in kept for what a real node cannot do on one host: run beside another real node (the
# KUBE-* iptables chains and the pod CIDR's route are host-wide, so engineers testing on a
# second plane of the same machine take the pod runner), and run the fake broker.
if [[ ${OXBOW_K8S_FAKE_BROKER:-0} == 1 ]]; then
  NODE_MODE=${OXBOW_K8S_NODE:-podrunner}
else
  NODE_MODE=${OXBOW_K8S_NODE:-real}
fi
if [[ $NODE_MODE == real ]]; then
  # Pod and Service networks of the real node: clear of the host's routes, podman's default
  # 10.88.0.0/16 and the e2e harness's 10.201-10.202.x.0/24 bridges (e2e/src/netns.rs).
  POD_CIDR=${OXBOW_POD_CIDR:-10.244.0.0/24}
  SERVICE_CIDR=${OXBOW_SERVICE_CIDR:-10.245.0.0/16}
else
  SERVICE_CIDR=${OXBOW_SERVICE_CIDR:-10.96.0.0/16}   # allocation only: no traffic goes to it (no kube-proxy)
fi
# First Service IP (the `kubernetes` Service) and the cluster DNS Service IP (.10), as kubeadm.
SERVICE_IP_BASE=${SERVICE_CIDR%.*/*}
KUBERNETES_SERVICE_IP=$SERVICE_IP_BASE.1
CLUSTER_DNS_IP=$SERVICE_IP_BASE.10
# The real node: its name, the bridge its pods hang off (per run: two runs never share one),
# the gateway address on it (the node's InternalIP: pods reach the API server there), ports
# of the node's components (kubelet API, health endpoints), and the images it runs.
NODE_NAME=${OXBOW_NODE_NAME:-oxbow-node}
NODE_BRIDGE=${OXBOW_NODE_BRIDGE:-oxcni$(printf '%s' "$RUN" | cksum | cut -c1-4)}
NODE_IP=${POD_CIDR:+${POD_CIDR%.*/*}.1}
KUBELET_PORT=${OXBOW_KUBELET_PORT:-$((APISERVER_PORT + 1))}
KUBELET_HEALTHZ_PORT=${OXBOW_KUBELET_HEALTHZ_PORT:-$((APISERVER_PORT + 2))}
KUBE_PROXY_METRICS_PORT=${OXBOW_KUBE_PROXY_METRICS_PORT:-$((APISERVER_PORT + 3))}
KUBE_PROXY_HEALTHZ_PORT=${OXBOW_KUBE_PROXY_HEALTHZ_PORT:-$((APISERVER_PORT + 4))}
SCHEDULER_PORT=${OXBOW_SCHEDULER_PORT:-$((APISERVER_PORT + 5))}
NODE_PAUSE_IMAGE=localhost/oxbow-pause:e2e
# Unqualified names as the manifests and kind use (kubelet reads oxbow-broker:e2e as docker.io/library/...).
NODE_BROKER_IMAGE=docker.io/library/oxbow-broker:e2e
NODE_OPERATOR_IMAGE=docker.io/library/oxbow-operator:e2e
NODE_PYTHON_IMAGE=localhost/oxbow-python:e2e
# The workspace's version (Cargo.toml [workspace.package]): the tag of the operator's default
# broker image, oxbow-broker:<version>.
workspace_version() { sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$WORKSPACE/Cargo.toml"; }
