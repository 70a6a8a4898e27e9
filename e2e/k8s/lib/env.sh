# Shared settings for the local control plane scripts (sourced, not executed).
K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKSPACE=$(cd "$K8S_DIR/../.." && pwd)
OXBOW_CACHE=${OXBOW_CACHE:-$HOME/.cache/oxbow}
K8S_BIN=$OXBOW_CACHE/k8s/bin
RUN=$OXBOW_CACHE/k8s/run
PKI=$RUN/pki
# Ports on 127.0.0.1; off the well-known ones so a developer's other clusters are not disturbed.
ETCD_PORT=${OXBOW_ETCD_PORT:-32379}
ETCD_PEER_PORT=${OXBOW_ETCD_PEER_PORT:-32380}
APISERVER_PORT=${OXBOW_APISERVER_PORT:-36443}
KCM_PORT=${OXBOW_KCM_PORT:-36257}
SERVICE_CIDR=${OXBOW_SERVICE_CIDR:-10.96.0.0/16}   # allocation only: no traffic goes to it (no kube-proxy)
OXBOW_BIN_DIR=${OXBOW_BIN_DIR:-$WORKSPACE/target/debug}
KUBECONFIG_PATH=$RUN/kubeconfig
export PATH="$K8S_BIN:$PATH"
# Every process up.sh starts carries this in its environment, so down.sh can find
# survivors of a crashed run by their /proc/<pid>/environ, never by a name pattern.
MARKER_ENV=OXBOW_K8S_RUN
